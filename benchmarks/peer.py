"""Peer benchmark: `vidclip ingest` against clip-video-encode on the same corpus, model and frames out.

    vidclip bench peer [--repeats 3] [--peer-python PY] [--source DIR] [--out benchmarks/peer.json]
    (or: python3 -m benchmarks.peer ...)

`--weights checkpoint`: both tools load the same ViT-B-32 weights (seeded random, saved once as a
safetensors file in the corpus cache) from a file, as users load pretrained weights, instead of
building random ones.

Corpus (benchmarks/corpus.py peer_set): 8 x 30 s 720p30 and 8 x 30 s 360p30 H.264 written with
libx264's defaults (preset medium, keyframe interval 250 with scene cuts, 3 B-frames), natural
texture under a slow pan with grain.  Model: ViT-B-32 with random weights on the CPU.  Frames out:
1 per second, 30 per video, from both tools (vidclip `--fps 1`, clip-video-encode
`--take_every_nth 30`); the counts are read back from each tool's output and must match.

Every run is a fresh process tree started here, timed from outside: wall seconds, CPU seconds of
the whole tree (user + system of every process, from wait4), peak RSS of the largest process and
peak RSS summed over the tree (sampled every 0.2 s).  The tools alternate run by run (interleaved),
`repeats` times, and medians are reported.  Also measured for vidclip, in fresh processes: the
decode stage alone and the encoder alone on the same frames (benchmarks/ingest.py's workers), for
the target ingest wall <= 1.05 x (decode-only + encode-only); all three are timed in-process after
the model is built (the command-line runs above also pay the interpreter, imports and model).

This command installs nothing.  clip-video-encode 1.3.0 pins torch<2, numpy<2 and pyarrow<8, so it
is run from its own environment given by --peer-python; when that python cannot import it, the
command says how to make one and measures vidclip alone.  `--source DIR` also runs another
checkout's vidclip (a worktree of an earlier commit) in the same interleaving: the before column.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

MODEL = "ViT-B-32"
EVERY_NTH = 30  # the corpus is 30 fps: 1 frame per second
INSTALL_PEER = ("python3 -m venv --system-site-packages ~/cve-venv && ~/cve-venv/bin/pip install --no-deps "
                "clip-video-encode==1.3.0 video2numpy==2.3.0 opencv-python-headless 'fire<0.5' "
                "'webdataset>=0.2,<0.3' braceexpand youtube-dl ffmpeg-python termcolor six "
                "(--no-deps: its pins would replace this environment's torch, numpy and pyarrow), "
                "then: vidclip bench peer --peer-python ~/cve-venv/bin/python")


# -- measuring a process tree -----------------------------------------------------------------------
def _tree_rss_kb(root: int) -> tuple[int, int]:
    """(sum, max) RSS in kB over `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            pid, ppid = int(name), int(fields[1])
            rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(pid)
    total, peak, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        peak = max(peak, rss.get(pid, 0))
        todo += children.get(pid, [])
    return total, peak


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    """Run cmd; wall, CPU of the whole tree (and its user / system split, and minor page faults:
    the peer's system time varies several-fold on this VM with what a page fault costs, see
    docs/performance.md), peak RSS (largest process, and summed over the tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = {"sum": 0, "max": 0}
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            total, peak = _tree_rss_kb(proc.pid)
            peaks["sum"], peaks["max"] = max(peaks["sum"], total), max(peaks["max"], peak)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read())) for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{''.join(err)[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "minor_faults": usage.ru_minflt, "peak_rss_mb": max(usage.ru_maxrss, peaks["max"]) / 1024,
            "peak_rss_sum_mb": peaks["sum"] / 1024, "stdout": "".join(out)}


# -- the tools ------------------------------------------------------------------------------------
def random_checkpoint(cache: Path) -> Path:
    """ViT-B-32 with seeded random weights saved as a checkpoint file (once, in the corpus cache):
    `--weights checkpoint` gives it to both tools, as users give them pretrained weights."""
    path = cache / f"{MODEL}-random-seed0.safetensors"
    if not path.exists():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        model = open_clip.create_model(MODEL, pretrained=None)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        tmp.replace(path)
    return path


def _vidclip(paths: list[str], work: Path, source: str | None, weights: str = "none") -> dict:
    db = tempfile.mkdtemp(dir=work)
    root = source or str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root, TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "vidclip", "ingest", *paths, "--db", db, "--runner", "local", "--fps", "1",
           "--model", MODEL, "--pretrained", weights, "--json"]
    res = measure(cmd, env=env, cwd=str(work))  # cwd: not a checkout, so PYTHONPATH decides which vidclip runs
    report = json.loads(res.pop("stdout").strip().splitlines()[-1])
    res["frames_out"] = report["frames"]
    if report.get("failed"):
        raise RuntimeError(f"vidclip failed {report['failed']} videos: {report.get('failures')}")
    return res


def _peer(paths: list[str], work: Path, python: str, weights: str = "None") -> dict:
    import numpy as np

    dest = Path(tempfile.mkdtemp(dir=work))
    listing = dest / "videos.txt"
    listing.write_text("\n".join(paths) + "\n")
    (dest / "out").mkdir()  # clip-video-encode writes into it but does not create it
    cmd = [python, "-c", "from clip_video_encode.cli import main; main()", str(listing), "--dest", str(dest / "out"),
           "--take_every_nth", str(EVERY_NTH), "--frame_workers", str(os.cpu_count() or 1),
           "--oc_model_name", MODEL, "--pretrained", weights]
    res = measure(cmd, cwd=str(work))
    res.pop("stdout")
    res["frames_out"] = sum(int(np.load(p, mmap_mode="r").shape[0]) for p in (dest / "out").glob("*.npy"))
    return res


PEER_PACKAGES = ("clip-video-encode", "video2numpy", "opencv-python-headless", "torch", "open_clip_torch", "numpy")


def peer_versions(python: str) -> dict:
    """The versions that may decide the peer's speed, from its own environment (recorded since its
    CPU rose from 35 to 44-50 s between two stops; opencv 5.0 and 4.14 measured alike, so the
    version was not the cause: docs/performance.md)."""
    code = ("import json, importlib.metadata as m\nout = {}\nfor p in %r:\n    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\nprint(json.dumps(out))") % (PEER_PACKAGES,)
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def peer_importable(python: str) -> bool:
    done = subprocess.run([python, "-c", "import clip_video_encode, video2numpy, cv2"], capture_output=True, check=False)
    return done.returncode == 0


def _parts(paths: list[str]) -> dict:
    """vidclip's in-process ingest, decode-only and encode-only walls on these videos, each timed
    after the model is built (benchmarks/ingest.py workers)."""
    from benchmarks.ingest import _worker

    return {mode: _worker(mode, paths, prefetch=2) for mode in ("pipeline", "decode_only", "encode_only")}


def run(repeats: int, python: str | None, source: str | None, cache: Path, log=print, n: int = 8,
        weights: str = "random") -> dict:
    videos = corpus.peer_set(n)
    paths = [str(p) for p in corpus.ensure(videos, cache, log)]
    checkpoint = str(random_checkpoint(cache)) if weights == "checkpoint" else None
    halves = {res: [p for v, p in zip(videos, paths) if v.res == res] for res in ("720p", "360p")}
    peer = python if python and peer_importable(python) else None
    if peer is None:
        log(f"clip-video-encode is not importable from {python or sys.executable}; measuring vidclip alone. "
            f"To compare: {INSTALL_PEER}")
    ours, theirs = (checkpoint, checkpoint) if checkpoint else ("none", "None")
    tools = {"vidclip": lambda ps, w: _vidclip(ps, w, None, ours)}
    if source:
        tools["vidclip_before"] = lambda ps, w: _vidclip(ps, w, source, ours)
    if peer:
        tools["clip-video-encode"] = lambda ps, w: _peer(ps, w, peer, theirs)
    runs: dict = {res: {t: [] for t in tools} for res in halves}
    parts: dict = {res: [] for res in halves}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(repeats):
            for res, ps in halves.items():
                order = list(tools) if r % 2 == 0 else list(reversed(tools))  # interleaved, alternating first
                for tool in order:
                    out = tools[tool](ps, work)
                    runs[res][tool].append(out)
                    log(f"{res} {tool:18s} run {r + 1}: wall {out['wall_s']:6.1f}s cpu {out['cpu_s']:6.1f}s "
                        f"(user {out['user_s']:.1f} sys {out['sys_s']:.1f}, {out['minor_faults'] / 1e6:.2f}M faults) "
                        f"peak {out['peak_rss_mb']:6.0f} MB (tree {out['peak_rss_sum_mb']:6.0f} MB) "
                        f"frames {out['frames_out']}")
                parts[res].append(_spawn_parts(ps))
                p = parts[res][-1]
                log(f"{res} vidclip parts run {r + 1}: ingest {p['pipeline']['wall_s']:.1f}s, decode-only "
                    f"{p['decode_only']['wall_s']:.1f}s, encode-only {p['encode_only']['wall_s']:.1f}s")
    return {"benchmark": "peer", "machine": corpus.machine_info(), "repeats": repeats, "model": MODEL,
            "peer_python": peer, "peer_versions": peer_versions(peer) if peer else None, "source_before": source, "weights": weights, "checkpoint": checkpoint, "corpus": [v.to_dict() for v in videos],
            "runs": runs, "parts": parts, "summary": summarize(runs, parts)}


def _spawn_parts(paths: list[str]) -> dict:
    """_parts in a fresh process (its own model, its own peak RSS)."""
    cmd = [sys.executable, "-m", "benchmarks.peer", "--parts", *paths]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    if done.returncode != 0:
        raise RuntimeError(f"decode/encode-only run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: dict, parts: dict) -> dict:
    out = {}
    for res, tools in runs.items():
        s = {}
        for tool, rs in tools.items():
            frames = rs[0]["frames_out"]
            cpu = statistics.median(r["cpu_s"] for r in rs)
            s[tool] = {"wall_s": statistics.median(r["wall_s"] for r in rs), "cpu_s": cpu,
                       "cpu_s_per_frame": cpu / frames, "frames_out": frames,
                       "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                       "peak_rss_sum_mb": statistics.median(r["peak_rss_sum_mb"] for r in rs)}
            for key in ("user_s", "sys_s", "minor_faults"):
                if all(key in r for r in rs):
                    s[tool][key] = statistics.median(r[key] for r in rs)
        if "clip-video-encode" in s:
            s["cpu_per_frame_ratio_vs_peer"] = s["vidclip"]["cpu_s_per_frame"] / s["clip-video-encode"]["cpu_s_per_frame"]
            s["equal_frames_out"] = s["vidclip"]["frames_out"] == s["clip-video-encode"]["frames_out"]
        if "vidclip_before" in s:
            s["cpu_ratio_vs_before"] = s["vidclip"]["cpu_s"] / s["vidclip_before"]["cpu_s"]
        dec = statistics.median(p["decode_only"]["wall_s"] for p in parts[res])
        enc = statistics.median(p["encode_only"]["wall_s"] for p in parts[res])
        ingest = statistics.median(p["pipeline"]["wall_s"] for p in parts[res])
        s["ingest_wall_s"], s["decode_only_wall_s"], s["encode_only_wall_s"] = ingest, dec, enc
        s["ingest_wall_over_parts"] = ingest / (dec + enc)  # all three timed after the model is built
        out[res] = s
    return out


def table(summary: dict) -> str:
    lines = ["| corpus | tool | wall | CPU-s | user / system s | CPU-s per frame | peak RSS (largest / tree) |",
             "|---|---|---|---|---|---|---|"]
    for res, s in summary.items():
        for tool in ("vidclip", "vidclip_before", "clip-video-encode"):
            if tool in s:
                t = s[tool]
                split = f"{t['user_s']:.1f} / {t['sys_s']:.1f}" if "user_s" in t else "-"
                lines.append(f"| 8 x 30 s {res} | {tool} | {t['wall_s']:.1f} s | {t['cpu_s']:.1f} | {split} | "
                             f"{t['cpu_s_per_frame']:.3f} | {t['peak_rss_mb'] / 1024:.1f} / {t['peak_rss_sum_mb'] / 1024:.1f} GB |")
    return "\n".join(lines)


def add_arguments(ap) -> None:
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--peer-python", default=None,
                    help="the python whose environment has clip-video-encode (default: this one)")
    ap.add_argument("--source", help="also run another checkout's vidclip (an earlier commit's worktree): before/after")
    ap.add_argument("--n", type=positive_int, default=8, help="videos per resolution")
    ap.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE)
    ap.add_argument("--weights", choices=("random", "checkpoint"), default="random",
                    help="random: both tools build ViT-B-32 with random weights; checkpoint: both load the same "
                         "random weights from a file, as users load pretrained weights")
    ap.add_argument("--out", default="benchmarks/peer.json")
    ap.add_argument("--parts", nargs="+", help=argparse.SUPPRESS)  # internal: _parts in a fresh process


def cli(args) -> int:
    if args.parts:
        print(json.dumps(_parts(args.parts), default=str))
        return 0
    result = run(args.repeats, args.peer_python or sys.executable, args.source, Path(args.cache).expanduser(), n=args.n,
                 weights=args.weights)
    print(table(result["summary"]))
    for res, s in result["summary"].items():
        extra = f", CPU per frame {s['cpu_per_frame_ratio_vs_peer']:.2f}x clip-video-encode's" if "cpu_per_frame_ratio_vs_peer" in s else ""
        print(f"{res}: ingest wall / (decode-only + encode-only) = {s['ingest_wall_over_parts']:.2f}{extra}")
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
