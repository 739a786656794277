"""The in-process ingestion loop: every stage of ingest.py chained in one process.

It is the debugging/test path and the fallback when Ray is not wanted.  Frames
from many videos share each encoder batch; finished videos are committed in bulk.

Decoding overlaps encoding: a background thread drives the decoder (the sandbox child,
which decodes in its own process) and hands its messages over a queue bounded in *frames*,
so the child decodes up to a full encoder batch ahead while this thread runs the model.
Memory is bounded by that budget (2 x batch_size decoded frames by default: 34 MB at batch 64
for 398x224 frames) plus one encoder batch plus the frame vectors of the videos in flight (a
few KB per sampled frame).
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vidclip.config import DecodeConfig, SamplingConfig
from vidclip.errors import MediaError
from vidclip.committer import CommitPolicy, Committer
from vidclip.ingest import Failure, IngestReport, Skip, VideoFacts, Work, finish_video, triage
from vidclip.geometry import FrameGeometry
from vidclip.sandbox import CHUNK, FACTS, make_decoder
from vidclip.watchdog import DEFAULT_STALL_S, StallWatchdog
from vidclip.store import Store

log = logging.getLogger("vidclip")

# Decoded frames that may wait for the encoder, in encoder batches.  A budget of a few chunks was not
# enough: with short videos the decoder stalled after 4 chunks (20 frames) while the model ran a
# 60-frame batch, then the model waited for the next 40 (bench/ingest.json: 4.9 s of waiting in a
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


@dataclass
class _Queue:
    slots: list[_Slot] = field(default_factory=list)  # one per queued chunk
    positions: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 each
    size: int = 0


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
) -> IngestReport:
    committer: Committer  # begun below, once the decode sandbox is starting
    queue = _Queue()
    in_flight: list[_Slot] = []

    def finish_ready() -> None:
        for slot in list(in_flight):
            if slot.failed is not None:
                in_flight.remove(slot)
            elif slot.decoded and slot.queued == 0:
                in_flight.remove(slot)
                try:
                    rows = finish_video(
                        slot.work, slot.facts, slot.vectors, slot.have, aggregator, temporal_name,
                        sampling.max_frames, slot.decoder, slot.note,
                    )
                except MediaError as exc:
                    committer.failed(slot.work, exc.reason)
                    continue
                committer.finished(slot.work, rows)

    def encode_queue() -> None:
        nonlocal queue
        if not queue.size:
            return
        vectors = encoder.encode_frames(queue.frames).numpy()  # (N, D)
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

    slot: _Slot | None = None

    def on_message(item, kind, payload) -> None:
        nonlocal slot
        if kind == FACTS:
            k = len(payload.plan.frame_index)
            slot = _Slot(item, payload, np.zeros((k, encoder.dim), np.float32), np.zeros(k, bool))
            in_flight.append(slot)
        elif kind == CHUNK:
            if queue.size and queue.size + len(payload.position) > encoder.batch_size:
                encode_queue()  # flush first: every forward pass holds at most batch_size frames
            queue.slots.append(slot)
            queue.positions.append(payload.position)
            queue.frames.extend(payload.frames)
            queue.size += len(payload.position)
            slot.queued += len(payload.position)
            if queue.size >= encoder.batch_size:
                encode_queue()
        else:
            slot.decoder, slot.note, slot.decoded = payload["decoder"], payload["note"], True

    def on_error(item, reason: str) -> None:
        if slot is not None and slot.work is item:
            slot.failed = reason
        committer.failed(item, reason)

    geometry = FrameGeometry.of_model(encoder.model)
    # The sandbox child starts first: it imports its decoders while the store is repaired and prepared.
    with make_decoder(decode.job, decode.timeout_s, decode.isolate) as decoder:
        committer = Committer.begin(store, encoder.dim, commit, progress, total)
        items = triage(entries, store.sources(), store.video_status(), retry_failed)
        budget = int(PREFETCH_BATCHES * encoder.batch_size)
        current = {"uri": None}

        def diagnose() -> str:
            if current["uri"] is None:
                return "the inputs to be listed and hashed (a slow or stuck file system?)"
            return f"the decoder or the encoder on {current['uri']}"

        def committed() -> str:
            return f"{committer.committed_videos} video(s) of this run"

        watchdog = StallWatchdog(stall_s, diagnose, committed)
        with watchdog, _Prefetch(items, decoder, sampling, decode, geometry, budget) as messages:
            for tag, item, payload in messages:
                if tag != _IDLE:
                    watchdog.tick()
                if tag == "skip":
                    committer.skipped(item)
                elif tag == "failure":
                    committer.failed(item, item.error)
                elif tag == "start":
                    slot = None
                    current["uri"] = item.entry.uri
                elif tag == "msg":
                    on_message(item, *payload)
                elif tag == _ERROR:
                    on_error(item, payload)
                elif tag == _END:
                    finish_ready()
                elif tag == _IDLE and queue.size >= min(EAGER_MIN_FRAMES, encoder.batch_size):
                    encode_queue()
    encode_queue()
    finish_ready()
    return committer.close()


class _Prefetch:
    """Runs triage and the decoder on a background thread; yields (tag, item, payload) in order.

    Tags: "skip" / "failure" (triage's verdicts), "start" (a video begins), "msg" (one decoder
    message), "error" (the video failed: payload is the reason), "end" (the video is over),
    "idle" (nothing decoded is ready: the next message will block).
    The queue holds at most `max_frames` decoded frames (one larger chunk may pass when it is
    empty) and MAX_QUEUED_MESSAGES messages, so decoding runs at most that far ahead.
    """

    def __init__(self, items, decoder, sampling, decode, geometry, max_frames: int):
        self._items, self._decoder = items, decoder
        self._job = (sampling, decode, geometry)
        self.max_frames = int(max_frames)
        self._q: queue_mod.Queue = queue_mod.Queue()  # bounded by the credit counters below
        self._room = threading.Condition()
        self._frames = 0  # decoded frames queued
        self._messages = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="vidclip-decode", daemon=True)

    def _put(self, message) -> bool:
        n = _frames_in(message)
        with self._room:
            while not self._stop.is_set() and (
                (self._frames and self._frames + n > self.max_frames) or self._messages >= MAX_QUEUED_MESSAGES
            ):
                self._room.wait(0.2)
            if self._stop.is_set():
                return False
            self._frames += n
            self._messages += 1
        self._q.put((message, n))
        return True

    def _take(self):
        message, n = self._q.get()
        with self._room:
            self._frames -= n
            self._messages -= 1
            self._room.notify()
        return message

    def _tagged(self):
        """Triage's verdicts and each video's decoder messages, tagged, in order."""
        for item in self._items:
            if isinstance(item, Skip):
                yield "skip", item, None
            elif isinstance(item, Failure):
                yield "failure", item, None
            else:
                yield "start", item, None
                try:
                    for message in self._decoder.run(item.entry.uri, *self._job):
                        yield "msg", item, message
                except MediaError as exc:
                    yield _ERROR, item, exc.reason
                yield _END, item, None

    def _produce(self) -> None:
        messages = self._tagged()
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
        if self.max_frames > 0:
            self._thread.start()
        return self

    def __iter__(self):
        if self.max_frames <= 0:
            yield from self._tagged()
            return
        while True:
            if self._q.empty():
                yield _IDLE, None, None  # the consumer may use the wait (encode a partial batch)
            tag, item, payload = self._take()
            if tag == _EOF:
                return
            if tag == _FATAL:
                raise payload
            yield tag, item, payload

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._room:
            self._room.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
        if self._thread.is_alive():
            # The producer is blocked inside the decoder (a stall, or Ctrl-C during a long decode):
            # end the decoder so the producer returns; an inline decoder cannot be ended, and its
            # daemon thread is left to the process's exit.
            kill = getattr(self._decoder, "kill", None)
            if kill is not None:
                kill()
                self._thread.join(timeout=30)


def _frames_in(message) -> int:
    """Decoded frames a prefetch message carries (only decoder CHUNK messages carry any)."""
    tag, _, payload = message
    if tag == "msg" and payload[0] == CHUNK:
        return len(payload[1].position)
    return 0
