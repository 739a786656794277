"""Decode benchmark: decord vs PyAV on generated corpora (benchmarks/corpus.py).

    vidclip bench decode [--repeats 3] [--quick] [--out benchmarks/decode.json]
    (or: python3 -m benchmarks.decode ...)

Every case runs vidclip's own SampleReader (probe done once, outside the timing) and reports the
median over `repeats` runs of: wall seconds, process CPU seconds (all threads), sampled frames/s
(wall) and sampled frames per CPU-second ("per core": the machine is shared, CPU time is the
steadier number).  Frames are resized at decode time to the ViT-B-32 input (short side 224).

Cases per video: full (every frame), uniform12 (12 frames spread over the whole video), fps1
(1 frame/s), keyframes (mode "keyframes", 1/s grid); PyAV with seek="never" (decode through) and
seek="auto" (seek to the keyframe before a far frame); decord (its get_batch).  And once, on a
720p file: decode-time resize vs decoding at full size and resizing afterwards.

`--structure`: what decoding 1 frame/s costs by stream structure (720p and 1080p 30 fps, libx264
defaults: keyframe interval 250 frames or 30, with and without B-frames; benchmarks/corpus.py
structure_set), for each step of the sparse PyAV path: decode through, seek to keyframes, drop
unplanned non-reference frames, and skip_loop_filter (all / nokey, measured and not used: see the
PSNR column); decord beside them.  Reports CPU-s, frames decoded per frame kept, and the PSNR of
the planned frames against decoding every frame (PyAV's variants are bit-identical, except the
loop-filter ones).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int
from vidclip.config import SamplingConfig
from vidclip.ingest.decoder import DECORD, PYAV, SampleReader
from vidclip.container import VideoInput, allow_frame_threads
from vidclip.ingest.probe import probe
from vidclip.ingest.sampling import SamplePlan, plan_samples

BUDGET = 7680 * 4320


def decode_size(w: int, h: int, short: int = 224) -> tuple[int, int]:
    s = short / min(w, h)
    return max(1, int(w * s)), max(1, int(h * s))


def _plan(pr, case: str) -> SamplePlan:
    d = pr.info.duration_s
    if case == "full":
        n = len(pr.timeline)
        return SamplePlan(np.arange(n), np.zeros(n, np.int64), np.array([[0.0, d]]))
    if case == "uniform12":
        return plan_samples(pr.timeline, d, SamplingConfig(mode="uniform", clip_seconds=d, max_frames=12))
    if case == "fps1":
        return plan_samples(pr.timeline, d, SamplingConfig(fps=1.0))
    if case == "keyframes":
        return plan_samples(pr.timeline, d, SamplingConfig(mode="keyframes", fps=1.0), keyframes=pr.keyframes)
    raise ValueError(case)


def _time(fn, repeats: int) -> dict:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "walls": walls, "result": out}


def _read(path, pr, plan, decoder, seek, size):
    r = SampleReader(path, pr, plan, size, chunk_frames=64, decoders=(decoder,), seek=seek)
    n = sum(len(c.position) for c in r.chunks())
    return {"frames": n, "seeks": r.seeks, "missing": r.missing}


def _resize_after(path, pr, plan, size) -> int:
    """PyAV, frames converted at full size, then resized with torch (antialiased bilinear)."""
    import torch
    import torch.nn.functional as F

    want = set(int(p) for p in pr.pts[plan.frame_index])
    n = 0
    with VideoInput(path) as video:
        for f in video.frames():
            if f.pts in want:
                x = torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float()
                F.interpolate(x, size=(size[1], size[0]), mode="bilinear", antialias=True).to(torch.uint8)
                n += 1
    return n


def run(repeats: int = 3, quick: bool = False, cache: Path = corpus.DEFAULT_CACHE, log=print, only=None) -> dict:
    allow_frame_threads()  # decode as the ingest's decode child does
    videos = corpus.DECODE_SET if not quick else [v for v in corpus.DECODE_SET if v.duration_s <= 60][:3]
    if only:
        videos = [v for v in videos if any(o in v.name for o in only)]
        if not videos:
            from vidclip.errors import InputError

            raise InputError(f"--only {' '.join(only)}: no corpus video matches ({', '.join(v.name for v in corpus.DECODE_SET)})")
    paths = corpus.ensure(videos, cache, log)
    rows = []
    for v, path in zip(videos, paths):
        path = str(path)
        pr = probe(path, BUDGET)
        size = decode_size(pr.info.width, pr.info.height)
        long_full = v.duration_s > 120
        for case in ("full", "uniform12", "fps1", "keyframes"):
            plan = _plan(pr, case)
            variants = [(PYAV, "never"), (PYAV, "auto"), (DECORD, "-")]
            if case == "full":
                variants = [(PYAV, "never"), (DECORD, "-")]
            for decoder, seek in variants:
                # the 10-minute file's slow cases (every frame decoded) run once
                reps = 1 if long_full and (case in ("full", "fps1") or seek == "never") else repeats
                t = _time(lambda: _read(path, pr, plan, decoder, seek, size), reps)
                res = t.pop("result")
                row = {"video": v.name, "codec": v.codec, "res": v.res, "duration_s": v.duration_s, "gop_s": v.gop_s,
                       "case": case, "decoder": decoder, "seek": seek, "planned": int(len(plan.frame_index)),
                       **res, **t, "repeats": reps,
                       "frames_per_s": res["frames"] / t["wall_s"], "frames_per_cpu_s": res["frames"] / max(t["cpu_s"], 1e-9)}
                rows.append(row)
                log(f"{v.name:40s} {case:10s} {decoder:6s} seek={seek:5s} {res['frames']:6d} fr "
                    f"wall {t['wall_s']:7.2f}s cpu {t['cpu_s']:7.2f}s  {row['frames_per_cpu_s']:8.1f} fr/cpu-s")
    # decode-time resize vs resize afterwards (720p, 60 s, 4 frames/s)
    v = next(v for v in corpus.DECODE_SET if v.res == "720p" and v.duration_s == 60)
    path = str(corpus.ensure([v], cache, log)[0])  # also when --only left it out
    pr = probe(path, BUDGET)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=4.0))
    size = decode_size(pr.info.width, pr.info.height)
    a = _time(lambda: _read(path, pr, plan, PYAV, "never", size), repeats)
    b = _time(lambda: _resize_after(path, pr, plan, size), repeats)
    resize = {"video": v.name, "frames": len(plan.frame_index),
              "decode_time_resize": {k: a[k] for k in ("wall_s", "cpu_s")},
              "resize_after": {k: b[k] for k in ("wall_s", "cpu_s")},
              "cpu_speedup": b["cpu_s"] / a["cpu_s"]}
    log(f"resize at decode: cpu {a['cpu_s']:.2f}s vs after: {b['cpu_s']:.2f}s ({resize['cpu_speedup']:.2f}x)")
    return {"benchmark": "decode", "machine": corpus.machine_info(), "repeats": repeats,
            "corpus": [v.to_dict() for v in videos], "rows": rows, "resize": resize, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    """Speed-ups against decoding every frame, per video: the sparse target and keyframes mode."""
    out = {}
    by = {(r["video"], r["case"], r["decoder"], r["seek"]): r for r in rows}
    for video in dict.fromkeys(r["video"] for r in rows):
        fulls = [by[k] for k in by if k[0] == video and k[1] == "full"]
        full = min(fulls, key=lambda r: r["wall_s"])
        full_cpu = min(r["cpu_s"] for r in fulls)  # each ratio compares the best of each side by its own measure
        s = {"full_best": f"{full['decoder']}", "full_wall_s": full["wall_s"], "full_cpu_s": full_cpu}
        for case in ("uniform12", "fps1", "keyframes"):
            cands = [by[k] for k in by if k[0] == video and k[1] == case]
            if not cands:
                continue
            best = min(cands, key=lambda r: r["cpu_s"])
            s[case] = {"best": f"{best['decoder']}/{best['seek']}", "wall_s": best["wall_s"], "cpu_s": best["cpu_s"],
                       "speedup_wall_vs_full": full["wall_s"] / min(r["wall_s"] for r in cands),
                       "speedup_cpu_vs_full": full_cpu / best["cpu_s"],
                       "all": {f"{r['decoder']}/{r['seek']}": round(r["cpu_s"], 3) for r in cands}}
        out[video] = s
    return out


def _read_steps(path, pr, plan, size, seek, skip, loop_filter=None) -> dict:
    """PyAV's sparse read, one step at a time; loop_filter: a skip_loop_filter value for every frame."""
    if loop_filter is None:
        r = SampleReader(path, pr, plan, size, chunk_frames=64, decoders=(PYAV,), seek=seek, skip=skip)
        frames = np.concatenate([c.frames for c in r.chunks()])
        return {"frames": frames, "decoded": r.decoded, "seeks": r.seeks}
    import av

    want = {int(p) for p in pr.pts[plan.frame_index]}
    out, decoded = {}, 0
    with av.open(path) as c:  # benchmark only: vidclip never skips the loop filter
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        s.codec_context.options = {"skip_loop_filter": loop_filter}
        cc = s.codec_context
        for pkt in c.demux(s):
            if skip and pkt.pts is not None:
                cc.skip_frame = "DEFAULT" if pkt.pts in want else "NONREF"
            for f in cc.decode(pkt):
                decoded += 1
                if f.pts in want:
                    out[f.pts] = f.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="BICUBIC")
    return {"frames": np.stack([out[k] for k in sorted(out)]), "decoded": decoded, "seeks": 0}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("nan")
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


STEPS = [  # (name, seek, skip, loop_filter)
    ("through", "never", False, None),
    ("seek", "auto", False, None),
    ("through+drop", "never", True, None),
    ("seek+drop", "auto", True, None),
    ("drop+loopfilter_nokey", "never", True, "nokey"),
    ("drop+loopfilter_all", "never", True, "all"),
]


def run_structure(repeats: int = 3, cache: Path = corpus.DEFAULT_CACHE, log=print) -> dict:
    """The --structure matrix (see the module's doc)."""
    from vidclip.ingest.decoder import preferred_decoders
    from vidclip.model.geometry import FrameGeometry

    allow_frame_threads()
    videos = corpus.structure_set()
    paths = corpus.ensure(videos, cache, log)
    geometry = FrameGeometry((224, 224))  # ViT-B-32's input; frames are decoded at twice its size, as ingest does
    rows = []
    for v, path in zip(videos, paths):
        path = str(path)
        pr = probe(path, BUDGET)
        plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0))
        size = geometry.decode_size(*pr.info.display_size)
        kept = len(plan.frame_index)
        bframes = "B-frames" if v.bframes is None else "no B-frames"
        gop = "GOP 250" if v.gop_s is None else f"GOP {int(v.gop_s * v.fps)}"
        ref = None
        for name, seek, skip, loop_filter in STEPS:
            t = _time(lambda: _read_steps(path, pr, plan, size, seek, skip, loop_filter), repeats)
            res = t.pop("result")
            ref = res["frames"] if ref is None else ref
            rows.append({"video": v.name, "res": v.res, "gop": gop, "bframes": bframes, "decoder": PYAV, "step": name,
                         "kept": kept, "decoded": res["decoded"], "decoded_per_kept": res["decoded"] / kept,
                         "psnr_db": _psnr(res["frames"], ref), "wall_s": t["wall_s"], "cpu_s": t["cpu_s"],
                         "cpu_ms_per_kept": 1000 * t["cpu_s"] / kept})
        t = _time(lambda: np.concatenate([c.frames for c in SampleReader(
            path, pr, plan, size, chunk_frames=64, decoders=(DECORD,)).chunks()]), repeats)
        frames = t.pop("result")
        rows.append({"video": v.name, "res": v.res, "gop": gop, "bframes": bframes, "decoder": DECORD, "step": "decord",
                     "kept": kept, "decoded": None, "decoded_per_kept": None, "psnr_db": _psnr(frames, ref),
                     "wall_s": t["wall_s"], "cpu_s": t["cpu_s"], "cpu_ms_per_kept": 1000 * t["cpu_s"] / kept})
        chosen = preferred_decoders(plan, pr, size)[0]
        for r in rows[-len(STEPS) - 1:]:
            log(f"{v.res:5s} {gop:7s} {bframes:11s} {r['step']:22s} cpu {r['cpu_s']:6.2f}s "
                f"{r['cpu_ms_per_kept']:6.1f} ms/kept  decoded/kept {r['decoded_per_kept'] or float('nan'):5.1f}  "
                f"PSNR {r['psnr_db']:.1f} dB")
        log(f"      vidclip's choice for this plan: {chosen}")
        rows[-1]["vidclip_first_choice"] = chosen
    return {"benchmark": "decode --structure", "machine": corpus.machine_info(), "repeats": repeats,
            "sampling": "1 frame/s", "corpus": [v.to_dict() for v in videos], "rows": rows}


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


def add_arguments(ap) -> None:
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--quick", action="store_true", help="short videos only (smoke run)")
    ap.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE, help="corpus cache directory")
    ap.add_argument("--only", nargs="+", help="only corpus videos whose name contains one of these")
    ap.add_argument("--structure", action="store_true",
                    help="the sparse-decoding steps by stream structure (writes benchmarks/decode_structure.json)")
    ap.add_argument("--out", default=None, help="the JSON file the results are written to "
                    "(default benchmarks/decode.json, or decode_structure.json with --structure)")


def cli(args) -> int:
    if args.structure:
        result = run_structure(args.repeats, Path(args.cache).expanduser())
        print(f"wrote {corpus.write_result(args.out or 'benchmarks/decode_structure.json', result)}")
        return 0
    args.out = args.out or "benchmarks/decode.json"
    result = run(args.repeats, args.quick, Path(args.cache).expanduser(), only=args.only)
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
