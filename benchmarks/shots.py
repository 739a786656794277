"""Shot-boundary detectors on generated videos with known cuts (vidclip.samples.shots).

    vidclip bench shots [--seeds 3] [--peer-python PY] [--out benchmarks/shots.json]
    (or: python3 -m benchmarks.shots ...)

Held out: six `random_script` videos (seeds 10-15, 480x270, 24 fps), never looked at while the
thresholds were set; the thumbnail and PySceneDetect detectors run on them too.

Corpus: `standard_script(seed)` for each seed (6 hard cuts off the sampling grid, a 0.5 s and a 1 s
and a 0.5 s dissolve, static, slow and fast pans, a flash, a 12.3 s single shot; 51 s), written at
640x360, 30 fps, H.264 with libx264's own keyframe placement (scene cuts on).  Detectors:

  thumbnails/every frame   vidclip.ingest.shots on a 32x18 grey picture of every frame
  thumbnails/decoded anyway  the same on the frames PyAV decodes anyway at 1 frame/s once it drops
                           the unplanned B-frames (no seeking): what shot-aware ingest would see
  sampled vectors          vidclip.ingest.shots.cuts_from_vectors on ViT-B-32 vectors of the
                           1 frame/s samples (random weights: a pixel-driven stand-in for CLIP)
  encoder keyframes        keyframes that are not on the stream's regular interval
  PySceneDetect content / adaptive   on every frame at 160x90, run by --peer-python when that
                           python can import scenedetect (it needs OpenCV); this command installs nothing

Reported per detector: precision, recall and F1 at +-0.5 s (one to one), recall by kind, F1 on the
hard cuts alone (detections inside a dissolve's span left out), and the decode CPU its signal
costs against decoding the 1 frame/s plan alone (seek + drop, what `--clips fixed` decodes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

FPS = 30.0
TOLERANCE_S = 0.5


HELD_OUT = range(10, 16)  # random_script seeds: not looked at while the thresholds were set


def _videos(seeds, cache: Path, held_out: bool = False) -> list[tuple[int, Path, object, float]]:
    """(seed, path, script, fps): the standard script at 640x360 30 fps, or held-out random
    scripts at 480x270 24 fps."""
    from vidclip.samples.shots import random_script, standard_script, write_shot_video

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        script, fps, (w, h) = (random_script(seed), 24.0, (480, 270)) if held_out else (standard_script(seed), FPS, (640, 360))
        path = cache / (f"shots_random_s{seed}_{w}x{h}_24fps.mp4" if held_out else f"shots_standard_s{seed}_640x360_30fps.mp4")
        if not path.exists():
            tmp = path.with_name(path.stem + ".part.mp4")
            write_shot_video(tmp, script, width=w, height=h, fps=fps)
            os.replace(tmp, path)
        out.append((seed, path, script, fps))
    return out


def _thumbnails(path: str, drop: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(N,) times, (N, 18, 32) grey thumbnails of the frames decoded, CPU seconds."""
    import av

    from vidclip.ingest.probe import probe
    from vidclip.ingest.sampling import plan_samples
    from vidclip.config import SamplingConfig

    wanted = None
    if drop:
        pr = probe(path, 1 << 40)
        plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0))
        wanted = {int(p) for p in pr.pts[plan.frame_index]}
    c0 = time.process_time()
    times, thumbs = [], []
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        cc = s.codec_context
        for pkt in c.demux(s):
            if wanted is not None and pkt.pts is not None:
                cc.skip_frame = "DEFAULT" if pkt.pts in wanted else "NONREF"
            for f in cc.decode(pkt):
                times.append(float(f.pts * s.time_base))
                thumbs.append(f.to_ndarray(format="gray", width=32, height=18))
    order = np.argsort(times)
    return np.asarray(times)[order], np.stack(thumbs)[order], time.process_time() - c0


def _fixed_decode_cpu(path: str) -> float:
    """CPU seconds of decoding the 1 frame/s plan as `--clips fixed` does (PyAV, seek + drop)."""
    from vidclip.config import SamplingConfig
    from vidclip.ingest.decoder import PYAV, SampleReader
    from vidclip.ingest.probe import probe
    from vidclip.ingest.sampling import plan_samples

    pr = probe(path, 1 << 40)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0))
    c0 = time.process_time()
    for _ in SampleReader(path, pr, plan, (398, 224), decoders=(PYAV,)).chunks():
        pass
    return time.process_time() - c0


def _vectors(path: str, encoder) -> tuple[np.ndarray, np.ndarray]:
    from vidclip.config import SamplingConfig
    from vidclip.ingest.decoder import PYAV, SampleReader
    from vidclip.ingest.probe import probe
    from vidclip.ingest.sampling import plan_samples

    pr = probe(path, 1 << 40)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0))
    frames, times = [], []
    for ch in SampleReader(path, pr, plan, encoder.decode_size(*pr.info.display_size), decoders=(PYAV,)).chunks():
        frames += list(ch.frames)
        times += list(ch.times)
    return np.asarray(times), encoder.encode_frames(frames).numpy()


def _keyframe_cuts(path: str) -> list[float]:
    """Keyframes off the stream's regular interval (the most common gap between keyframes)."""
    from vidclip.ingest.probe import probe

    pr = probe(path, 1 << 40)
    idx = np.flatnonzero(pr.keyframes)
    if len(idx) < 2:
        return []
    gaps = np.diff(idx)
    regular = int(np.bincount(gaps).argmax())
    return [float(pr.timeline[i]) for i, g in zip(idx[1:], gaps) if g != regular]


def _scenedetect_worker(path: str, fps: float = FPS) -> dict:
    """Run in --peer-python: PySceneDetect's content and adaptive detectors on every frame at 160x90."""
    import av
    from scenedetect import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    out = {}
    for name, det in (("content", ContentDetector()), ("adaptive", AdaptiveDetector())):
        c0 = time.process_time()
        cuts = []
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for n, f in enumerate(c.decode(s)):
                cuts += det.process_frame(FrameTimecode(n, fps), f.to_ndarray(format="bgr24", width=160, height=90))
        cuts += det.post_process(FrameTimecode(n, fps))
        out[name] = {"cuts": [float(c.seconds if hasattr(c, "seconds") else c.get_seconds()) for c in cuts],
                     "cpu_s": time.process_time() - c0}
    return out


def _scenedetect(path: str, python: str, fps: float = FPS) -> dict | None:
    code = ("import sys, json; from benchmarks.shots import _scenedetect_worker; "
            "print(json.dumps(_scenedetect_worker(sys.argv[1], float(sys.argv[2]))))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([python, "-c", code, path, str(fps)], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def hard_cut_f1(found: list[float], truth) -> float:
    from vidclip.samples.shots import score_boundaries

    spans = [(b.start_s - TOLERANCE_S, b.end_s + TOLERANCE_S) for b in truth if b.kind == "dissolve"]
    kept = [t for t in found if not any(a <= t <= b for a, b in spans)]
    return score_boundaries(kept, [b for b in truth if b.kind == "cut"], TOLERANCE_S)["f1"]


def run(seeds: int, python: str | None, cache: Path, log=print) -> dict:
    from vidclip.config import ModelConfig
    from vidclip.container import allow_frame_threads
    from vidclip.ingest.shots import cuts_from_thumbnails, cuts_from_vectors, dissolves_from_thumbnails
    from vidclip.model.encoder import Encoder
    from vidclip.samples.shots import score_boundaries

    allow_frame_threads()
    encoder = Encoder.load(ModelConfig(pretrained="none", device="cpu"))
    rows = []
    peer_ok = None
    videos = [("standard", v) for v in _videos(range(seeds), cache)] + [("held-out", v) for v in _videos(HELD_OUT, cache, True)]
    for corpus_name, (seed, path, script, fps) in videos:
        path = str(path)
        truth = script.boundaries(fps)
        held_out = corpus_name == "held-out"
        fixed = statistics.median(_fixed_decode_cpu(path) for _ in range(3))
        found: dict[str, tuple[list[float], float | None]] = {}
        for name, drop in (("thumbnails/every frame", False), ("thumbnails/decoded anyway", True)):
            times, thumbs, cpu = _thumbnails(path, drop)
            cuts = cuts_from_thumbnails(times, thumbs)
            found[name] = (sorted(cuts + dissolves_from_thumbnails(times, thumbs, cuts)), cpu)
        if not held_out:
            times, vecs = _vectors(path, encoder)
            found["sampled vectors"] = (cuts_from_vectors(times, vecs), 0.0)
            found["encoder keyframes"] = (_keyframe_cuts(path), 0.0)
        if python:
            sd = _scenedetect(path, python, fps)
            peer_ok = sd is not None
            for name, r in (sd or {}).items():
                found[f"PySceneDetect {name}"] = (r["cuts"], r["cpu_s"])
        for name, (cuts, cpu) in found.items():
            score = score_boundaries(cuts, truth, TOLERANCE_S)
            row = {"corpus": corpus_name, "seed": seed, "detector": name, "found": cuts, **score, "hard_cut_f1": hard_cut_f1(cuts, truth),
                   "decode_cpu_s": cpu, "fixed_decode_cpu_s": fixed,
                   "extra_decode_cpu_vs_fixed": None if cpu is None else cpu / fixed}
            rows.append(row)
            log(f"{corpus_name} seed {seed} {name:28s} P {score['precision']:.2f} R {score['recall']:.2f} F1 {score['f1']:.2f} "
                f"hard-cut F1 {row['hard_cut_f1']:.2f} dissolves {score['recall_by_kind'].get('dissolve', 0):.2f} "
                f"decode CPU {cpu:.2f}s ({cpu / fixed:.2f}x fixed)")
    summary: dict = {}
    for corpus_name in ("standard", "held-out"):
        part = {}
        for name in dict.fromkeys(r["detector"] for r in rows if r["corpus"] == corpus_name):
            rs = [r for r in rows if r["detector"] == name and r["corpus"] == corpus_name]
            part[name] = {k: statistics.mean(r[k] for r in rs) for k in ("precision", "recall", "f1", "hard_cut_f1", "extra_decode_cpu_vs_fixed")}
            part[name]["dissolve_recall"] = statistics.mean(r["recall_by_kind"].get("dissolve", 0.0) for r in rs)
        summary[corpus_name] = part
    if python and not peer_ok:
        log(f"PySceneDetect did not run from {python}: install it there (pip install scenedetect opencv-python-headless)")
    return {"benchmark": "shots", "machine": corpus.machine_info(), "tolerance_s": TOLERANCE_S, "fps": FPS,
            "seeds": seeds, "peer_python": python, "rows": rows, "summary": summary}


def table(summary: dict) -> str:
    """One corpus's summary (detector -> means) as a markdown table."""
    lines = ["| detector | precision | recall | F1 | hard-cut F1 | dissolve recall | decode CPU vs fixed |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['hard_cut_f1']:.2f} | "
                     f"{s['dissolve_recall']:.2f} | {s['extra_decode_cpu_vs_fixed']:.2f}x |")
    return "\n".join(lines)


def add_arguments(ap) -> None:
    ap.add_argument("--seeds", type=positive_int, default=3, help="videos of the standard script, one per seed")
    ap.add_argument("--peer-python", default=None, help="a python that can import scenedetect (default: this one)")
    ap.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE)
    ap.add_argument("--out", default="benchmarks/shots.json")


def cli(args) -> int:
    result = run(args.seeds, args.peer_python or sys.executable, Path(args.cache).expanduser())
    for corpus_name, part in result["summary"].items():
        print(f"{corpus_name}:\n{table(part)}")
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
