"""Synthetic but real video files: for tests, the README demo and benchmarks.

Every file is encoded with PyAV (libavcodec) so the decode path under test sees
what it sees in the field: B-frames, keyframe intervals, display-rotation tags,
variable frame rates, audio streams, and broken files.

Conventions (the tests in ``tests/test_synth.py`` check each of them):

* **Sizes.** ``VideoSpec.width x height`` is the *displayed* (upright) size.
  With a 90 or 270 rotation tag the coded frames are ``height x width``.
* **Rotation.** ``VideoSpec.rotation`` is written with
  ``stream.set_display_rotation`` and read back by PyAV as ``frame.rotation``
  (a counter-clockwise angle; 270 reads back as -90).  The stored picture is
  chosen so that ``np.rot90(stored, k=frame.rotation // 90)`` equals
  ``draw_frame(spec, t)``.  ``rotation=270`` writes the same MP4 matrix as a
  phone's portrait video (QuickTime "rotate=90", turn clockwise to display).
  AVI cannot carry the tag, so a rotated spec is refused for ``.avi``.
* **Times.** ``frame_times(spec)`` are the presentation times written as pts.
  Constant rate: ``i / fps`` on a ``1/fps`` time base.  ``vfr=True``: each frame
  lasts 0.5, 1.0 or 1.5 frame periods (seeded by ``spec.seed``, mean
  ``1/fps``), on a ``1/(2*fps)`` time base.  Matroska/WebM store milliseconds,
  so there the decoded times match to within 0.5 ms; elsewhere exactly.
  Frames are written while their time is ``< duration_s``.
* **Content.** Time is cut into scenes of ``scene_seconds``.  Each scene is a
  seeded low-frequency colour field (a 4..8 cell grid of random colours,
  bilinearly upscaled) with one seeded shape drifting across it.  Two scenes
  differ in almost every pixel; frames of one scene differ only around the
  shape.  ``draw_frame(spec, t)`` is a pure function of ``(spec, t)``.
* **Keyframes.** ``gop=N`` gives a keyframe exactly every N frames (scene-cut
  detection is switched off); ``gop=None`` keeps the encoder's default.
  MJPEG is intra-only: every frame is a keyframe whatever ``gop`` says.

SVT-AV1 prints a banner on stderr unless ``SVT_LOG`` is set; while an AV1 file
is written and ``SVT_LOG`` is unset it is set to ``1`` (errors only), then
removed again.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "CODECS",
    "SAMPLE_LIBRARY",
    "SampleVideo",
    "VideoSpec",
    "draw_frame",
    "frame_times",
    "suffix_for",
    "write_audio_only",
    "write_no_frames",
    "write_not_a_video",
    "write_sample_library",
    "write_truncated",
    "write_video",
    "write_zero_byte",
]

_MATROSKA = (".mkv", ".webm")
_ROTATION_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class _Codec:
    encoder: str
    pix_fmt: str
    suffixes: tuple[str, ...]  # the first one is the default


CODECS: dict[str, _Codec] = {
    "h264": _Codec("libx264", "yuv420p", (".mp4", ".mkv", ".mov")),
    "hevc": _Codec("libx265", "yuv420p", (".mp4", ".mkv", ".mov")),
    "vp9": _Codec("libvpx-vp9", "yuv420p", (".webm", ".mkv", ".mp4")),
    "av1": _Codec("libsvtav1", "yuv420p", (".mp4", ".mkv", ".webm")),
    "mpeg4": _Codec("mpeg4", "yuv420p", (".mp4", ".avi", ".mkv", ".mov")),
    "mjpeg": _Codec("mjpeg", "yuvj420p", (".avi", ".mkv", ".mov")),
}


@dataclass(frozen=True)
class VideoSpec:
    """What to write.  ``width x height`` is the displayed (upright) size."""

    codec: str = "h264"
    width: int = 320
    height: int = 240
    fps: float = 10.0
    duration_s: float = 4.0
    seed: int = 0
    scene_seconds: float = 1.0
    rotation: int = 0
    gop: int | None = None
    vfr: bool = False
    audio: bool = False
    crf: int | None = None  # None: a per-codec default that keeps files small

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; one of {sorted(CODECS)}")
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be positive and even, got {self.width}x{self.height}")
        if not (self.fps > 0 and self.duration_s > 0 and self.scene_seconds > 0):
            raise ValueError("fps, duration_s and scene_seconds must be > 0")
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, got {self.rotation}")
        if self.gop is not None and self.gop < 1:
            raise ValueError(f"gop must be >= 1 or None, got {self.gop}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the stored frames: swapped for a 90/270 tag."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def suffix_for(codec: str) -> str:
    """The default file suffix for a friendly codec name (``"vp9"`` -> ``".webm"``)."""
    return CODECS[codec].suffixes[0]


# --------------------------------------------------------------------------- timing


def _rate(spec: VideoSpec) -> Fraction:
    return Fraction(spec.fps).limit_denominator(1001)


def _time_base(spec: VideoSpec) -> Fraction:
    """Tick of the pts grid: one frame period, or half of one for VFR."""
    return 1 / (_rate(spec) * (2 if spec.vfr else 1))


def _ticks(spec: VideoSpec) -> np.ndarray:
    """(N+1,) int64: pts of every frame in ``_time_base`` units, plus the end of the last frame."""
    if not spec.vfr:
        n = max(1, math.ceil(spec.duration_s * spec.fps - 1e-9))
        return np.arange(n + 1, dtype=np.int64)
    rng = np.random.default_rng([spec.seed, 0x5F5])
    limit = Fraction(spec.duration_s).limit_denominator(10**6) / _time_base(spec)
    pts = [0]
    while pts[-1] < limit:
        pts.append(pts[-1] + int(rng.integers(1, 4)))  # 1..3 half-periods
    return np.asarray(pts, dtype=np.int64)


def frame_times(spec: VideoSpec) -> np.ndarray:
    """(N,) float64: presentation time in seconds of every frame that `write_video` writes."""
    tb = _time_base(spec)
    return _ticks(spec)[:-1] * tb.numerator / tb.denominator  # k * 1 / 10 == 0.1 * k, exactly rounded


# --------------------------------------------------------------------------- content


def _scene_of(spec: VideoSpec, t: float) -> tuple[int, float]:
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    scene = int(math.floor(t / spec.scene_seconds + 1e-9))
    return scene, max(0.0, t - scene * spec.scene_seconds)


def _bounce(x: float, span: float) -> float:
    """Fold x into [0, span] like a ball between two walls."""
    if span <= 0:
        return 0.0
    x = x % (2 * span)
    return x if x <= span else 2 * span - x


def draw_frame(spec: VideoSpec, t: float) -> np.ndarray:
    """(H, W, 3) uint8: the upright picture shown at time ``t`` seconds."""
    w, h = spec.width, spec.height
    scene, local = _scene_of(spec, t)
    rng = np.random.default_rng([spec.seed, scene])
    gh, gw = (int(v) for v in rng.integers(4, 9, size=2))
    grid = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
    img = Image.fromarray(grid).resize((w, h), Image.BILINEAR)

    # One shape drifting at a few percent of the frame per second.
    side = max(2, int(min(w, h) * rng.uniform(0.2, 0.3)))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    x0, y0 = rng.uniform(0, 1, size=2) * (w - side, h - side)
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.15)  # frame sizes per second
    vx, vy = speed * w * np.cos(angle), speed * h * np.sin(angle)  # px per second
    x = _bounce(x0 + vx * local, w - side)
    y = _bounce(y0 + vy * local, h - side)
    box = (int(round(x)), int(round(y)), int(round(x)) + side - 1, int(round(y)) + side - 1)
    draw = ImageDraw.Draw(img)
    if rng.integers(0, 2):
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return np.asarray(img, dtype=np.uint8)


# --------------------------------------------------------------------------- encoding


@contextmanager
def _quiet_svt(encoder: str) -> Iterator[None]:
    """SVT-AV1 as root: no banner, and no real-time scheduling left behind.

    Run as root on Linux, SVT-AV1 switches the calling thread to SCHED_FIFO (real-time) and
    leaves it so.  Every process started afterwards (decode children, Ray workers, a test's busy
    loops) inherits it, and a real-time busy process never yields its core: on a 2-core machine
    that starved everything else (found as a hung test).  The caller's policy is put back."""
    if encoder != "libsvtav1":
        yield
        return
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    param = os.sched_getparam(0) if policy is not None else None
    set_log = "SVT_LOG" not in os.environ
    if set_log:
        os.environ["SVT_LOG"] = "1"
    try:
        yield
    finally:
        if set_log:
            os.environ.pop("SVT_LOG", None)
        if policy is not None and os.sched_getscheduler(0) != policy:
            os.sched_setscheduler(0, policy, param)


def _configure(stream: av.VideoStream, spec: VideoSpec) -> None:
    """Per-encoder quality, speed and keyframe settings."""
    cc = stream.codec_context
    enc = CODECS[spec.codec].encoder
    gop = spec.gop
    if gop is not None:
        cc.gop_size = gop
    opts: dict[str, str] = {}
    if enc == "libx264":
        opts = {"preset": "veryfast", "crf": str(spec.crf or 28)}
        if gop is not None:
            opts.update({"sc_threshold": "0", "keyint_min": str(gop)})
    elif enc == "libx265":
        params = "log-level=none:info=0"  # info=0: no 2 kB encoder-settings SEI in every file
        if gop is not None:
            params += f":keyint={gop}:min-keyint={gop}:scenecut=0"
        opts = {"preset": "ultrafast", "crf": str(spec.crf or 30), "x265-params": params}
    elif enc == "libvpx-vp9":
        opts = {"deadline": "realtime", "cpu-used": "8", "crf": str(spec.crf or 36), "b": "0", "row-mt": "1"}
        if gop is not None:
            opts["keyint_min"] = str(gop)
    elif enc == "libsvtav1":
        opts = {"preset": "12", "crf": str(spec.crf or 40)}
    elif enc == "mpeg4":
        cc.qscale = spec.crf or 6
        if gop is not None:
            opts["sc_threshold"] = "1000000000"
    elif enc == "mjpeg":
        cc.qscale = spec.crf or 6
    stream.options = opts


def _check_suffix(path: Path, spec: VideoSpec) -> Path:
    codec = CODECS[spec.codec]
    if not path.suffix:
        return path.with_suffix(codec.suffixes[0])
    suffix = path.suffix.lower()
    if suffix not in codec.suffixes:
        raise ValueError(f"{spec.codec} cannot go in {suffix!r}; use one of {codec.suffixes}")
    if spec.rotation and suffix not in _ROTATION_SUFFIXES:
        raise ValueError(f"{suffix!r} cannot carry a rotation tag; use one of {_ROTATION_SUFFIXES}")
    return path


def _add_audio(out: av.container.OutputContainer, suffix: str) -> av.AudioStream:
    if suffix in (".webm",):
        name = "libopus"
    elif suffix == ".avi":
        name = "mp2"
    else:
        name = "aac"
    stream = out.add_stream(name, rate=48000)
    stream.layout = "mono"
    stream.bit_rate = 32000
    return stream


def _sine(start: int, stop: int, rate: int = 48000) -> av.AudioFrame:
    n = np.arange(start, stop)
    samples = (0.2 * 32767 * np.sin(2 * np.pi * 440.0 * n / rate)).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = start
    frame.time_base = Fraction(1, rate)
    return frame


def _encode(
    path: Path,
    spec: VideoSpec,
    draw: Callable[[float], np.ndarray],
    container_options: dict[str, str] | None = None,
) -> Path:
    path = _check_suffix(Path(path), spec)
    codec = CODECS[spec.codec]
    ticks = _ticks(spec)
    tb = _time_base(spec)
    k = spec.rotation // 90
    coded_w, coded_h = spec.coded_size
    path.parent.mkdir(parents=True, exist_ok=True)

    with _quiet_svt(codec.encoder), av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec.encoder, rate=_rate(spec))
        stream.width, stream.height = coded_w, coded_h
        stream.pix_fmt = codec.pix_fmt
        stream.codec_context.time_base = tb
        stream.time_base = tb
        _configure(stream, spec)
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        audio = _add_audio(out, path.suffix.lower()) if spec.audio else None
        audio_done = 0

        for i, pts in enumerate(ticks[:-1]):
            upright = draw(float(pts * tb))
            stored = np.ascontiguousarray(np.rot90(upright, k=-k))  # np.rot90(stored, k) == upright
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = int(pts)
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
            if audio is not None:  # keep the audio up to the end of this frame, for interleaving
                upto = int(round(float(ticks[i + 1] * tb) * 48000))
                if upto > audio_done:
                    for packet in audio.encode(_sine(audio_done, upto)):
                        out.mux(packet)
                    audio_done = upto
        for packet in stream.encode(None):
            out.mux(packet)
        if audio is not None:
            for packet in audio.encode(None):
                out.mux(packet)
    return path


def write_video(path: str | os.PathLike, spec: VideoSpec) -> Path:
    """Encode ``draw_frame(spec, t)`` for every ``t`` in ``frame_times(spec)``.

    The container follows the suffix, which must suit the codec (see ``CODECS``);
    a path without a suffix gets the codec's default one.  Returns the path written.
    """
    return _encode(Path(path), spec, lambda t: draw_frame(spec, t))


def natural_frame(width: int, height: int, seed: int, t: float = 0.0) -> np.ndarray:
    """(height, width, 3) uint8 with natural-image statistics rather than flat synthetic shapes:
    smooth structure at several scales, hard edges and fine grain, drifting slowly with `t`.
    For pixel-parity measurements, where flat colours would hide resampling differences."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    shift = t * 0.05
    for cell, amp in ((max(8, min(width, height) // 4), 120.0), (16, 50.0), (4, 20.0)):
        small = rng.uniform(-1, 1, (height // cell + 3, width // cell + 3, 3)).astype(np.float32)
        planes = [np.asarray(Image.fromarray(small[..., c], mode="F").resize(
            (width, height), Image.BICUBIC, box=(shift, shift, small.shape[1] - 2 + shift, small.shape[0] - 2 + shift)))
            for c in range(3)]
        acc += amp * np.stack(planes, axis=-1)
    yy, xx = np.mgrid[0:height, 0:width]
    acc += 60.0 * ((((xx + 7 * t) // max(1, width // 7)) + (yy // max(1, height // 5))) % 2)[..., None]
    acc += rng.normal(0, 6, acc.shape)
    return np.clip(acc + 110, 0, 255).astype(np.uint8)


def write_natural_video(path: str | os.PathLike, spec: VideoSpec) -> Path:
    """`spec`'s codec, size, rate and rotation over `natural_frame` content (seeded by spec.seed)."""
    return _encode(Path(path), spec, lambda t: natural_frame(spec.width, spec.height, spec.seed, t))


# --------------------------------------------------------------------------- demo library


@dataclass(frozen=True)
class SampleVideo:
    """One video of the README demo library: which captions appear when."""

    name: str  # file name, suffix included
    codec: str
    scenes: tuple[tuple[str, float], ...]  # (theme, seconds), played in order

    @property
    def duration_s(self) -> float:
        return sum(s for _, s in self.scenes)

    def caption_at(self, t: float) -> str:
        """The caption describing what is on screen at ``t`` seconds."""
        end = 0.0
        for theme, seconds in self.scenes:
            end += seconds
            if t < end:
                return _THEMES[theme][0]
        return _THEMES[self.scenes[-1][0]][0]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font, fixed size
        return ImageFont.load_default()


def _caption(draw: ImageDraw.ImageDraw, w: int, h: int, text: str, fill, y: float = 0.06) -> None:
    font = _font(max(12, h // 7))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (w - (right - left)) / 2 - left
    draw.text((x, h * y - top), text, font=font, fill=fill, stroke_width=2, stroke_fill=(0, 0, 0))


def _theme_red_ball(w: int, h: int, t: float) -> Image.Image:
    img = Image.new("RGB", (w, h), (245, 245, 240))
    d = ImageDraw.Draw(img)
    d.rectangle((0, int(h * 0.85), w, h), fill=(200, 190, 170))  # floor
    r = int(h * 0.16)
    x = _bounce(w * 0.1 + 90 * t, w - 2 * r)
    y = (h * 0.85 - 2 * r) - abs(math.sin(t * 2.5)) * h * 0.35
    d.ellipse((x, y, x + 2 * r, y + 2 * r), fill=(220, 20, 20))
    d.ellipse((x + r * 0.4, y + r * 0.35, x + r * 0.8, y + r * 0.75), fill=(255, 140, 140))  # highlight
    _caption(d, w, h, "RED BALL", (220, 20, 20))
    return img


def _theme_blue_square_grass(w: int, h: int, t: float) -> Image.Image:
    img = Image.new("RGB", (w, h), (135, 195, 245))
    d = ImageDraw.Draw(img)
    horizon = int(h * 0.45)
    d.rectangle((0, horizon, w, h), fill=(60, 150, 50))
    rng = np.random.default_rng(7)
    for gx, gy, gl in zip(rng.uniform(0, w, 160), rng.uniform(horizon, h, 160), rng.uniform(4, 12, 160)):
        sway = 2 * math.sin(t * 3 + gx)
        d.line((gx, gy, gx + sway, gy - gl), fill=(30, 110, 30), width=2)
    s = int(h * 0.3)
    x = w * 0.2 + 25 * t
    y = h * 0.55
    d.rectangle((x, y, x + s, y + s), fill=(20, 40, 220), outline=(5, 10, 90), width=3)
    _caption(d, w, h, "BLUE SQUARE", (30, 60, 230))
    return img


def _theme_ocean(w: int, h: int, t: float) -> Image.Image:
    yy = np.linspace(0, 1, h)[:, None]
    xx = np.linspace(0, 1, w)[None, :]
    sky = yy < 0.35
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * 3 + yy * 12 - t * 0.8) + 2 * np.sin(2 * np.pi * xx * 1.5))
    r = np.where(sky, 170, 10 + 40 * wave)
    g = np.where(sky, 210, 80 + 70 * wave)
    b = np.where(sky, 250, 150 + 80 * wave)
    crest = (~sky) & (wave > 0.93)
    rgb = np.stack([np.where(crest, 240, r), np.where(crest, 250, g), np.where(crest, 255, b)], axis=-1)
    img = Image.fromarray(rgb.astype(np.uint8))
    _caption(ImageDraw.Draw(img), w, h, "OCEAN WAVES", (255, 255, 255), y=0.04)
    return img


def _theme_city_night(w: int, h: int, t: float) -> Image.Image:
    img = Image.new("RGB", (w, h), (10, 12, 35))
    d = ImageDraw.Draw(img)
    d.ellipse((w * 0.8, h * 0.22, w * 0.8 + h * 0.13, h * 0.35), fill=(240, 240, 210))  # moon
    rng = np.random.default_rng(11)
    x = 0.0
    while x < w:
        bw = float(rng.uniform(w * 0.08, w * 0.16))
        top = float(rng.uniform(h * 0.3, h * 0.6))
        d.rectangle((x, top, x + bw - 3, h), fill=(25, 25, 40))
        for wy in np.arange(top + 6, h - 6, 10):
            for wx in np.arange(x + 4, x + bw - 8, 8):
                if rng.uniform() < 0.55 + 0.1 * math.sin(t + wx):
                    d.rectangle((wx, wy, wx + 3, wy + 4), fill=(255, 215, 90))
        x += bw
    _caption(d, w, h, "CITY AT NIGHT", (255, 215, 90), y=0.04)
    return img


def _theme_sun_desert(w: int, h: int, t: float) -> Image.Image:
    img = Image.new("RGB", (w, h), (255, 150, 60))
    d = ImageDraw.Draw(img)
    for i in range(8):  # sky gradient bands
        d.rectangle((0, i * h * 0.08, w, (i + 1) * h * 0.08), fill=(255, 120 + i * 12, 40 + i * 8))
    r = h * 0.15
    cy = h * 0.62 - 6 * t
    d.ellipse((w * 0.5 - r, cy - r, w * 0.5 + r, cy + r), fill=(255, 235, 60))
    d.polygon([(0, h * 0.7), (w * 0.3, h * 0.6), (w * 0.6, h * 0.72), (w, h * 0.62), (w, h), (0, h)], fill=(210, 160, 90))
    _caption(d, w, h, "DESERT SUNSET", (255, 245, 120))
    return img


def _theme_green_tree(w: int, h: int, t: float) -> Image.Image:
    img = Image.new("RGB", (w, h), (200, 230, 255))
    d = ImageDraw.Draw(img)
    d.rectangle((0, int(h * 0.8), w, h), fill=(90, 160, 70))
    cx = w * 0.5 + 3 * math.sin(t * 2)
    d.rectangle((w * 0.46, h * 0.5, w * 0.54, h * 0.82), fill=(110, 70, 30))
    for dx, dy, rr in ((0, 0.38, 0.22), (-0.1, 0.45, 0.16), (0.1, 0.45, 0.16)):
        r = h * rr
        d.ellipse((cx + dx * w - r, h * dy - r, cx + dx * w + r, h * dy + r), fill=(30, 140, 40))
    _caption(d, w, h, "GREEN TREE", (40, 170, 50), y=0.02)
    return img


# theme -> (caption, renderer)
_THEMES: dict[str, tuple[str, Callable[[int, int, float], Image.Image]]] = {
    "red_ball": ("a red ball bouncing", _theme_red_ball),
    "blue_square_grass": ("a blue square on grass", _theme_blue_square_grass),
    "ocean": ("ocean waves", _theme_ocean),
    "city_night": ("a city at night", _theme_city_night),
    "sun_desert": ("a sunset over the desert", _theme_sun_desert),
    "green_tree": ("a green tree", _theme_green_tree),
}

SAMPLE_LIBRARY: tuple[SampleVideo, ...] = (
    SampleVideo("red_ball_bouncing.mp4", "h264", (("red_ball", 6.0),)),
    SampleVideo("ocean_waves_then_city_at_night.webm", "vp9", (("ocean", 3.0), ("city_night", 3.0))),
    SampleVideo("blue_square_on_grass.mp4", "h264", (("blue_square_grass", 5.0),)),
    SampleVideo("desert_sunset_then_green_tree.webm", "vp9", (("sun_desert", 3.0), ("green_tree", 4.0))),
    SampleVideo("city_at_night.mp4", "hevc", (("city_night", 5.0),)),
    SampleVideo("green_tree.mp4", "h264", (("green_tree", 5.0),)),
)


def _render_sample(sample: SampleVideo, w: int, h: int, t: float) -> np.ndarray:
    start = 0.0
    for i, (theme, seconds) in enumerate(sample.scenes):
        if t < start + seconds or i == len(sample.scenes) - 1:
            return np.asarray(_THEMES[theme][1](w, h, t - start), dtype=np.uint8)
        start += seconds
    raise AssertionError("unreachable")


def write_sample_library(out_dir: str | os.PathLike, n: int = 4) -> list[Path]:
    """Write the first ``n`` videos of ``SAMPLE_LIBRARY`` (320x240, 8 fps) into ``out_dir``.

    Each shows describable content (a big caption word plus a simple drawing), so real
    CLIP weights retrieve it by text; ``SampleVideo.caption_at`` says what is on screen when.
    """
    if not 1 <= n <= len(SAMPLE_LIBRARY):
        raise ValueError(f"n must be in 1..{len(SAMPLE_LIBRARY)}, got {n}")
    out = Path(out_dir)
    paths = []
    for i, sample in enumerate(SAMPLE_LIBRARY[:n]):
        spec = VideoSpec(codec=sample.codec, width=320, height=240, fps=8.0, duration_s=sample.duration_s, seed=i)
        paths.append(_encode(out / sample.name, spec, lambda t, s=sample: _render_sample(s, 320, 240, t)))
    return paths


# --------------------------------------------------------------------------- hostile files


def write_zero_byte(path: str | os.PathLike) -> Path:
    """An empty file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_truncated(path: str | os.PathLike, spec: VideoSpec, fraction: float = 0.5, faststart: bool = True) -> Path:
    """A real video cut after ``fraction`` of its bytes.

    With ``faststart`` (MP4/MOV only) the index (moov) is written before the media and
    the cut falls at ``fraction`` of the media data after it, so the file still opens,
    the first part decodes and then the data runs out (PyAV raises InvalidDataError).
    Without it the index is lost and an MP4 cannot be opened at all.  Matroska/WebM/AVI
    keep their headers either way; there decoding just stops early, without an error.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    path = _check_suffix(Path(path), spec)
    opts = {"movflags": "+faststart"} if faststart and path.suffix.lower() in (".mp4", ".mov") else None
    _encode(path, spec, lambda t: draw_frame(spec, t), container_options=opts)
    data = path.read_bytes()
    start = _mp4_media_start(data) if opts else 0
    path.write_bytes(data[: start + int((len(data) - start) * fraction)])
    return path


def _mp4_media_start(data: bytes) -> int:
    """Offset of the first byte after the top-level boxes that precede ``mdat`` (ftyp, moov, ...)."""
    i = 0
    while i + 8 <= len(data):
        size, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
        if kind == b"mdat" or size < 8:
            return i + 8
        i += size
    return 0


def write_not_a_video(path: str | os.PathLike, kind: str = "text") -> Path:
    """A file that is not a video whatever its name: plain text or a PNG image."""
    path = Path(path)
    if kind == "text":
        path.write_text("This is not a video.\nJust a few lines of text.\n" * 20)
    elif kind == "png":
        Image.fromarray(draw_frame(VideoSpec(width=64, height=48), 0.0)).save(path, format="PNG")
    else:
        raise ValueError(f"kind must be 'text' or 'png', got {kind!r}")
    return path


def write_audio_only(path: str | os.PathLike, duration_s: float = 2.0) -> Path:
    """A file with one sine audio stream and no video stream (.m4a/.mp4/.mkv: AAC, .webm/.ogg/.opus: Opus, .wav: PCM)."""
    path = Path(path)
    suffix = path.suffix.lower()
    codec = {".webm": "libopus", ".ogg": "libopus", ".opus": "libopus", ".wav": "pcm_s16le", ".mp3": "libmp3lame"}.get(suffix, "aac")
    fmt = {".m4a": "mp4"}.get(suffix)  # ffmpeg's muxer for .m4a is "ipod"; plain mp4 opens everywhere
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=48000)
        stream.layout = "mono"
        total = int(round(duration_s * 48000))
        for start in range(0, total, 4800):
            for packet in stream.encode(_sine(start, min(total, start + 4800))):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_no_frames(path: str | os.PathLike, width: int = 320, height: int = 240) -> Path:
    """A container with one H.264 (MJPEG for .avi) video stream and zero frames.

    MP4/MOV are written fragmented with an empty moov, the only way the MP4 muxer keeps
    a track with no samples.  Matroska/WebM are refused: libavformat (8.1) cannot open an
    mkv without frames (EOFError), so it would not test what this function promises.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".mp4", ".mov"):
        encoder, pix_fmt, opts = "libx264", "yuv420p", {"movflags": "frag_keyframe+empty_moov"}
    elif suffix == ".avi":
        encoder, pix_fmt, opts = "mjpeg", "yuvj420p", {}
    else:
        raise ValueError(f"write_no_frames supports .mp4, .mov and .avi, not {suffix!r}")
    with av.open(str(path), "w", options=opts) as out:
        stream = out.add_stream(encoder, rate=10)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        out.start_encoding()  # writes the header; nothing is muxed otherwise
        for packet in stream.encode(None):
            out.mux(packet)
    return path
