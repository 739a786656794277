"""Benchmark corpora: generated videos, written once into a cache directory and reused.

    python3 -m benchmarks.corpus [--cache ~/.cache/vidclip-bench] [--set decode|ingest|all]

Content comes from vidclip.samples.synth.draw_frame (a blurred random grid with one moving shape; a new
scene every `scene_s` seconds), so it compresses like simple real footage rather than like noise.
H.264 is written by libx264 preset "superfast" (CABAC and B-frames on, as most real files have;
"ultrafast" drops both and would make decoding look cheaper than it is), VP9 by libvpx realtime.
The keyframe interval is fixed (scene-cut detection off) so "gop 1 s / 10 s" is exact.
A file is named by its parameters and only written if missing (written to a temp name, then renamed).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path


DEFAULT_CACHE = Path(os.environ.get("VIDCLIP_BENCH_CACHE", "~/.cache/vidclip-bench")).expanduser()
RESOLUTIONS = {"120p": (160, 120), "360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080),
               "stripe7168x448": (7168, 448), "stripe16384x16": (16384, 16)}  # the stripes: benchmarks/memory.py


@dataclass(frozen=True)
class CorpusVideo:
    codec: str  # "h264" | "vp9"
    res: str  # "360p" | "720p" | "1080p"
    duration_s: float
    gop_s: float | None  # keyframe interval in seconds; None: the encoder's default (x264: 250 frames, cuts on)
    fps: int = 24
    seed: int = 0
    scene_s: float = 3.0
    # "synth": draw_frame's flat shapes; "pan": natural-image texture (synth.natural_frame) under a
    # slow camera pan with film grain, which costs an encoder and a decoder what real footage does
    content: str = "synth"
    preset: str = "superfast"  # libx264 preset ("medium" is libx264's default)
    bframes: int | None = None  # libx264 B-frames (None: the preset's; 0: none)

    @property
    def name(self) -> str:
        suffix = ".mp4" if self.codec == "h264" else ".webm"
        gop = "default" if self.gop_s is None else f"{self.gop_s:g}s"
        extra = "" if self.content == "synth" else f"_{self.content}"
        extra += "" if self.preset == "superfast" else f"_{self.preset}"
        extra += "" if self.bframes is None else f"_b{self.bframes}"
        return f"{self.codec}_{self.res}_{self.duration_s:g}s_gop{gop}_{self.fps}fps_s{self.seed}{extra}{suffix}"

    def to_dict(self) -> dict:
        return dict(asdict(self), name=self.name)


# The decode benchmark's corpus: the 10-minute 720p H.264 file is the sparse-sampling target.
DECODE_SET = [
    CorpusVideo("h264", "720p", 600, 10),
    CorpusVideo("h264", "720p", 60, 1),
    CorpusVideo("h264", "360p", 60, 10),
    CorpusVideo("h264", "1080p", 20, 10),
    CorpusVideo("vp9", "720p", 30, 10),
    CorpusVideo("h264", "360p", 5, 1),
]


def ingest_set(n: int = 100, duration_s: float = 5.0) -> list[CorpusVideo]:
    """n distinct short 360p H.264 clips (distinct content, hence distinct video ids)."""
    return [CorpusVideo("h264", "360p", duration_s, 1, seed=i) for i in range(n)]


# The peer benchmark's corpus (benchmarks/peer.py): 30 s of 720p30 and 360p30, libx264's defaults
# (preset medium, keyframe interval 250 frames with scene cuts, 3 B-frames), as most files are made.
def peer_set(n: int = 8) -> list[CorpusVideo]:
    return [CorpusVideo("h264", res, 30, None, fps=30, seed=i, scene_s=10.0, content="pan", preset="medium")
            for res in ("720p", "360p") for i in range(n)]


# What decoding sparsely costs by stream structure (benchmarks/peer.py, decode matrix).
def structure_set() -> list[CorpusVideo]:
    return [CorpusVideo("h264", res, 30, gop, fps=30, seed=100, scene_s=10.0, content="pan", preset="medium",
                        bframes=b)
            for res in ("720p", "1080p") for gop in (None, 1.0) for b in (None, 0)]


def _encoder_options(v: CorpusVideo) -> tuple[str, str, dict[str, str]]:
    if v.codec == "h264" and v.gop_s is None:
        opts = {"preset": v.preset}
        if v.bframes is not None:
            opts["bf"] = str(v.bframes)
        return "libx264", "yuv420p", opts
    gop = int(round(v.gop_s * v.fps))
    if v.codec == "h264":
        opts = {"preset": v.preset, "crf": "26", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if v.bframes is not None:
            opts["bf"] = str(v.bframes)
        return "libx264", "yuv420p", opts
    if v.codec == "vp9":
        return "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "crf": "36", "b": "0",
                                         "row-mt": "1", "g": str(gop), "keyint_min": str(gop)}
    raise ValueError(f"unknown codec {v.codec!r}")


def write(v: CorpusVideo, path: Path) -> Path:
    import av

    from vidclip.samples.synth import VideoSpec, draw_frame

    w, h = RESOLUTIONS[v.res]
    spec = VideoSpec(codec=v.codec, width=w, height=h, fps=v.fps, duration_s=v.duration_s, seed=v.seed,
                     scene_seconds=v.scene_s)
    draw = (lambda t: draw_frame(spec, t)) if v.content == "synth" else _panning(w, h, v)
    enc, pix, opts = _encoder_options(v)
    tmp = path.with_name(path.name + ".part" + path.suffix)
    tb = Fraction(1, v.fps)
    with av.open(str(tmp), "w") as out:
        s = out.add_stream(enc, rate=v.fps)
        s.width, s.height, s.pix_fmt = w, h, pix
        s.codec_context.time_base = tb
        if v.gop_s is not None:
            s.codec_context.gop_size = int(round(v.gop_s * v.fps))
        s.options = opts
        n = int(round(v.duration_s * v.fps))
        for i in range(n):
            t = i / v.fps
            frame = av.VideoFrame.from_ndarray(draw(t), format="rgb24")
            frame.pts, frame.time_base = i, tb
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    os.replace(tmp, path)
    return path


def _panning(w: int, h: int, v: CorpusVideo):
    """draw(t) -> (h, w, 3) uint8: a window panning across a natural texture twice the frame's size
    (a new texture each scene), plus per-frame grain."""
    import numpy as np

    from vidclip.samples.synth import natural_frame

    textures: dict[int, np.ndarray] = {}
    grain = np.random.default_rng(v.seed)

    def draw(t: float) -> np.ndarray:
        scene = int(t // v.scene_s)
        if scene not in textures:
            textures.clear()
            textures[scene] = natural_frame(2 * w, 2 * h, seed=v.seed * 1000 + scene)
        local = t - scene * v.scene_s
        x = int(local * 0.04 * w) % w  # 4% of the width per second
        y = int(local * 0.02 * h) % h
        window = textures[scene][y : y + h, x : x + w].astype(np.int16)  # (h, w, 3)
        window += grain.normal(0, 3.0, size=(h, w, 1)).astype(np.int16)
        return np.clip(window, 0, 255).astype(np.uint8)

    return draw


def ensure(videos: list[CorpusVideo], cache: Path = DEFAULT_CACHE, log=print) -> list[Path]:
    """Paths of the videos in `cache`, writing the missing ones."""
    import time

    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in videos:
        p = cache / v.name
        if not p.exists():
            t0 = time.perf_counter()
            write(v, p)
            log(f"corpus: wrote {p.name} ({p.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f}s")
        paths.append(p)
    return paths


def run_main(doc: str, add_arguments, cli, argv=None) -> int:
    """The `python3 -m benchmarks.*` entry point shared by every benchmark."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return cli(ap.parse_args(argv))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--set", choices=["decode", "ingest", "all"], default="all")
    ap.add_argument("--ingest-n", type=int, default=100)
    args = ap.parse_args(argv)
    vids = []
    if args.set in ("decode", "all"):
        vids += DECODE_SET
    if args.set in ("ingest", "all"):
        vids += ingest_set(args.ingest_n)
    ensure(vids, args.cache.expanduser())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# -- shared by the benchmarks -------------------------------------------------------------------------
def machine_info() -> dict:
    """CPU model, cores, RAM and library versions, recorded with every result."""
    import platform

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
        info["loadavg_at_start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    for mod in ("av", "decord", "torch", "open_clip", "numpy", "lancedb", "ray"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed, or no version
            info[mod] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write_result(path: str | os.PathLike, result: dict) -> Path:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
