"""Encode benchmark: images/s of the open_clip image tower on CPU (random weights, pretrained="none").

    vidclip bench encode [--models ViT-B-32 ViT-L-14] [--batch-sizes 1 8 32 64] [--compile] [--out benchmarks/encode.json]
    (or: python3 -m benchmarks.encode ...)

Input is what the ingest path feeds the encoder: uint8 (H, W, 3) frames already resized at decode
time (398x224 for a 16:9 video), through `Encoder.encode_frames` (tensor preprocessing + forward).
Variants: fp32; bf16 and fp16 CPU autocast; channels_last; torch.set_num_threads(1 | all); torch.compile
(only with --compile: compiling takes minutes on 2 cores, measured once).  Each number is the
median of `repeats` timed calls after one warm-up call.

`--precision`: the Encoder's own precisions (ModelConfig.precision fp32 vs bf16: a bf16 copy of
the image tower), interleaved pair by pair, with the cosine of each bf16 vector to its fp32 one;
writes benchmarks/encode_precision.json.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (224, 398, 3), dtype=np.uint8) for _ in range(n)]


def _measure(encoder, frames, repeats: int, ctx_fn=nullcontext) -> dict:
    with ctx_fn():
        encoder.encode_frames(frames)  # warm-up
        walls, cpus = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            encoder.encode_frames(frames)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    w, c = statistics.median(walls), statistics.median(cpus)
    return {"wall_s": w, "cpu_s": c, "images_per_s": len(frames) / w, "images_per_cpu_s": len(frames) / c, "walls": walls}


def run(models=("ViT-B-32", "ViT-L-14"), batch_sizes=(1, 8, 32, 64), repeats: int = 3, compile_: bool = False,
        log=print) -> dict:
    import torch

    from vidclip.config import ModelConfig
    from vidclip.model.encoder import Encoder

    all_threads = torch.get_num_threads()
    rows = []

    def record(model, variant, bs, m):
        rows.append({"model": model, "variant": variant, "batch_size": bs, **m})
        log(f"{model:9s} {variant:22s} bs={bs:3d}  {m['images_per_s']:7.2f} img/s  ({m['images_per_cpu_s']:.2f} img/cpu-s)")

    for name in models:
        enc = Encoder.load(ModelConfig(name=name, pretrained="none", device="cpu"))
        big = name != "ViT-B-32"
        sizes = [b for b in batch_sizes if not big or b <= 8]
        for bs in sizes:
            enc.batch_size = bs
            frames = _frames(bs if big else max(bs, 32))  # >= 32 images per timed call for B-32
            reps = 1 if big else repeats
            record(name, "fp32", bs, _measure(enc, frames, reps))
        bs = sizes[-1]
        enc.batch_size = bs
        frames = _frames(bs if big else max(bs, 32))
        reps = 1 if big else repeats
        record(name, "bf16_autocast", bs, _measure(enc, frames, reps, lambda: torch.autocast("cpu", dtype=torch.bfloat16)))
        record(name, "fp16_autocast", bs, _measure(enc, frames, reps, lambda: torch.autocast("cpu", dtype=torch.float16)))
        enc._model.to(memory_format=torch.channels_last)
        record(name, "channels_last", bs, _measure(enc, frames, reps))
        enc._model.to(memory_format=torch.contiguous_format)
        torch.set_num_threads(1)
        record(name, "threads=1", bs, _measure(enc, frames, reps))
        torch.set_num_threads(all_threads)
        if compile_ and not big:
            # compile the image tower itself: Encoder calls model.encode_image -> model.visual(...),
            # which torch.compile(model) would not touch (only model.forward is compiled)
            visual = enc._model.visual
            t0 = time.perf_counter()
            enc._model.visual = torch.compile(visual)
            try:
                enc.encode_frames(frames)
                compile_s = time.perf_counter() - t0
                m = _measure(enc, frames, reps)
                m["compile_s"] = compile_s
                record(name, "torch.compile", bs, m)
            except Exception as exc:  # noqa: BLE001 - compile needs a C++ toolchain; record why it could not run
                rows.append({"model": name, "variant": "torch.compile", "batch_size": bs, "error": str(exc)[:300]})
            enc._model.visual = visual
        del enc
    return {"benchmark": "encode", "machine": corpus.machine_info(), "repeats": repeats,
            "input": "uint8 398x224 frames -> Encoder.encode_frames", "torch_threads_default": all_threads, "rows": rows}


def run_precision(models: list[str], batch: int = 64, pairs: int = 4, log=print) -> dict:
    """fp32 vs bf16 Encoders, interleaved: `pairs` timed calls of each on `batch` frames."""
    import torch

    from vidclip.config import ModelConfig
    from vidclip.model.encoder import Encoder, cpu_computes_bf16

    rows = []
    for name in models:
        encs = {p: Encoder.load(ModelConfig(name=name, pretrained="none", device="cpu", precision=p), batch_size=batch)
                for p in ("fp32", "bf16")}
        frames = _frames(batch)
        vecs = {p: e.encode_frames(frames) for p, e in encs.items()}  # also the warm-up
        cos = (vecs["fp32"] * vecs["bf16"]).sum(-1)
        runs: dict = {p: [] for p in encs}
        for i in range(pairs):
            for p in (("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")):
                runs[p].append(_measure(encs[p], frames, 1))
        med = {p: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")} for p, rs in runs.items()}
        row = {"model": name, "batch": batch, "pairs": pairs,
               **{f"{p}_cpu_ms_per_image": 1000 * m["cpu_s"] / batch for p, m in med.items()},
               **{f"{p}_wall_s": m["wall_s"] for p, m in med.items()},
               "cpu_speedup_bf16": med["fp32"]["cpu_s"] / med["bf16"]["cpu_s"],
               "cosine_min": float(cos.min()), "cosine_median": float(cos.median())}
        rows.append(row)
        log(f"{name:9s} fp32 {row['fp32_cpu_ms_per_image']:6.1f} CPU-ms/image, bf16 {row['bf16_cpu_ms_per_image']:6.1f} "
            f"({row['cpu_speedup_bf16']:.2f}x), cosine min {row['cosine_min']:.5f}")
        del encs
    return {"benchmark": "encode --precision", "machine": corpus.machine_info(), "cpu_computes_bf16": cpu_computes_bf16(),
            "torch_threads": torch.get_num_threads(), "input": "uint8 398x224 frames -> Encoder.encode_frames",
            "rows": rows}


def add_arguments(ap) -> None:
    ap.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14"])
    ap.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8, 32, 64])
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--precision", action="store_true",
                    help="fp32 vs bf16 image tower, interleaved (writes benchmarks/encode_precision.json)")
    ap.add_argument("--out", default=None, help="the JSON file the results are written to "
                    "(default benchmarks/encode.json, or encode_precision.json with --precision)")


def cli(args) -> int:
    if args.precision:
        result = run_precision(args.models if args.models != ["ViT-B-32", "ViT-L-14"] else ["ViT-B-32", "ViT-B-16"])
        print(f"wrote {corpus.write_result(args.out or 'benchmarks/encode_precision.json', result)}")
        return 0
    args.out = args.out or "benchmarks/encode.json"
    result = run(args.models, args.batch_sizes, args.repeats, args.compile)
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
