"""Pixel parity of the ingest path: vidclip's model inputs vs open_clip's PIL preprocess.

    vidclip bench parity [--model ViT-B-32] [--out benchmarks/parity.json]

For each generated video (natural-looking content, H.264; 240p to 4K, 100x700, a 4:3 picture
letterboxed in 16:9, a portrait phone video with a rotation tag), the sampled frames are decoded
twice by vidclip's own reader:
  reference  at full size (no resize) -> PIL -> open_clip's eval transform for the model
  candidate  the ingest path: resized at decode time to Encoder.decode_size -> TensorPreprocess
Candidates: decord's scaler and PyAV's swscale (AREA, BICUBIC, LANCZOS) straight to the model's
size (vidclip before this measurement); the same at two or three times the model's size, finished
by the tensor path's antialiased resize ("_x2", "_x3"; ingest now does decord_x2 / pyav_bicubic_x2);
and full-size decoding with the tensor path's resize alone ("tensor").
Reported per video and candidate: PSNR in dB on [0, 1] pixels (mean/std undone) and max abs
difference in model-input units, decode and preprocessing CPU ms per frame (median of repeats), and the decoded frame's size.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

# (name, width, height, rotation): display sizes; rotation as phones write it
VIDEOS = [
    ("240p", 320, 240, 0), ("360p", 640, 360, 0), ("720p", 1280, 720, 0), ("1080p", 1920, 1080, 0),
    ("4k", 3840, 2160, 0), ("100x700", 100, 700, 0), ("letterboxed_4x3_in_16x9", 1280, 720, 0),
    ("portrait_rot90", 720, 1280, 90),
]
CANDIDATES = ("decord", "pyav_area", "pyav_bicubic", "pyav_lanczos", "decord_x2", "pyav_area_x2", "pyav_bicubic_x2",
              "decord_x3", "pyav_bicubic_x3", "tensor")
DEFAULT = {"decord": "decord_x2", "pyav": "pyav_bicubic_x2"}  # what ingest does (model/geometry.py, ingest/decoder.py)


def _write(folder: Path, name: str, w: int, h: int, rotation: int) -> Path:
    from vidclip.samples import synth

    spec = synth.VideoSpec(codec="h264", width=w, height=h, duration_s=4.0, fps=5.0, seed=len(name), crf=12,
                           rotation=rotation, scene_seconds=4.0)
    path = folder / f"{name}.mp4"
    if name.startswith("letterboxed"):
        inner = int(h * 4 / 3)
        pad = (w - inner) // 2

        def draw(t, spec=spec):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[:, pad : pad + inner] = synth.natural_frame(inner, h, spec.seed, t)
            return frame

        return synth._encode(path, spec, draw)
    return synth.write_natural_video(path, spec)


@contextmanager
def _pyav_kernel(name: str):
    from vidclip.ingest import decoder

    old = decoder.PYAV_INTERPOLATION
    decoder.PYAV_INTERPOLATION = name
    try:
        yield
    finally:
        decoder.PYAV_INTERPOLATION = old


def _decode(path: Path, size_fn, decoders: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """Every sampled frame (1 fps) of `path` at size_fn's size: ((n, H, W, 3) uint8, CPU s/frame)."""
    from vidclip.config import SamplingConfig
    from vidclip.ingest.decoder import SampleReader
    from vidclip.ingest.probe import probe
    from vidclip.ingest.sampling import plan_samples

    pr = probe(str(path), 8192 * 8192)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0), keyframes=pr.keyframes)
    reader = SampleReader(str(path), pr, plan, size_fn(*pr.info.display_size), decoders=decoders)
    t0 = time.process_time()
    frames = np.concatenate([c.frames for c in reader.chunks()])
    return frames, (time.process_time() - t0) / max(1, len(frames))


def scaled(encoder, w: int, h: int, factor: int) -> tuple[int, int]:
    """`factor` times the model's size for a w x h frame, or the frame's own size when smaller."""
    from vidclip.model.geometry import oversampled

    mh, mw = encoder._tensor_preprocess.resize_hw(h, w)
    return oversampled(w, h, mw, mh, factor)


def _model_inputs(encoder, frames: np.ndarray):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8
    return encoder._tensor_preprocess(x)  # (n, 3, S, S)


def _pil_inputs(encoder, frames: np.ndarray):
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    pil = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(encoder.model)), is_train=False)
    return torch.stack([pil(Image.fromarray(f)) for f in frames])  # (n, 3, S, S)


def compare(encoder, ours, ref) -> dict:
    """PSNR on [0, 1] pixels and max abs in model-input units between two (n, 3, S, S) batches."""
    import open_clip

    pp = open_clip.get_model_preprocess_cfg(encoder.model)
    std = np.asarray(pp["std"], np.float64)[None, :, None, None]
    a, b = ours.double().numpy(), ref.double().numpy()
    mse = float((((a - b) * std) ** 2).mean())  # back to [0, 1] pixel units
    return {"psnr_db": round(10 * math.log10(1.0 / mse), 2) if mse > 0 else float("inf"),
            "max_abs": round(float(np.abs(a - b).max()), 4)}


def run(model: str, repeats: int) -> dict:
    from vidclip.config import ModelConfig
    from vidclip.ingest.decoder import DECORD, PYAV
    from vidclip.model.encoder import Encoder

    encoder = Encoder.load(ModelConfig(model, "none", device="cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, w, h, rot in VIDEOS:
            path = _write(Path(tmp), name, w, h, rot)
            full = lambda W, H: (W, H)  # noqa: E731  no resize
            ref_frames, ref_cpu = _decode(path, full, (PYAV,))
            ref = _pil_inputs(encoder, ref_frames)
            row = {"video": name, "display": f"{w}x{h}", "frames": len(ref_frames), "decode_size": encoder.decode_size(w, h)}
            for cand in CANDIDATES:
                factor = int(cand[-1]) if cand[-3:-1] == "_x" else 1
                size_fn = full if cand == "tensor" else (lambda W, H, k=factor: scaled(encoder, W, H, k))
                decoders = (DECORD,) if cand.startswith("decord") else (PYAV,)
                kernel = cand.split("_")[1].upper() if cand.startswith("pyav") else "AREA"
                dec, pre = [], []
                for _ in range(repeats):
                    with _pyav_kernel(kernel):
                        frames, cpu = _decode(path, size_fn, decoders)
                    t0 = time.process_time()
                    inputs = _model_inputs(encoder, frames)
                    pre.append((time.process_time() - t0) / len(frames))
                    dec.append(cpu)
                row[cand] = {**compare(encoder, inputs, ref), "decoded": f"{frames.shape[2]}x{frames.shape[1]}",
                             "decode_cpu_ms_per_frame": round(1000 * statistics.median(dec), 2),
                             "preprocess_cpu_ms_per_frame": round(1000 * statistics.median(pre), 2)}
            rows.append(row)
            print(f"{name:24s} " + "  ".join(f"{c} {row[c]['psnr_db']:.1f}dB "
                                            f"{row[c]['decode_cpu_ms_per_frame'] + row[c]['preprocess_cpu_ms_per_frame']:.0f}ms"
                                            for c in CANDIDATES), flush=True)
    return {"machine": corpus.machine_info(), "model": model, "content": "synth.natural_frame, H.264 crf 12, 1 fps sampled",
            "reference": "full-size PyAV decode -> PIL -> open_clip eval transform", "rows": rows}


def add_arguments(ap) -> None:
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--out", default="benchmarks/parity.json")


def cli(args) -> int:
    result = run(args.model, args.repeats)
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
