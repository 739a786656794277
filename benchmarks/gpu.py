"""GPU benchmark: encoder images/s, decode cores per GPU, and the end-to-end in-process ingest.

    vidclip bench gpu [--budget-s 420] [--n 200] [--duration-s 30] [--workers 15] [--out benchmarks/gpu.json]
    (or: python3 -m benchmarks.gpu ...)

Random weights (pretrained="none"): speed does not depend on the weights.  Sections, in order;
each is skipped, with a note in the result, once the time budget is spent:
  corpus   n distinct 720p30 H.264 files of duration_s (libx264 superfast, CABAC and B-frames, GOP 10 s):
           a few are encoded in parallel processes, the rest are remuxed copies with their own
           container metadata (distinct bytes, hence distinct video ids; the same decode work).
  encode   per model x precision (bf16, fp16 autocast) x batch size:
             e2e      Encoder.encode_frames on uint8 398x224 frames in host memory, what ingest calls
                      (stack + pinned H2D copy + tensor preprocessing + forward + vectors back)
             prep     the H2D copy + preprocessing of one batch alone
             forward  the image tower alone on preprocessed pixels already on the GPU
           and the same with the image tower under torch.compile (the compile's own time recorded).
  decode   decode-only sampled frames/s through ingest's decode sandbox with K child processes
           (1 fps sampling: every frame of the long GOP is decoded, one in 30 kept).
  ingest   Library.ingest (in-process, decode_workers=K) of the corpus into a new LanceDB store,
           ViT-B-32 on the GPU: sampled frames/s, GPU utilisation sampled by NVML every 0.2 s,
           and the encoder's share of the wall time.
  gpu_decode  whether a GPU decoder (torchcodec, PyNvVideoCodec) is importable there.
Derived: decode processes one GPU needs = encode images/s / sampled frames/s per decode process.
The result is rewritten after every section, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

INPUT_HW = (224, 398)  # what the decoder hands the encoder for a 16:9 video (resized at decode time)


class _Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget_s = time.monotonic(), float(budget_s)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)


# ----------------------------------------------------------------------------- corpus


def _write_base(args) -> str:
    v, path = args
    return str(corpus.write(v, Path(path)))


def _remux(src: Path, dst: Path, tag: str) -> None:
    """A copy of src with its own container metadata: new bytes, identical packets."""
    import av

    tmp = dst.with_name(dst.name + ".part" + dst.suffix)
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        out.metadata["comment"] = tag
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = ostream
            out.mux(packet)
    os.replace(tmp, dst)


def make_corpus(root: Path, n: int, duration_s: float, bases: int, log=print) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    base = [corpus.CorpusVideo("h264", "720p", duration_s, 10, fps=30, seed=i) for i in range(min(bases, n))]
    todo = [(v, str(root / v.name)) for v in base if not (root / v.name).exists()]
    t0 = time.perf_counter()
    if todo:
        spawn = multiprocessing.get_context("spawn")  # not fork: this process may hold lancedb's runtime
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1), mp_context=spawn) as pool:
            list(pool.map(_write_base, todo))
    paths = [root / v.name for v in base]
    for i in range(len(base), n):
        dst = root / f"copy{i:04d}_{base[i % len(base)].name}"
        if not dst.exists():
            _remux(paths[i % len(base)], dst, f"vidclip-bench copy {i}")
        paths.append(dst)
    log(f"corpus: {n} x {duration_s:g}s 720p30 H.264 ({len(base)} encoded, {n - len(base)} remuxed) "
        f"in {time.perf_counter() - t0:.0f}s, {sum(p.stat().st_size for p in paths) / 1e6:.0f} MB")
    return paths


# ----------------------------------------------------------------------------- encode


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeats: int) -> float:
    """Median seconds of fn() over `repeats` calls after one warm-up call."""
    fn()
    _sync(device)
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def _encode_rows(enc, name: str, variant: str, batch_sizes, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for bs in batch_sizes:
        enc.batch_size = bs
        frames = [rng.integers(0, 256, (*INPUT_HW, 3), dtype=np.uint8) for _ in range(4 * bs)]
        e2e = _timed(lambda: enc.encode_frames(frames), enc.device, repeats)
        prep = _timed(lambda: enc._preprocess_group(frames[:bs]), enc.device, repeats)
        pixels = enc._preprocess_group(frames[:bs])  # (bs, 3, 224, 224) on the device
        fwd = _timed(lambda: enc._encode_image_batch(pixels), enc.device, repeats)
        rows.append({
            "model": name, "variant": variant, "batch_size": bs,
            "e2e_images_per_s": len(frames) / e2e, "prep_images_per_s": bs / prep, "forward_images_per_s": bs / fwd,
            "e2e_ms_per_batch": 1e3 * e2e / 4, "prep_ms_per_batch": 1e3 * prep, "forward_ms_per_batch": 1e3 * fwd,
        })
    return rows


def bench_encode(models, precisions, batch_sizes, compile_, repeats, device, clock, log) -> dict:
    import torch

    from vidclip.config import ModelConfig
    from vidclip.model.encoder import Encoder

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
    rows, skipped = [], []
    for name in models:
        if clock.left() < 60:
            skipped.append(f"{name}: out of time")
            continue
        enc = Encoder.load(ModelConfig(name=name, pretrained="none", device=device))
        for prec in precisions:
            enc.cuda_autocast = dtypes[prec]
            for r in _encode_rows(enc, name, prec, batch_sizes, repeats):
                rows.append(r)
                log(f"encode {name:9s} {prec:4s} bs={r['batch_size']:3d}  e2e {r['e2e_images_per_s']:8.0f} img/s  "
                    f"prep {r['prep_images_per_s']:8.0f}  forward {r['forward_images_per_s']:8.0f}")
        if compile_:
            visual = enc._model.visual
            enc._model.visual = torch.compile(visual)
            for prec in precisions:
                if clock.left() < 90:
                    skipped.append(f"{name} torch.compile {prec}: out of time")
                    continue
                enc.cuda_autocast = dtypes[prec]
                enc.batch_size = max(batch_sizes)
                t0 = time.perf_counter()
                try:
                    enc.encode_frames([np.zeros((*INPUT_HW, 3), np.uint8)] * enc.batch_size)
                except Exception as exc:  # noqa: BLE001 - record why compile could not run there
                    rows.append({"model": name, "variant": f"{prec}+compile", "error": str(exc)[:300]})
                    break
                compile_s = time.perf_counter() - t0
                for r in _encode_rows(enc, name, f"{prec}+compile", [max(batch_sizes)], repeats):
                    r["compile_s"] = compile_s
                    rows.append(r)
                    log(f"encode {name:9s} {prec}+compile bs={r['batch_size']:3d}  e2e {r['e2e_images_per_s']:8.0f} img/s  "
                        f"forward {r['forward_images_per_s']:8.0f}  (compiled in {compile_s:.0f}s)")
            enc._model.visual = visual
        del enc
        if device != "cpu":
            torch.cuda.empty_cache()
    return {"rows": rows, "skipped": skipped}


# ----------------------------------------------------------------------------- decode


def _geometry():
    from vidclip.config import ModelConfig
    from vidclip.model.encoder import Encoder
    from vidclip.model.geometry import FrameGeometry

    return FrameGeometry.of_model(Encoder.load(ModelConfig(pretrained="none", device="cpu")).model)


def decode_only(paths: list[Path], workers: int, geometry) -> dict:
    """Sampled frames/s of ingest's own decode path (the sandbox) with `workers` children."""
    from vidclip.config import DecodeConfig, SamplingConfig
    from vidclip.ingest.sandbox import CHUNK, make_decoder

    sampling, decode = SamplingConfig(), DecodeConfig()
    todo, lock, counts = iter(paths), threading.Lock(), []

    def drain(decoder) -> None:
        n = 0
        while True:
            with lock:
                p = next(todo, None)
            if p is None:
                break
            for kind, payload in decoder.run(str(p), sampling, decode, geometry):
                if kind == CHUNK:
                    n += len(payload.position)
        counts.append(n)

    with ExitStack() as stack:
        decoders = [stack.enter_context(make_decoder(decode.job, decode.timeout_s, decode.isolate)) for _ in range(workers)]
        t0, c0 = time.perf_counter(), _children_cpu()
        threads = [threading.Thread(target=drain, args=(d,)) for d in decoders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    frames = sum(counts)
    return {"workers": workers, "videos": len(paths), "sampled_frames": frames, "wall_s": wall,
            "sampled_frames_per_s": frames / wall, "per_worker_frames_per_s": frames / wall / workers,
            "children_cpu_s": _children_cpu() - c0}


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- ingest


class _GpuSampler:
    """GPU utilisation (%), read through NVML every `period_s` on a thread."""

    def __init__(self, period_s: float = 0.2):
        self.period_s, self.samples, self.error = period_s, [], None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._done.wait(self.period_s):
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception as exc:  # noqa: BLE001 - no NVML there: say so in the result
                self.error = f"{type(exc).__name__}: {exc}"
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples
        if not s:
            return {"gpu_util_error": self.error}
        return {"gpu_util_mean_pct": statistics.fmean(s), "gpu_util_p90_pct": float(np.percentile(s, 90)),
                "gpu_util_samples": len(s)}


def ingest(paths: list[Path], workers: int, model: str, batch_size: int, device: str) -> dict:
    import vidclip
    from vidclip.config import SamplingConfig

    with tempfile.TemporaryDirectory() as db:
        lib = vidclip.open(db, model, "none", device=device)
        enc = lib.encoder  # built before the clock starts
        busy = {"s": 0.0, "calls": 0, "frames": 0}
        encode = enc.encode_frames

        def timed_encode(frames):
            t0 = time.perf_counter()
            out = encode(frames)
            busy["s"] += time.perf_counter() - t0
            busy["calls"] += 1
            busy["frames"] += len(frames)
            return out

        enc.encode_frames = timed_encode
        sampler = _GpuSampler() if device != "cpu" else None
        t0 = time.perf_counter()
        with sampler or ExitStack():
            report = lib.ingest([str(p) for p in paths], SamplingConfig(), batch_size=batch_size, progress=False,
                                decode_workers=workers)
        wall = time.perf_counter() - t0
    out = {"workers": workers, "model": model, "batch_size": batch_size, "videos": len(paths), "ok": report.ok,
           "failed": report.failed, "frames": report.frames, "wall_s": wall, "sampled_frames_per_s": report.frames / wall,
           "videos_per_s": report.ok / wall, "encoder_busy_s": busy["s"], "encoder_share": busy["s"] / wall,
           "encoder_calls": busy["calls"], "mean_frames_per_call": busy["frames"] / max(1, busy["calls"])}
    if sampler is not None:
        out.update(sampler.summary())
    return out


def gpu_decoders() -> dict:
    found = {}
    for mod in ("torchcodec", "PyNvVideoCodec"):
        try:
            m = __import__(mod)
            found[mod] = getattr(m, "__version__", "importable")
        except Exception as exc:  # noqa: BLE001 - absent, or present and broken: both recorded
            found[mod] = f"not available ({type(exc).__name__})"
    return found


# ----------------------------------------------------------------------------- driver


def run(args, log=print) -> dict:
    import torch

    clock = _Clock(args.budget_s)
    device = args.device
    result: dict = {"benchmark": "gpu", "machine": corpus.machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                    "skipped": []}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        result["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "sms": p.multi_processor_count,
                         "torch": torch.__version__, "cuda": torch.version.cuda}
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def save(section: str) -> None:
        result["elapsed_s"] = round(time.monotonic() - clock.t0, 1)
        corpus.write_result(args.out, result)
        log(f"[{section} done at {result['elapsed_s']:.0f}s, {clock.left():.0f}s of budget left]")

    paths = make_corpus(Path(args.cache), args.n, args.duration_s, args.bases, log)
    result["corpus"] = {"n": len(paths), "duration_s": args.duration_s, "res": "1280x720", "fps": 30, "gop_s": 10,
                        "codec": "h264 (libx264 superfast)", "bases": min(args.bases, args.n)}
    save("corpus")

    enc = bench_encode(args.models, args.precisions, args.batch_sizes, False, args.repeats, device, clock, log)
    result["encode"] = enc["rows"]
    result["skipped"] += enc["skipped"]
    save("encode")

    geometry = _geometry()
    result["decode"] = []
    for k in sorted(set(args.decode_workers)):
        if clock.left() < 60:
            result["skipped"].append(f"decode K={k}: out of time")
            continue
        subset = paths[: max(2 * k, 8)]
        r = decode_only(subset, k, geometry)
        result["decode"].append(r)
        log(f"decode K={k:2d}: {r['sampled_frames_per_s']:7.1f} sampled frames/s ({r['per_worker_frames_per_s']:.1f} per process), "
            f"{r['children_cpu_s']:.0f} CPU-s in {r['wall_s']:.1f}s")
        save(f"decode K={k}")

    if clock.left() > 60:
        r = ingest(paths, args.workers, args.ingest_model, args.ingest_batch, device)
        result["ingest"] = r
        log(f"ingest {r['videos']} videos, K={r['workers']}: {r['sampled_frames_per_s']:.0f} sampled frames/s, "
            f"{r['videos_per_s']:.2f} videos/s, GPU util mean {r.get('gpu_util_mean_pct', float('nan')):.1f}%, "
            f"encoder share {r['encoder_share']:.1%}")
        save("ingest")
    else:
        result["skipped"].append("ingest: out of time")

    result["derived"] = derive(result, args.ingest_model, args.ingest_batch)
    result["gpu_decode"] = gpu_decoders()
    save("derived")

    if args.compile and clock.left() > 120:
        enc = bench_encode(args.models, args.precisions, [max(args.batch_sizes)], True, args.repeats, device, clock, log)
        result["encode_compiled"] = [r for r in enc["rows"] if "compile" in str(r.get("variant"))]
        result["skipped"] += enc["skipped"]
        save("compile")
    elif args.compile:
        result["skipped"].append("torch.compile: out of time")
    return result


def derive(result: dict, model: str, batch: int) -> dict:
    """Decode processes one GPU needs: the encoder's images/s over one decode process's sampled frames/s."""
    enc = [r for r in result.get("encode", []) if r["model"] == model and r["variant"] == "bf16"]
    dec = [r for r in result.get("decode", []) if r["workers"] > 1] or result.get("decode", [])
    if not enc or not dec:
        return {}
    best = max(enc, key=lambda r: r["e2e_images_per_s"])
    widest = max(dec, key=lambda r: r["workers"])
    per_proc = widest["per_worker_frames_per_s"]
    cpu_s_per_frame = widest["children_cpu_s"] / max(1, widest["sampled_frames"])
    return {"model": model, "encode_e2e_images_per_s": best["e2e_images_per_s"], "at_batch": best["batch_size"],
            "sampled_frames_per_s_per_decode_process": per_proc,
            "decode_cpu_s_per_sampled_frame": cpu_s_per_frame,
            "decode_processes_per_gpu": best["e2e_images_per_s"] / per_proc,
            "decode_cores_per_gpu": best["e2e_images_per_s"] * cpu_s_per_frame}


def add_arguments(ap) -> None:
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu for a smoke run")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip what is left after this many seconds")
    ap.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14"])
    ap.add_argument("--precisions", nargs="+", choices=["bf16", "fp16", "fp32"], default=["bf16", "fp16"])
    ap.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[256, 512])
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--compile", action="store_true", help="also measure the image tower under torch.compile")
    ap.add_argument("--n", type=positive_int, default=200, help="videos in the ingest corpus")
    ap.add_argument("--duration-s", type=float, default=30.0)
    ap.add_argument("--bases", type=positive_int, default=24, help="videos encoded; the rest are remuxed copies")
    ap.add_argument("--decode-workers", type=positive_int, nargs="+", default=[1, 15])
    ap.add_argument("--workers", type=positive_int, default=15, help="decode processes in the ingest")
    ap.add_argument("--ingest-model", default="ViT-B-32")
    ap.add_argument("--ingest-batch", type=positive_int, default=256)
    ap.add_argument("--cache", default=str(corpus.DEFAULT_CACHE / "gpu"))
    ap.add_argument("--out", default="benchmarks/gpu.json")


def cli(args) -> int:
    run(args)
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
