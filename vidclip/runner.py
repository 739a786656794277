"""The in-process ingestion loop: every stage of ingest.py chained in one process.

It is the debugging/test path and the fallback when Ray is not wanted.  Frames
from many videos share each encoder batch; finished videos are committed in bulk.
Memory is bounded by one decode chunk plus one encoder batch plus the frame
vectors of the videos in flight (a few KB per sampled frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vidclip.config import DecodeConfig, SamplingConfig
from vidclip.errors import MediaError
from vidclip.committer import CommitPolicy, Committer
from vidclip.ingest import Failure, IngestReport, Skip, VideoFacts, Work, finish_video, triage
from vidclip.geometry import FrameGeometry
from vidclip.sandbox import CHUNK, FACTS, make_decoder
from vidclip.store import Store

log = logging.getLogger("vidclip")


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
) -> IngestReport:
    repaired = store.repair()
    if repaired:
        log.info("repaired %d video(s) left half-written by an interrupted ingest", repaired)
    store.ensure_vector_tables(encoder.dim)
    committer = Committer(store, commit, progress, total)
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

    def handle(item) -> None:
        if isinstance(item, Skip):
            committer.skipped(item)
            return
        if isinstance(item, Failure):
            committer.failed(item, item.error)
            return
        slot = None
        try:
            for kind, payload in decoder.run(item.entry.uri, sampling, decode, geometry):
                if kind == FACTS:
                    k = len(payload.plan.frame_index)
                    slot = _Slot(item, payload, np.zeros((k, encoder.dim), np.float32), np.zeros(k, bool))
                    in_flight.append(slot)
                elif kind == CHUNK:
                    queue.slots.append(slot)
                    queue.positions.append(payload.position)
                    queue.frames.extend(payload.frames)
                    queue.size += len(payload.position)
                    slot.queued += len(payload.position)
                    if queue.size >= encoder.batch_size:
                        encode_queue()
                else:
                    slot.decoder, slot.note, slot.decoded = payload["decoder"], payload["note"], True
        except MediaError as exc:
            if slot is not None:
                slot.failed = exc.reason
            committer.failed(item, exc.reason)
            return
        finish_ready()

    geometry = FrameGeometry.of_model(encoder.model)
    with make_decoder(decode.job, decode.timeout_s, decode.isolate) as decoder:
        for item in triage(entries, store.sources(), store.video_status(), retry_failed):
            handle(item)
    encode_queue()
    finish_ready()
    return committer.close()
