"""Probe a video file: container facts and the presentation timeline of its video stream.

PyAV is the probe for every file (decord exposes neither codec nor rotation).
Probing demuxes packets but decodes only the first frame, to read its rotation
and prove the stream holds at least one decodable picture.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from vidclip.errors import ProbeError
from vidclip.ingest.manifest import special_file_kind


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about one file.  Sizes are coded (stored) sizes; see `display_size`."""

    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    rotation: int  # degrees counter-clockwise to apply for display: 0, 90, 180 or 270
    n_frames: int

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the upright picture."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Probe:
    info: VideoInfo
    timeline: np.ndarray  # (N,) float64 presentation times in seconds from stream start, sorted
    pts: np.ndarray  # (N,) int64 raw pts in stream time base, same order as timeline
    note: str = ""  # something odd but not fatal, e.g. frames ending long before the declared duration
    keyframes: np.ndarray | None = None  # (N,) bool: the packet at this pts is a keyframe (None: unknown)
    reordered: bool = False  # packets come out of presentation order: the stream has B-frames

    def keyframe_before(self) -> np.ndarray:
        """(N,) index of the last keyframe at or before each frame (0 where none is known)."""
        if self.keyframes is None or not self.keyframes.any():
            return np.zeros(len(self.pts), dtype=np.int64)
        idx = np.where(self.keyframes, np.arange(len(self.pts)), 0)
        return np.maximum.accumulate(idx).astype(np.int64)


def probe(path: str, max_pixels: int) -> Probe:
    """Read container facts and every frame's presentation time, or raise ProbeError naming the reason."""
    import av

    from vidclip.container import VideoInput

    uri = str(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ProbeError(uri, f"cannot read file ({exc.strerror or exc})") from None
    kind = special_file_kind(st.st_mode)
    if kind:  # opening a FIFO or a device could block forever
        raise ProbeError(uri, f"a {kind}, not a regular file")
    size = st.st_size
    if size == 0:
        raise ProbeError(uri, "empty file (0 bytes)")
    try:
        video = VideoInput(path)
    except av.error.FFmpegError as exc:
        raise ProbeError(uri, f"not a readable video container ({_ffmpeg_reason(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeError(uri, f"cannot open ({exc})") from None
    with video:
        container = video.container
        fmt = container.format.name or ""
        # ffmpeg opens a PNG or JPEG as a one-frame "video" (image2 / *_pipe demuxers); an animated
        # GIF is accepted as video.
        if fmt.startswith("image2") or fmt.endswith("_pipe") or fmt in ("apng", "webp"):
            raise ProbeError(uri, f"a still image ({fmt.removesuffix('_pipe')}), not a video")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise ProbeError(uri, f"no video stream (found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise ProbeError(uri, "video stream declares no frame size")
        if width * height > max_pixels:
            raise ProbeError(
                uri, f"declared resolution {width}x{height} exceeds the pixel budget of {max_pixels} pixels"
            )
        codec = getattr(ctx.codec, "canonical_name", None) or ctx.name or "unknown"
        time_base = stream.time_base
        if time_base is None:
            raise ProbeError(uri, "video stream has no time base")
        container_duration = container.duration / 1e6 if container.duration else None
        pts, keyframes, reordered = _read_pts(container, stream, uri)
        rotation = _first_frame_rotation(video, uri)

    start = int(stream.start_time) if stream.start_time is not None else int(pts[0])
    timeline = np.round((pts - start).astype(np.float64) * float(time_base), 6)  # (N,) seconds, microsecond grid
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    if fps <= 0 and len(timeline) > 1:
        fps = (len(timeline) - 1) / max(timeline[-1] - timeline[0], 1e-9)
    frame_dur = 1.0 / fps if fps > 0 else 0.0
    # The frames' own extent is the duration; a header may claim more (a truncated file) or nothing.
    duration = float(timeline[-1] + frame_dur)
    declared = float(stream.duration * time_base) if stream.duration is not None else container_duration
    note = ""
    if declared and declared - duration > max(1.0, 0.05 * declared):
        note = f"frames end at {duration:.2f}s of a declared {declared:.2f}s (truncated?)"
    info = VideoInfo(
        duration_s=round(duration, 6),
        fps=round(fps, 6),
        width=width,
        height=height,
        codec=codec,
        rotation=rotation,
        n_frames=int(len(timeline)),
    )
    return Probe(info=info, timeline=timeline, pts=pts, note=note, keyframes=keyframes, reordered=reordered)


def _read_pts(container, stream, uri: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Demux (no decoding) every packet of the stream: sorted presentation timestamps (N,),
    whether each one's packet is a keyframe (N,) bool, and whether any packet came before one it
    is shown after (decode order differs from presentation order: B-frames)."""
    import av

    values: list[int] = []
    keys: set[int] = set()
    reordered = False
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None:
                reordered = reordered or (packet.pts is not None and bool(values) and ts < values[-1])
                values.append(int(ts))
                if packet.is_keyframe:
                    keys.add(int(ts))
    except av.error.FFmpegError as exc:
        if not values:
            raise ProbeError(uri, f"cannot read packets ({_ffmpeg_reason(exc)})") from None
        # A damaged tail: keep the packets read so far; decoding reports what it can't use.
    if not values:
        raise ProbeError(uri, "video stream has no frames")
    pts = np.unique(np.asarray(values, dtype=np.int64))  # sorted, duplicates dropped: (N,)
    keyframes = np.isin(pts, np.fromiter(keys, dtype=np.int64, count=len(keys)))  # (N,)
    return pts, keyframes, reordered


def _first_frame_rotation(video, uri: str) -> int:
    import av

    try:
        video.seek(0)
    except av.error.FFmpegError:
        pass
    try:
        for frame in video.frames():
            return int(round((frame.rotation or 0) / 90.0)) * 90 % 360
    except av.error.FFmpegError as exc:
        raise ProbeError(uri, f"first frame does not decode ({_ffmpeg_reason(exc)})") from None
    raise ProbeError(uri, "video stream has no decodable frames")


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200]
