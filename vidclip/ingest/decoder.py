"""Decode the sampled frames of one video: decord first, PyAV when decord can't.

Frames are resized at decode time (by the decoder's own scaler) to the size the
model needs, turned upright, and handed out in small chunks, so a whole video's
frames are never held at full resolution, nor all at once.

decord is fast but fragile: it cannot read some codecs (AV1), and its frame
index can disagree with the container's timestamps.  decord applies the display
rotation itself; PyAV does not, so its frames are turned upright here.  Its timeline is checked
against the probe's before any frame is trusted; any disagreement or error
switches to PyAV for the frames not yet delivered, and the reason is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from vidclip.container import SLICE_THREADED, VideoInput
from vidclip.errors import DecodeError
from vidclip.ingest.probe import Probe
from vidclip.ingest.sampling import SamplePlan

log = logging.getLogger("vidclip")

DECORD = "decord"
PYAV = "pyav"


# Codecs whose PyAV (ffmpeg) decoder skips non-key frames fast enough to beat decord's keyframe
# seeks (benchmarks/decode.json, keyframes case, CPU-s): H.264 10-min 720p 0.73 vs 0.93, 60 s 720p 0.33
# vs 0.59.  VP9 is the opposite (0.40 vs 0.04): decord seeks straight to each keyframe.
SKIPS_NONKEY_FAST = frozenset({"h264"})
# Codecs whose decoder drops an unplanned non-reference frame, per packet, leaving the planned frames
# bit-identical (tests/test_decoder_modes.py): of 56 frames decoded for 6 planned ones in a 10 fps
# test file, H.264 then decodes 40 and HEVC 33.  VP9, MPEG-4 Part 2 and MJPEG (as vidclip's tests
# write them) have no frame to drop; dav1d (AV1) drops the planned frames too, so it is never asked.
DROPS_NONREF = frozenset({"h264", "hevc"})
SPARSE = 4  # a plan keeping at most 1 frame in SPARSE leaves most B-frames unplanned
# decord's reader keeps an index entry per frame: the decode child grew 127 -> 156 -> 171 MB for a
# 1, 20 and 40 min 160x120 video, PyAV's streaming reader 112 -> 123 -> 126 MB.  Past this many
# frames (30 min at 30 fps) PyAV goes first, so the child's memory stays flat for any length.
LONG_VIDEO_FRAMES = 54_000
# swscale kernel for PyAV's decode-time resize: BICUBIC is closest to PIL at twice the model's size
# (benchmarks/parity.py: 42.9-43.8 dB vs AREA's 41.3-42.6 from 720p to 4K, same CPU)
PYAV_INTERPOLATION = "BICUBIC"
THUMB_SIZE = (32, 18)  # (w, h) of the grey pictures shot detection compares
CHUNK_BYTES = 8 << 20  # a chunk's decoded frames: 7 frames of 796x448 (ViT-B-32 at twice its size), 31 of 398x224
DECORD_MAX_SHRINK = 3.5  # decord's scaler: 43-45 dB up to 2.4x (1080p -> 448p), 38.9 dB at 4.8x (4K)


def preferred_decoders(plan: SamplePlan, probe: Probe, size: tuple[int, int] | None = None) -> tuple[str, ...]:
    """Which decoder to try first for this plan (the other is the fallback).  Chosen from
    `vidclip bench decode` (benchmarks/decode.json): decord is faster when many frames are decoded
    (every frame of a 10-min 720p H.264: 32.8 vs 41.1 CPU-s) and on par for sparse picks
    (uniform-12: 1.76 vs 1.65 with PyAV seeking), so it stays first; a keyframes-only plan on H.264
    goes to PyAV first, whose codec skips non-key frames; so does a long video (LONG_VIDEO_FRAMES),
    whose decord index would grow the decode child's memory with its length; and so does a frame
    that decord's own scaler would shrink more than DECORD_MAX_SHRINK times, where it drifts from
    open_clip's pixels (benchmarks/parity.json: 4K -> 448p is 38.9 dB with decord, 43.8 with
    PyAV's bicubic, at the same CPU).  A sparse plan (at most 1 frame in SPARSE) over an H.264 or
    HEVC stream with B-frames goes to PyAV too, which drops the unplanned ones (DROPS_NONREF) where
    decord decodes every frame: 1 frame/s of 30 fps libx264 defaults, 720p and 1080p, keyframe
    interval 250 or 30, took 9-12% less CPU than decord (benchmarks/decode_structure.json); without
    B-frames decord stayed first (2-6% less CPU than PyAV's frame threading).  Since H.264 decodes
    with slice threading (vidclip.container.SLICE_THREADED), PyAV leads on any sparse H.264 plan,
    B-frames or not: 1 frame/s of 30 s libx264 streams without B-frames, 720p and 1080p, GOP 30 and
    250, 6-16% less CPU than decord and about half its wall; 4 frames/s the same CPU, 0.93 vs 1.43 s
    wall; every frame, decord keeps 12% less CPU (3.0 vs 3.4 CPU-s for 900 720p frames)."""
    if size is not None and min(probe.info.display_size) > DECORD_MAX_SHRINK * min(size):
        return (PYAV, DECORD)
    if plan.keyframes_only and probe.info.codec in SKIPS_NONKEY_FAST:
        return (PYAV, DECORD)
    if probe.info.n_frames > LONG_VIDEO_FRAMES:
        return (PYAV, DECORD)
    sparse = SPARSE * len(plan.frame_index) <= probe.info.n_frames
    if sparse and (probe.info.codec in SLICE_THREADED or (probe.reordered and probe.info.codec in DROPS_NONREF)):
        return (PYAV, DECORD)
    return (DECORD, PYAV)


@dataclass(frozen=True)
class FrameChunk:
    position: np.ndarray  # (n,) int64 positions in the plan (0..K-1) of these frames
    times: np.ndarray  # (n,) float64 presentation times in seconds
    frames: np.ndarray  # (n, H, W, 3) uint8 RGB, upright, resized


class SampleReader:
    """Iterates the planned frames of one video in chunks; records which decoder served them and why."""

    def __init__(
        self,
        path: str,
        probe: Probe,
        plan: SamplePlan,
        size: tuple[int, int],
        chunk_frames: int = 32,
        decoders: tuple[str, ...] | None = None,
        seek: str = "auto",
        skip: bool | None = None,
        thumbnails: bool = False,
    ):
        self.path = str(path)
        self.probe = probe
        self.plan = plan
        self.display_size = size  # (w, h) of the upright output frames
        w, h = size
        # at most CHUNK_BYTES of frames per chunk: the child holds one chunk and the pipe carries it
        self.chunk_frames = max(1, min(int(chunk_frames), CHUNK_BYTES // max(1, 3 * int(w) * int(h))))
        self.decoders = decoders or preferred_decoders(plan, probe, size)
        self.decoder = self.decoders[0]
        self.seek = seek  # PyAV: "auto" (jump to the keyframe before a far frame), "never", "always"
        self.seeks = 0  # PyAV seeks done
        # PyAV: let the codec drop unplanned non-reference frames (VideoInput.frames); None: by codec
        self.skip = probe.info.codec in DROPS_NONREF if skip is None else skip
        self.decoded = 0  # PyAV: frames that came out of the decoder, planned or not
        # thumbnails=True: a THUMB_SIZE grey picture of every frame decoded (PyAV: planned or not;
        # decord: the planned ones), with its time: the signal of vidclip.ingest.shots
        self.thumbnails = thumbnails
        self.thumb_times: list[float] = []
        self.thumbs: list[np.ndarray] = []
        self._reformatter = None  # PyAV's scaler, kept across frames (_reformat)
        self.note = ""  # why a fallback happened, empty when the first decoder served everything
        self.missing = 0  # planned frames no decoder could produce

    @property
    def coded_size(self) -> tuple[int, int]:
        w, h = self.display_size
        return (h, w) if self.probe.info.rotation in (90, 270) else (w, h)

    def chunks(self) -> Iterator[FrameChunk]:
        delivered = 0
        remaining = self.decoders
        while remaining:
            name, remaining = remaining[0], remaining[1:]
            self.decoder = name
            read = self._decord if name == DECORD else self._pyav
            try:
                for chunk in read(delivered):
                    delivered += len(chunk.position)
                    yield chunk
                return
            except DecodeError as exc:
                if not remaining:
                    raise
                self.note = f"{name} failed: {exc.reason}"
                log.debug("%s: falling back from %s: %s", self.path, name, exc.reason)

    # -- decord ---------------------------------------------------------------------------------
    def _decord(self, start: int) -> Iterator[FrameChunk]:
        import decord

        plan_idx = self.plan.frame_index[start:]  # (K',)
        # decord applies the display-rotation tag itself: it takes and returns display-oriented sizes.
        w, h = self.display_size
        try:
            vr = decord.VideoReader(self.path, ctx=decord.cpu(0), width=w, height=h, num_threads=1)
            n = len(vr)
            expected = len(self.probe.timeline)
            if n != expected:
                raise DecodeError(self.path, f"decord indexes {n} frames, the container has {expected}")
            ts = vr.get_frame_timestamp(np.arange(n))[:, 0]  # (N,) seconds
            ours = self.probe.timeline
            if not np.allclose(ts - ts[0], ours - ours[0], atol=2e-3):
                raise DecodeError(self.path, "decord frame timestamps disagree with the container's pts")
            for lo in range(0, len(plan_idx), self.chunk_frames):
                idx = plan_idx[lo : lo + self.chunk_frames]  # (n,)
                frames = vr.get_batch(idx.tolist()).asnumpy()  # (n, h, w, 3) uint8
                if frames.shape[1:3] != (h, w):
                    raise DecodeError(self.path, f"decord returned {frames.shape[2]}x{frames.shape[1]} frames")
                if self.thumbnails:
                    self._thumb_arrays(ours[idx], frames)
                yield FrameChunk(
                    position=np.arange(start + lo, start + lo + len(idx)),
                    times=ours[idx],
                    frames=frames,
                )
        except (decord.DECORDError, RuntimeError, ValueError, IndexError) as exc:
            raise DecodeError(self.path, _one_line(exc)) from None

    # -- PyAV -----------------------------------------------------------------------------------
    def _pyav(self, start: int) -> Iterator[FrameChunk]:
        """Decode forward through the stream, delivering the planned frames (matched by exact pts).

        Seeking: when a keyframe lies between the last decoded frame and the next planned one, jump
        to that keyframe instead of decoding everything in between (seek="auto"; needs the probe's
        keyframe flags).  Frames are still matched by pts, so seeking never changes which frame
        or time is delivered; an imprecise seek (landing after the keyframe) switches back to
        decoding through from the start.  A keyframes-only plan also tells the codec to skip
        every non-key frame (skip_frame="NONKEY").
        """
        import av

        plan_idx = self.plan.frame_index[start:]  # (K',)
        if len(plan_idx) == 0:
            return
        pts_all = self.probe.pts  # (N,)
        kf_before = self.probe.keyframe_before()  # (N,)
        # A keyframes-only plan decodes through: with skip_frame=NONKEY the frames in between are only
        # demuxed, which costs less than a seek per keyframe (benchmarks/decode.json).
        use_seek = self.seek == "always" or (
            self.seek == "auto" and self.probe.keyframes is not None and not self.plan.keyframes_only
        )
        w, h = self.coded_size
        planned = {int(p) for p in pts_all[plan_idx]}
        wanted = planned.__contains__ if self.skip else None
        got_pos: list[int] = []
        got_frames: list[np.ndarray] = []
        found = 0
        self.seeks = 0
        try:
            with VideoInput(self.path, skip_frame="NONKEY" if self.plan.keyframes_only else None) as video:
                frames = None  # iterator of decoded frames, restarted after each seek
                cur = -1  # timeline index of the last decoded frame
                pending = None  # the last decoded frame, not yet used
                for k, i in enumerate(plan_idx):
                    target = int(pts_all[i])
                    if pending is not None and pending.pts > target:
                        continue  # this planned frame never came out of the decoder
                    jump = use_seek and kf_before[i] > max(cur, 0)  # a keyframe lies ahead of the decoder
                    if frames is None or jump:
                        if jump:
                            video.seek(int(pts_all[kf_before[i]]))
                            self.seeks += 1
                        frames = self._watched(video.frames(wanted))
                        pending = next(frames, None)
                        if pending is not None and pending.pts > target:  # the seek overshot: decode through
                            video.seek(int(pts_all[0]))
                            use_seek = False
                            frames = self._watched(video.frames(wanted))
                            pending = next(frames, None)
                    while pending is not None and pending.pts < target:
                        pending = next(frames, None)
                    if pending is None:
                        break  # end of stream
                    cur = int(np.searchsorted(pts_all, pending.pts))
                    if pending.pts != target:
                        continue
                    rgb = self._reformat(pending, w, h, "rgb24", PYAV_INTERPOLATION)
                    got_pos.append(start + k)
                    got_frames.append(rgb)
                    found += 1
                    if len(got_pos) == self.chunk_frames:
                        yield self._pyav_chunk(got_pos, got_frames)
                        got_pos, got_frames = [], []
                # Leaving the `with` (at the end, on an error, or when the caller stops early) drains
                # the decoder while its container is open: vidclip.container says why.
                pending = None
                self.decoded = video.decoded
        except av.error.FFmpegError as exc:
            if found == 0 and not got_pos:
                raise DecodeError(self.path, _one_line(exc)) from None
            log.debug("%s: stream ends early: %s", self.path, _one_line(exc))
        if got_pos:
            yield self._pyav_chunk(got_pos, got_frames)
        self.missing = len(plan_idx) - found
        if found == 0:
            raise DecodeError(self.path, "no sampled frame could be decoded")

    def _watched(self, frames):
        """The decoder's frames, each also kept as a thumbnail when asked (self.thumbnails)."""
        if not self.thumbnails:
            yield from frames
            return
        pts_all, timeline = self.probe.pts, self.probe.timeline
        w, h = THUMB_SIZE
        for frame in frames:
            i = int(np.searchsorted(pts_all, frame.pts))
            if i < len(pts_all) and pts_all[i] == frame.pts:
                self.thumb_times.append(float(timeline[i]))
                self.thumbs.append(self._reformat(frame, w, h, "gray"))
            yield frame

    def _reformat(self, frame, w: int, h: int, fmt: str, interpolation=None) -> np.ndarray:
        """frame.to_ndarray(...) through one reformatter per reader: PyAV otherwise sets up a new
        scaler for every frame (a 32x18 grey thumbnail 0.83 -> 0.07 CPU-ms; a 796x448 rgb24 frame
        from 720p 3.8 -> 2.6 ms; the same pixels)."""
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        return self._reformatter.reformat(frame, width=w, height=h, format=fmt, interpolation=interpolation).to_ndarray()

    def _thumb_arrays(self, times: np.ndarray, frames: np.ndarray) -> None:
        """Thumbnails of decoded RGB frames (n, H, W, 3)."""
        from PIL import Image

        for t, f in zip(times, frames):
            self.thumb_times.append(float(t))
            self.thumbs.append(np.asarray(Image.fromarray(f).convert("L").resize(THUMB_SIZE, Image.BILINEAR)))

    def shot_cuts(self) -> list[float]:
        """Cut and dissolve times found in the thumbnails (vidclip.ingest.shots)."""
        from vidclip.ingest.shots import cuts_from_thumbnails, dissolves_from_thumbnails

        if not self.thumbs:
            return []
        times, first = np.unique(np.asarray(self.thumb_times), return_index=True)  # (N,) sorted, no repeats
        thumbs = np.stack(self.thumbs)[first]  # (N, h, w)
        cuts = cuts_from_thumbnails(times, thumbs)
        return sorted(cuts + dissolves_from_thumbnails(times, thumbs, cuts))

    def _pyav_chunk(self, pos: list[int], frames: list[np.ndarray]) -> FrameChunk:
        position = np.asarray(pos, dtype=np.int64)  # (n,)
        return FrameChunk(
            position=position,
            times=self.probe.timeline[self.plan.frame_index[position]],
            frames=self._upright(np.stack(frames)),  # (n, h, w, 3)
        )

    def _upright(self, frames: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) coded orientation -> (n, H, W, 3) display orientation."""
        k = self.probe.info.rotation // 90
        if k == 0:
            return frames
        return np.ascontiguousarray(np.rot90(frames, k=k, axes=(1, 2)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # decord prefixes messages with a C++ source location; keep the human part.
    if "ERROR" in text:
        text = text[text.index("ERROR") + len("ERROR") :].strip(" :")
    return (text or type(exc).__name__)[:240]
