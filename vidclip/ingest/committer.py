"""The single committer: collects finished and failed videos, writes them to the store in bulk,
and keeps the job's report.  Used by the in-process runner and by the Ray driver alike."""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass

from vidclip.ingest.video import Failure, IngestReport, Skip, VideoRows, Work, failed_row, source_row
from vidclip.store.store import Batch, Store
from vidclip.store.schema import FAILED, OK

log = logging.getLogger("vidclip")


@dataclass(frozen=True)
class CommitPolicy:
    """When the committer flushes: whichever limit is reached first."""

    max_videos: int = 64
    max_frames: int = 50_000


class Committer:
    @classmethod
    def begin(cls, store: Store, dim: int, policy: CommitPolicy, progress: bool, total: int | None) -> "Committer":
        """Start an ingest: repair what an interrupted one left, make sure the tables exist."""
        repaired = store.repair()
        if repaired:
            log.info("repaired %d video(s) left half-written by an interrupted ingest", repaired)
        store.ensure_vector_tables(dim)
        store.ensure_lookup_indexes()
        return cls(store, policy, progress, total)

    def __init__(self, store: Store, policy: CommitPolicy = CommitPolicy(), progress: bool = True, total: int | None = None):
        self.store = store
        self.policy = policy
        self.report = IngestReport()
        self.batch = Batch.empty()
        self.started = time.perf_counter()
        self.bar = _progress(progress, total)
        self.commits = 0
        self.committed_videos = 0  # videos (ok or failed) whose rows this run has committed
        self._clock: float | None = None  # when the first video was decoded (the bar's rates start there)
        self._frames_at_clock = 0
        self._writer = _Writer(store, self)

    # -- outcomes -----------------------------------------------------------------------------------
    def skipped(self, item: Skip) -> None:
        self.report.skipped += 1
        if item.source_row is not None:
            self.batch.sources.append(item.source_row)
        if item.replaces:
            self.batch.replaced.append(item.replaces)
        self._tick(work=False)

    def failed(self, item: Work | Failure, error: str) -> None:
        entry = item.entry
        self.report.add_failure(entry.uri, error)
        self.batch.videos.append(failed_row(item.video_id, entry, error))
        self.batch.sources.append(source_row(entry, item.video_id, FAILED))
        if item.replaces:
            self.batch.replaced.append(item.replaces)
        self._tick()

    def finished(self, work: Work, rows: VideoRows) -> None:
        b = self.batch
        b.videos.append(rows.video)
        b.sources.append(source_row(work.entry, work.video_id, OK))
        b.frames.append(rows.frames)
        b.clips.append(rows.clips)
        b.video_vectors.append(rows.video_vector)
        if work.replaces:
            b.replaced.append(work.replaces)
        self.report.ok += 1
        self.report.frames += rows.frames.num_rows
        self.report.clips += rows.n_clips
        self._tick()

    # -- writing ------------------------------------------------------------------------------------
    def flush(self, force: bool = False) -> None:
        b = self.batch
        if len(b) and (force or len(b.videos) >= self.policy.max_videos or b.n_rows >= self.policy.max_frames):
            self._writer.submit(b)
            self.batch = Batch.empty()
            self.commits += 1

    def close(self) -> IngestReport:
        self.flush(force=True)
        self._writer.wait()
        self.bar.close()
        if self.commits:
            # Every commit leaves small fragments and rows the indexes do not cover yet; one
            # compaction per run keeps scans and lookups fast.
            self.store.optimize()
        self.report.seconds = round(time.perf_counter() - self.started, 3)
        return self.report

    def _tick(self, work: bool = True) -> None:
        r = self.report
        now = time.perf_counter()
        if work and self._clock is None:
            # The first video actually decoded: rates and the ETA count from here, not from the
            # start-up (a local Ray's workers importing torch) nor from the skipped files before it.
            self._clock, self._frames_at_clock = now, r.frames
            if not self.bar.disable:
                self.bar.initial, self.bar.start_t = self.bar.n, self.bar._time()
        self.bar.update(1)
        if self._clock is not None and now > self._clock:
            rate = (r.frames - self._frames_at_clock) / (now - self._clock)
            self.bar.set_postfix_str(f"ok={r.ok} failed={r.failed} {rate:.1f} frames/s", refresh=False)
        self.flush()


class _Writer:
    """Commits on a thread of their own, one batch at a time: the next batch is assembled (decoded
    rows unpacked, clips aggregated) while the previous one is written, and LanceDB's writes, which
    release the GIL, overlap with that work.  Still one writer: a batch is handed over only when the
    previous commit has finished (so at most two batches are in memory), and its failure is raised
    in the caller at the next hand-over or at `wait`.  A process that dies mid-commit leaves what
    every interrupted commit leaves: pending rows that the next run repairs."""

    def __init__(self, store: Store, committer: "Committer"):
        self._store, self._committer = store, committer
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, batch: Batch) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._commit, args=(batch,), name="vidclip-commit", daemon=True)
        self._thread.start()

    def _commit(self, batch: Batch) -> None:
        try:
            self._store.commit(batch)
            self._committer.committed_videos += len(batch.videos)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by wait()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _progress(enabled: bool, total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", disable=not enabled or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
