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

from vidclip.errors import DecodeError
from vidclip.probe import Probe
from vidclip.sampling import SamplePlan

log = logging.getLogger("vidclip")

DECORD = "decord"
PYAV = "pyav"


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
        decoders: tuple[str, ...] = (DECORD, PYAV),
    ):
        self.path = str(path)
        self.probe = probe
        self.plan = plan
        self.display_size = size  # (w, h) of the upright output frames
        self.chunk_frames = max(1, int(chunk_frames))
        self.decoders = decoders
        self.decoder = decoders[0]
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
                yield FrameChunk(
                    position=np.arange(start + lo, start + lo + len(idx)),
                    times=ours[idx],
                    frames=frames,
                )
        except (decord.DECORDError, RuntimeError, ValueError, IndexError) as exc:
            raise DecodeError(self.path, _one_line(exc)) from None

    # -- PyAV -----------------------------------------------------------------------------------
    def _pyav(self, start: int) -> Iterator[FrameChunk]:
        import av

        plan_idx = self.plan.frame_index[start:]  # (K',)
        if len(plan_idx) == 0:
            return
        wanted = {int(self.probe.pts[i]): start + k for k, i in enumerate(plan_idx)}  # pts -> plan position
        last_pts = int(self.probe.pts[plan_idx[-1]])
        w, h = self.coded_size
        got_pos: list[int] = []
        got_frames: list[np.ndarray] = []
        found = 0
        try:
            with av.open(self.path, metadata_errors="ignore") as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    pos = wanted.get(int(frame.pts))
                    if pos is not None:
                        rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
                        got_pos.append(pos)
                        got_frames.append(rgb)
                        found += 1
                        if len(got_pos) == self.chunk_frames:
                            yield self._pyav_chunk(got_pos, got_frames)
                            got_pos, got_frames = [], []
                    if frame.pts >= last_pts:
                        break
        except av.error.FFmpegError as exc:
            if found == 0 and not got_pos:
                raise DecodeError(self.path, _one_line(exc)) from None
            log.debug("%s: stream ends early: %s", self.path, _one_line(exc))
        if got_pos:
            yield self._pyav_chunk(got_pos, got_frames)
        self.missing = len(plan_idx) - found
        if found == 0:
            raise DecodeError(self.path, "no sampled frame could be decoded")

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
