"""The in-process ingestion loop: every stage of ingest.py chained in one process.

It is the debugging/test path and the fallback when Ray is not wanted.  Frames
from many videos share each encoder batch; finished videos are committed in bulk.

Decoding overlaps encoding: background threads drive the decoders (sandbox children, each
decoding one video at a time in its own process; `decode_workers` of them, so one GPU can be fed
by several cores without Ray) and hand their messages over one bounded queue, so the children
decode up to two encoder batches ahead while this thread runs the model.
Memory is bounded by that queue: at most 2 x batch_size frames, and at most the bytes of that many
16:9 frames at the model's decode size (137 MB at batch 64 for the 796x448 frames ViT-B-32 is
decoded at, twice its input size: docs/parity.md), plus one encoder batch (at most batch_size
frames and those bytes), plus the frame vectors of the videos in flight (a few KB per sampled
frame).  Wider or taller frames count by their own bytes, so a 16:1 stripe (9.6 MB frames)
holds 14 frames in the queue, not 128.
"""

from __future__ import annotations

import functools
import logging
import queue as queue_mod
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vidclip.config import DecodeConfig, SamplingConfig
from vidclip.errors import InputError, MediaError
from vidclip.ingest.committer import CommitPolicy, Committer
from vidclip.ingest.video import Failure, IngestReport, Skip, VideoFacts, Work, finish_video, hash_files, triage
from vidclip.model.geometry import FrameGeometry
from vidclip.ingest.sandbox import CHUNK, FACTS, make_decoder
from vidclip.ingest.watchdog import DEFAULT_STALL_S, StallWatchdog
from vidclip.store.store import Store

log = logging.getLogger("vidclip")

# Decoded frames that may wait for the encoder, in encoder batches.  A budget of a few chunks was not
# enough: with short videos the decoder stalled after 4 chunks (20 frames) while the model ran a
# 60-frame batch, then the model waited for the next 40 (benchmarks/ingest.json: 4.9 s of waiting in a
# 37 s run of 100 videos).  0: no background thread, decode and encode take turns in this thread
# (the pre-overlap behaviour; for debuggers and profilers).
PREFETCH_BATCHES = 2
MAX_QUEUED_MESSAGES = 1024  # also bounds frame-less messages (triage verdicts, video starts and ends)
# When the decoder has nothing ready, the frames already queued (at least this many) are encoded
# now instead of waiting for a full batch: the model never idles while frames wait.  CPU throughput
# is flat from batch 8 to 64 here (ViT-B-32: 15-18 images/s), and a GPU waiting on the decoder
# would idle anyway.
EAGER_MIN_FRAMES = 8
_IDLE = "idle"
_END, _ERROR, _EOF, _FATAL = "end", "error", "eof", "fatal"


@dataclass
class _Slot:
    """A video between decode and commit."""

    work: Work
    facts: VideoFacts
    vectors: np.ndarray  # (K, D) float32, filled as batches are encoded
    have: np.ndarray  # (K,) bool: decoded and encoded
    queued: int = 0  # frames waiting in the encoder queue
    decoded: bool = False
    failed: str | None = None
    decoder: str = ""
    note: str = ""
    shots: list | None = None  # clip windows from the decode stage (--clips shots), else the plan's


@dataclass
class _Queue:
    slots: list[_Slot] = field(default_factory=list)  # one per queued chunk
    positions: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 each
    size: int = 0
    nbytes: int = 0


def run_in_process(
    store: Store,
    entries: Iterable,
    encoder,
    aggregator,
    temporal_name: str,
    sampling: SamplingConfig,
    decode: DecodeConfig = DecodeConfig(),
    retry_failed: bool = False,
    commit: CommitPolicy = CommitPolicy(),
    progress: bool = True,
    total: int | None = None,
    stall_s: float = DEFAULT_STALL_S,
    decode_workers: int = 1,
) -> IngestReport:
    """decode_workers: videos decoded at once, each by its own sandbox child (frames of several
    videos then share encoder batches; the rows are the same whatever the interleaving)."""
    if decode_workers < 1:
        raise InputError(f"decode workers must be >= 1, got {decode_workers}")
    if decode_workers > 1 and not decode.isolate:
        raise InputError("more than one decode worker needs the decode sandbox (isolate=True)")
    committer: Committer  # begun below, once the decode sandbox is starting
    queue = _Queue()
    in_flight: list[_Slot] = []
    slots: dict[int, _Slot] = {}  # id(work item) -> its slot, for the videos being decoded

    def finish_ready() -> None:
        for slot in list(in_flight):
            if slot.failed is not None:
                in_flight.remove(slot)
            elif slot.decoded and slot.queued == 0:
                in_flight.remove(slot)
                try:
                    rows = finish_video(
                        slot.work, slot.facts, slot.vectors, slot.have, aggregator, temporal_name,
                        sampling.max_frames, slot.decoder, slot.note, shots=slot.shots,
                    )
                except MediaError as exc:
                    committer.failed(slot.work, exc.reason)
                    continue
                committer.finished(slot.work, rows)

    def encode_queue() -> None:
        nonlocal queue
        if not queue.size:
            return
        vectors = encoder.encode_frames(queue.frames, normalize=False).numpy()  # (N, D) raw: finish_video keeps the norms
        row = 0
        for slot, pos in zip(queue.slots, queue.positions):
            n = len(pos)
            if slot.failed is None:
                slot.vectors[pos] = vectors[row : row + n]
                slot.have[pos] = True
            slot.queued -= n
            row += n
        queue = _Queue()
        finish_ready()

    def on_message(item, kind, payload) -> None:
        if kind == FACTS:
            k = len(payload.plan.frame_index)
            slot = _Slot(item, payload, np.zeros((k, encoder.dim), np.float32), np.zeros(k, bool))
            slots[id(item)] = slot
            in_flight.append(slot)
            return
        slot = slots[id(item)]
        if kind == CHUNK:
            nbytes = _bytes_of(payload.frames)
            if queue.size and (queue.size + len(payload.position) > encoder.batch_size
                               or queue.nbytes + nbytes > batch_bytes):
                encode_queue()  # flush first: a forward pass holds at most batch_size frames, and their bytes
            queue.slots.append(slot)
            queue.positions.append(payload.position)
            queue.frames.extend(payload.frames)
            queue.size += len(payload.position)
            queue.nbytes += nbytes
            slot.queued += len(payload.position)
            if queue.size >= encoder.batch_size or queue.nbytes >= batch_bytes:
                encode_queue()
        else:
            slot.decoder, slot.note, slot.decoded = payload["decoder"], payload["note"], True
            slot.shots = payload.get("shots")

    def on_error(item, reason: str) -> None:
        slot = slots.get(id(item))
        if slot is not None:
            slot.failed = reason
        committer.failed(item, reason)

    geometry = FrameGeometry.of_model(encoder.model)
    batch_bytes = encoder.batch_size * geometry.frame_bytes()
    # The sandbox children start first: they import their decoders while the store is repaired and prepared.
    with ExitStack() as stack:
        decoders = [stack.enter_context(make_decoder(decode.job, decode.timeout_s, decode.isolate))
                    for _ in range(decode_workers)]
        committer = Committer.begin(store, encoder.dim, commit, progress, total)
        items = triage(entries, store.sources(), store.video_status(), retry_failed,
                       functools.partial(hash_files, storage=decode.storage))
        budget = int(PREFETCH_BATCHES * encoder.batch_size * geometry.frame_bytes())
        max_frames = int(PREFETCH_BATCHES * encoder.batch_size)
        current: dict[int, str] = {}  # id(work item) -> uri, the videos being decoded

        def diagnose() -> str:
            if not current:
                return "the inputs to be listed and hashed (a slow or stuck file system?)"
            return f"the decoder or the encoder on {', '.join(sorted(current.values()))}"

        def committed() -> str:
            return f"{committer.committed_videos} video(s) of this run"

        watchdog = StallWatchdog(stall_s, diagnose, committed)
        with watchdog, _Prefetch(items, decoders, sampling, decode, geometry, budget, max_frames) as messages:
            for tag, item, payload in messages:
                if tag != _IDLE:
                    watchdog.tick()
                if tag == "skip":
                    committer.skipped(item)
                elif tag == "failure":
                    committer.failed(item, item.error)
                elif tag == "start":
                    current[id(item)] = item.entry.uri
                elif tag == "msg":
                    on_message(item, *payload)
                elif tag == _ERROR:
                    on_error(item, payload)
                elif tag == _END:
                    current.pop(id(item), None)
                    slots.pop(id(item), None)
                    finish_ready()
                elif tag == _IDLE and queue.size >= min(EAGER_MIN_FRAMES, encoder.batch_size):
                    encode_queue()
    encode_queue()
    finish_ready()
    return committer.close()


class _Prefetch:
    """Runs triage and the decoders on background threads; yields (tag, item, payload).

    Each decoder has its own thread, which takes the next item from triage (under a lock) and
    decodes it; the messages of one video stay in order, those of different videos interleave.
    Tags: "skip" / "failure" (triage's verdicts), "start" (a video begins), "msg" (one decoder
    message), "error" (the video failed: payload is the reason), "end" (the video is over),
    "idle" (nothing decoded is ready: the next message will block).
    The queue holds at most `max_bytes` of decoded frames and `max_frames` frames (one larger
    chunk may pass when it is empty; a chunk is at most decoder.CHUNK_BYTES) and
    MAX_QUEUED_MESSAGES messages, so decoding runs at most that far ahead: large frames are held
    by their bytes, small ones by their number (2,400 frames of 160x120 would fit the bytes and
    buy nothing).  max_bytes <= 0: no threads, decode and encode take turns.
    """

    def __init__(self, items, decoders, sampling, decode, geometry, max_bytes: int, max_frames: int = 1 << 30):
        self._items, self._decoders = iter(items), list(decoders)
        self._items_lock = threading.Lock()  # triage is one generator (it hashes and probes inputs)
        self._job = (sampling, decode, geometry)
        self.max_bytes = int(max_bytes)
        self.max_frames = int(max_frames)
        self._q: queue_mod.Queue = queue_mod.Queue()  # bounded by the credit counters below
        self._room = threading.Condition()
        self._bytes = 0  # bytes of decoded frames queued
        self._frames = 0
        self.peak_bytes = 0
        self._messages = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._produce, args=(d,), name=f"vidclip-decode-{i}", daemon=True)
            for i, d in enumerate(self._decoders)
        ]
        if self.max_bytes <= 0 and len(self._decoders) > 1:
            raise InputError("more than one decode worker needs the background decode threads (PREFETCH_BATCHES > 0)")

    def _put(self, message) -> bool:
        n, frames = _bytes_in(message), _frames_in(message)
        with self._room:
            while not self._stop.is_set() and (
                (self._bytes and (self._bytes + n > self.max_bytes or self._frames + frames > self.max_frames))
                or self._messages >= MAX_QUEUED_MESSAGES
            ):
                self._room.wait(0.2)
            if self._stop.is_set():
                return False
            self._bytes += n
            self._frames += frames
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            self._messages += 1
        self._q.put((message, n, frames))
        return True

    def _take(self):
        message, n, frames = self._q.get()
        with self._room:
            self._bytes -= n
            self._frames -= frames
            self._messages -= 1
            self._room.notify_all()
        return message

    def _next_item(self):
        with self._items_lock:
            if self._stop.is_set():
                return None
            return next(self._items, None)

    def _tagged(self, decoder):
        """Triage's verdicts and each video's decoder messages, tagged, a video at a time."""
        while (item := self._next_item()) is not None:
            if isinstance(item, Skip):
                yield "skip", item, None
            elif isinstance(item, Failure):
                yield "failure", item, None
            else:
                yield "start", item, None
                try:
                    for message in decoder.run(item.entry.uri, *self._job):
                        yield "msg", item, message
                except MediaError as exc:
                    yield _ERROR, item, exc.reason
                yield _END, item, None

    def _produce(self, decoder) -> None:
        messages = self._tagged(decoder)
        try:
            for message in messages:
                if not self._put(message):
                    return  # stopped: the caller is leaving
        except BaseException as exc:  # a bug, or an error reading the inputs: re-raised in the caller
            self._put((_FATAL, None, exc))
            return
        finally:
            messages.close()  # a stop mid-video ends the decoder's stream (the sandbox kills its child)
        self._put((_EOF, None, None))

    def __enter__(self):
        if self.max_bytes > 0:
            for t in self._threads:
                t.start()
        return self

    def __iter__(self):
        if self.max_bytes <= 0:
            yield from self._tagged(self._decoders[0])
            return
        running = len(self._threads)
        while running:
            if self._q.empty():
                yield _IDLE, None, None  # the consumer may use the wait (encode a partial batch)
            tag, item, payload = self._take()
            if tag == _EOF:
                running -= 1
                continue
            if tag == _FATAL:
                raise payload
            yield tag, item, payload

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._room:
            self._room.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=1.0)
        for t, decoder in zip(self._threads, self._decoders):
            if t.is_alive():
                # The producer is blocked inside its decoder (a stall, or Ctrl-C during a long decode):
                # end the decoder so the producer returns; an inline decoder cannot be ended, and its
                # daemon thread is left to the process's exit.
                kill = getattr(decoder, "kill", None)
                if kill is not None:
                    kill()
                    t.join(timeout=30)


def _bytes_of(frames) -> int:
    return sum(int(f.nbytes) for f in frames)


def _frames_in(message) -> int:
    """Decoded frames a prefetch message carries (only decoder CHUNK messages carry any)."""
    tag, _, payload = message
    if tag == "msg" and payload[0] == CHUNK:
        return len(payload[1].position)
    return 0


def _bytes_in(message) -> int:
    """Bytes of decoded frames a prefetch message carries (only decoder CHUNK messages carry any)."""
    tag, _, payload = message
    if tag == "msg" and payload[0] == CHUNK:
        return _bytes_of(payload[1].frames)
    return 0
