"""PyAV containers opened so that no decode can deadlock (docs/pyav-deadlock.md).

The hang: FFmpeg's frame-threaded decoders (thread_type FRAME or AUTO) keep worker threads
decoding ahead of the caller.  When a decoder is freed, `avcodec_free_context` waits for those
workers, and PyAV calls it from `CodecContext.__dealloc__` *with the GIL held*.  If a worker logs
at that moment and PyAV's Python log callback is installed (any `av.logging.set_level(<int>)`,
which vidclip itself used to call), the callback waits for the GIL: the worker waits for the main
thread, the main thread waits for the worker, forever.

The rules every PyAV decode in vidclip follows, through this module:

* vidclip never installs PyAV's Python log callback.  `own_process_logging()` puts back PyAV's
  C-level no-op callback (which never takes the GIL) in processes vidclip owns (the decode child).
* Frame threading only where vidclip owns the process (`allow_frame_threads()`, called by the
  decode child).  Anywhere else (a notebook, the query process, a server) the host may have
  installed PyAV's log callback, so decoders use slice threading, whose workers are idle
  whenever the caller is not inside a decode call.
* A decoder is drained deterministically while its container is open: the frame generator is
  closed and the codec's buffers flushed (a call PyAV makes without the GIL, so workers can
  finish whatever they are logging), never left to the garbage collector.
"""

from __future__ import annotations

from typing import Callable, Iterator

_frame_threads = False  # may decoders in this process use frame threading?
# Codecs decoded with slice threading even where frame threading is allowed: for H.264, the way
# vidclip decodes (planned frames, unplanned B-frames dropped per packet) made frame threading
# cost more CPU and more time.  1 frame/s of 30 s libx264 streams through the decode stage (decode
# child settings, 2 cores, `vidclip bench decode` style, min of 2): 720p GOP 250 with B-frames AUTO
# 1.16 CPU-s / 0.93 s wall vs SLICE 0.98 / 0.58; 720p GOP 30 0.97 / 0.81 vs 0.84 / 0.50; 1080p GOP
# 250 2.57 / 2.07 vs 2.16 / 1.26; 1080p GOP 30 2.14 / 1.75 vs 1.83 / 1.04; 360p 0.35 / 0.29 vs
# 0.28 / 0.18 (one thread: the same CPU as SLICE, AUTO's wall).  Other codecs keep AUTO there
# (not measured on realistic content yet).
SLICE_THREADED = frozenset({"h264"})


def own_process_logging() -> None:
    """For a process vidclip owns: FFmpeg's logs go nowhere, through a callback without the GIL.

    vidclip reports per-video reasons itself, so the native logs of PyAV's and decord's FFmpeg
    copies are silenced (decord's copy has its own log state)."""
    import av

    av.logging.set_level(None)  # PyAV's nolog callback: a C no-op, never takes the GIL
    try:
        import decord

        decord.logging.set_level(decord.logging.QUIET)
    except ImportError:
        pass


def allow_frame_threads() -> None:
    """Let decoders in this process use frame threading (only where `own_process_logging` holds)."""
    global _frame_threads
    own_process_logging()
    _frame_threads = True


def frame_threads_allowed() -> bool:
    return _frame_threads


class VideoInput:
    """One video stream of a PyAV input container, decoded safely.

    Use as a context manager.  `frames()` starts (or restarts, after a `seek`) decoding; the
    previous frame generator is closed first.  On exit the decoder is drained and the container
    closed, whatever the exit."""

    def __init__(self, path: str, skip_frame: str | None = None):
        import av

        self._av = av
        self._frames = None  # the current frame generator
        self._skip = skip_frame or "DEFAULT"  # what the decoder skips for every packet
        self.decoded = 0  # frames that came out of the decoder (skipped packets never do)
        self.container = av.open(str(path), metadata_errors="ignore")
        try:
            if not self.container.streams.video:
                self.stream = None
                return
            self.stream = self.container.streams.video[0]
            frame = _frame_threads and self.stream.codec_context.name not in SLICE_THREADED
            self.stream.thread_type = "AUTO" if frame else "SLICE"
            if skip_frame:
                self.stream.codec_context.skip_frame = skip_frame
        except BaseException:
            self.container.close()
            raise

    def frames(self, wanted: Callable[[int], bool] | None = None) -> Iterator:
        """Decoded frames that carry a pts, from the current position.

        wanted(ts) -> False for a packet (by its pts, else dts) whose frame the caller will not
        use: if no other frame references it, the decoder drops it unseen (skip_frame NONREF, set
        per packet).  A frame other frames predict from is still decoded, so every wanted frame
        comes out exactly as without `wanted`; only the decoding of unwanted non-reference frames
        (most B-frames) is saved.  A packet without timestamps is always decoded."""
        self._stop()
        self._frames = self._decoded(wanted)
        return self._frames

    def _decoded(self, wanted: Callable[[int], bool] | None) -> Iterator:
        codec = self.stream.codec_context
        base = self._skip
        drop = "NONREF" if base in ("DEFAULT", "NONE") else base  # never skip less than asked
        codec.skip_frame = base
        for packet in self.container.demux(self.stream):
            if wanted is not None:
                ts = packet.pts if packet.pts is not None else packet.dts
                codec.skip_frame = base if ts is None or wanted(ts) else drop
            for frame in codec.decode(packet):
                self.decoded += 1
                if frame.pts is not None:
                    yield frame

    def seek(self, pts: int, any_frame: bool = False) -> None:
        self._stop()
        self.container.seek(int(pts), stream=self.stream, backward=True, any_frame=any_frame)

    def _stop(self) -> None:
        """Close the frame generator and drain the decoder's in-flight frames (without the GIL)."""
        gen, self._frames = self._frames, None
        if gen is not None:
            gen.close()
        if self.stream is not None:
            try:
                self.stream.codec_context.flush_buffers()
            except self._av.error.FFmpegError:
                pass

    def close(self) -> None:
        try:
            self._stop()
        finally:
            self.container.close()

    def __enter__(self) -> "VideoInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
