"""Ingest benchmark: end-to-end in-process ingestion vs its decode-only and encode-only parts.

    vidclip bench ingest [--n 10 100] [--repeats 3] [--out benchmarks/ingest.json]
    (or: python3 -m benchmarks.ingest ...)

Corpus: n distinct 5 s 360p H.264 clips (benchmarks/corpus.py), default sampling (1 frame/s),
ViT-B-32 with random weights on CPU, batch size 64, the decode sandbox on (the default).
Every measurement runs in a fresh python process (so peak RSS is its own):
  pipeline     Library.ingest into a new store (model built before the clock starts)
  decode_only  the same decode jobs through the same sandbox, frames dropped
  encode_only  Encoder.encode_frames on the same number of frames of the same size, same batch size
Reported: medians over `repeats`, videos/s and sampled frames/s, the ratio
pipeline_wall / (decode_only_wall + encode_only_wall) (target <= 1.0: decode overlaps encode), and
peak RSS (parent + the largest child) at each n (target: 100 videos within 20% of 10 videos).
Also measured: the runner without its decode thread (the pre-overlap behaviour), and with
`--ray` the Ray Data job on a local Ray started on the clock (RSS: the driver only; Ray's workers
are separate processes).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

MODEL = "ViT-B-32"
BATCH = 64


def _peak_mb() -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_parent_mb": self_kb / 1024, "peak_rss_child_mb": child_kb / 1024,
            "peak_rss_mb": (self_kb + child_kb) / 1024}


def _worker(mode: str, paths: list[str], prefetch: int) -> dict:
    import numpy as np

    import vidclip
    from vidclip.ingest import runner
    from vidclip.config import DecodeConfig, SamplingConfig
    from vidclip.model.geometry import FrameGeometry
    from vidclip.ingest.sandbox import CHUNK, make_decoder

    sampling, decode = SamplingConfig(), DecodeConfig()
    out: dict = {"mode": mode, "n": len(paths)}
    if mode in ("pipeline", "ray"):
        runner.PREFETCH_BATCHES = prefetch
        ray = False
        if mode == "ray":
            from pipelines.options import JobOptions

            ray = JobOptions(batch_size=BATCH)
        with tempfile.TemporaryDirectory() as db:
            lib = vidclip.open(db, MODEL, "none", device="cpu")
            lib.encoder  # build the model before the clock starts (Ray's actor builds its own, on the clock)
            t0 = time.perf_counter()
            report = lib.ingest(paths, sampling, batch_size=BATCH, progress=False, ray=ray)
            out["wall_s"] = time.perf_counter() - t0
            out.update(ok=report.ok, failed=report.failed, frames=report.frames, prefetch=prefetch)
    elif mode in ("decode_only", "encode_only"):
        from vidclip.config import ModelConfig
        from vidclip.model.encoder import Encoder

        enc = Encoder.load(ModelConfig(name=MODEL, pretrained="none", device="cpu"), batch_size=BATCH)
        geometry = FrameGeometry.of_model(enc.model)
        shapes = []
        t0 = time.perf_counter()
        with make_decoder(decode.job, decode.timeout_s, decode.isolate) as dec:
            for p in paths:
                for kind, payload in dec.run(p, sampling, decode, geometry):
                    if kind == CHUNK:
                        shapes += [payload.frames.shape[1:]] * len(payload.position)
        wall = time.perf_counter() - t0
        out["frames"] = len(shapes)
        if mode == "decode_only":
            out["wall_s"] = wall
        else:
            rng = np.random.default_rng(0)
            frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
            t0 = time.perf_counter()
            for lo in range(0, len(frames), BATCH):  # the runner's batches: batch_size frames per call
                enc.encode_frames(frames[lo : lo + BATCH])
            out["wall_s"] = time.perf_counter() - t0
    out.update(_peak_mb())
    return out


def _spawn(mode: str, n: int, prefetch: int, cache: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--worker", mode, "--n", str(n),
           "--prefetch", str(prefetch), "--cache", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ns=(10, 100), repeats: int = 3, prefetch_compare: bool = True, cache: Path = corpus.DEFAULT_CACHE,
        log=print, ray: bool = False) -> dict:
    corpus.ensure(corpus.ingest_set(max(ns)), cache, log)
    from vidclip.ingest.runner import PREFETCH_BATCHES

    runs, summary = [], {}
    for n in ns:
        modes = [("pipeline", PREFETCH_BATCHES), ("decode_only", 0), ("encode_only", 0)]
        if prefetch_compare:
            modes.append(("pipeline", 0))
        if ray:
            modes.append(("ray", PREFETCH_BATCHES))
        for _ in range(repeats):
            for mode, pf in modes:
                r = _spawn(mode, n, pf, cache)
                runs.append(r)
                log(f"n={n:3d} {mode:12s} prefetch={pf} wall {r['wall_s']:6.2f}s frames {r['frames']:4d} "
                    f"peak {r['peak_rss_mb']:.0f} MB")

        def med(mode, pf=None, key="wall_s"):
            vals = [r[key] for r in runs if r["n"] == n and r["mode"] == mode and (pf is None or r.get("prefetch") == pf)]
            return statistics.median(vals)

        p, d, e = med("pipeline", PREFETCH_BATCHES), med("decode_only"), med("encode_only")
        frames = med("pipeline", PREFETCH_BATCHES, "frames")
        s = {"pipeline_wall_s": p, "decode_only_wall_s": d, "encode_only_wall_s": e,
             "ratio_pipeline_over_sum": p / (d + e), "videos_per_s": n / p, "frames_per_s": frames / p,
             "peak_rss_mb": med("pipeline", PREFETCH_BATCHES, "peak_rss_mb"),
             "peak_rss_parent_mb": med("pipeline", PREFETCH_BATCHES, "peak_rss_parent_mb")}
        if prefetch_compare:
            p0 = med("pipeline", 0)
            s.update(pipeline_no_prefetch_wall_s=p0, ratio_no_prefetch=p0 / (d + e),
                     peak_rss_no_prefetch_mb=med("pipeline", 0, "peak_rss_mb"))
        if ray:
            r = med("ray")
            s.update(ray_wall_s=r, ray_videos_per_s=n / r, ray_frames_per_s=frames / r, ray_ratio_over_sum=r / (d + e),
                     ray_peak_rss_parent_mb=med("ray", key="peak_rss_parent_mb"))
        summary[n] = s
        log(json.dumps({n: s}, indent=1))
    if len(ns) >= 2:
        lo, hi = summary[min(ns)], summary[max(ns)]
        summary["peak_rss_growth"] = hi["peak_rss_mb"] / lo["peak_rss_mb"] - 1
    return {"benchmark": "ingest", "machine": corpus.machine_info(), "repeats": repeats, "model": MODEL,
            "batch_size": BATCH, "sampling": "fps=1, clip_seconds=10", "prefetch_batches": PREFETCH_BATCHES,
            "corpus": corpus.ingest_set(1)[0].to_dict() | {"n": list(ns)}, "runs": runs, "summary": summary}


def add_arguments(ap) -> None:
    ap.add_argument("--n", type=positive_int, nargs="+", default=[10, 100], help="corpus sizes (videos)")
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--no-prefetch-compare", action="store_true", help="skip the run without the decode thread")
    ap.add_argument("--ray", action="store_true", help="also run the Ray Data job (local Ray, started on the clock)")
    ap.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE)
    ap.add_argument("--out", default="benchmarks/ingest.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prefetch", type=float, default=2, help=argparse.SUPPRESS)


def cli(args) -> int:
    cache = Path(args.cache).expanduser()
    if args.worker:
        paths = [str(p) for p in corpus.ensure(corpus.ingest_set(args.n[0]), cache)]
        print(json.dumps(_worker(args.worker, paths, args.prefetch)))
        return 0
    result = run(args.n, args.repeats, not args.no_prefetch_compare, cache, ray=args.ray)
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
