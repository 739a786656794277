"""The in-process ingestion loop: every stage of ingest.py chained in one process.

It is the debugging/test path and the fallback when Ray is not wanted.  Frames
from many videos share each encoder batch; finished videos are committed in bulk.
Memory is bounded by one decode chunk plus one encoder batch plus the frame
vectors of the videos in flight (a few KB per sampled frame).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vidclip.config import DecodeConfig, SamplingConfig
from vidclip.errors import MediaError
from vidclip.ingest import (
    Failure,
    IngestReport,
    Skip,
    VideoFacts,
    Work,
    failed_row,
    finish_video,
    source_row,
    triage,
)
from vidclip.geometry import FrameGeometry
from vidclip.sandbox import CHUNK, FACTS, make_decoder
from vidclip.store import FAILED, OK, Batch, Store

log = logging.getLogger("vidclip")


@dataclass(frozen=True)
class CommitPolicy:
    """When the committer flushes: whichever limit is reached first."""

    max_videos: int = 64
    max_frames: int = 50_000


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
    started = time.perf_counter()
    report = IngestReport()
    repaired = store.repair()
    if repaired:
        log.info("repaired %d video(s) left half-written by an interrupted ingest", repaired)
    store.ensure_vector_tables(encoder.dim)
    batch = Batch.empty()
    queue = _Queue()
    in_flight: list[_Slot] = []
    bar = _progress(progress, total)

    def flush_commit(force: bool = False) -> None:
        nonlocal batch
        if len(batch) and (force or len(batch) >= commit.max_videos or batch.n_rows >= commit.max_frames):
            store.commit(batch)
            batch = Batch.empty()

    def record_failure(video_id: str, entry, error: str, replaces: str | None) -> None:
        report.add_failure(entry.uri, error)
        batch.videos.append(failed_row(video_id, entry, error))
        batch.sources.append(source_row(entry, video_id, FAILED))
        if replaces:
            batch.replaced.append(replaces)
        bar.update(1)

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
                    record_failure(slot.work.video_id, slot.work.entry, exc.reason, slot.work.replaces)
                    continue
                batch.videos.append(rows.video)
                batch.sources.append(source_row(slot.work.entry, slot.work.video_id, OK))
                if slot.work.replaces:
                    batch.replaced.append(slot.work.replaces)
                batch.frames.append(rows.frames)
                batch.clips.append(rows.clips)
                batch.video_vectors.append(rows.video_vector)
                report.ok += 1
                report.frames += rows.frames.num_rows
                report.clips += rows.n_clips
                bar.update(1)
        flush_commit()

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
        bar.set_postfix_str(_rate(report, started), refresh=False)
        finish_ready()

    def handle(item) -> None:
        if isinstance(item, Skip):
            report.skipped += 1
            if item.source_row is not None:
                batch.sources.append(item.source_row)
            if item.replaces:
                batch.replaced.append(item.replaces)
            bar.update(1)
            return
        if isinstance(item, Failure):
            record_failure(item.video_id, item.entry, item.error, item.replaces)
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
            record_failure(item.video_id, item.entry, exc.reason, item.replaces)
            return
        finish_ready()

    geometry = FrameGeometry.of_model(encoder.model)
    with make_decoder(decode.job, decode.timeout_s, decode.isolate) as decoder:
        for item in triage(entries, store.sources(), store.video_status(), retry_failed):
            handle(item)
    encode_queue()
    finish_ready()
    flush_commit(force=True)
    bar.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _rate(report: IngestReport, started: float) -> str:
    elapsed = max(time.perf_counter() - started, 1e-9)
    return f"ok={report.ok} failed={report.failed} {report.frames / elapsed:.1f} frames/s"


def _progress(enabled: bool, total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", disable=not enabled or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
