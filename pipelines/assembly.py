"""The driver's side of the Ray job: encoder output rows -> one finished video at a time.

Rows arrive interleaved across videos, in any order, possibly twice (a retried decode task).  A
video is finished once its end row and every frame it announced have arrived; it is then
aggregated by the temporal module and handed to the committer.  No Ray here: the benchmark
`benchmarks/driver.py` drives it with synthetic rows to measure the driver's ceiling."""

from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass, field

import numpy as np

from vidclip.errors import MediaError
from vidclip.ingest.video import Work, finish_video

from pipelines.stages import END, ERROR, FRAME


@dataclass
class _Pending:
    work: Work
    positions: list = field(default_factory=list)  # (n,) int64 plan positions, per delivery
    vectors: list = field(default_factory=list)  # (n, D) float32, per delivery
    seen: set = field(default_factory=set)  # distinct plan positions delivered (a retry may repeat some)
    facts: object = None
    done: dict | None = None


class Assembler:
    """Use as a context manager: for the job, torch runs on one thread in this (driver) process when
    the temporal module is parameter-free (mean): the driver encodes nothing and aggregates one
    video's small tensors at a time (see torch_threads).  A module with weights keeps torch's
    threads.  A pool of finishing threads was measured and dropped: on 2 cores, 2 threads gave
    218-236 videos/s against 285-290 on one (benchmarks/driver.py)."""

    def __init__(self, work: dict[str, Work], dim: int, aggregator, temporal_name: str, max_frames: int, committer):
        self.work, self.dim = work, dim
        self.aggregator, self.temporal_name, self.max_frames = aggregator, temporal_name, max_frames
        self.committer = committer
        self.pending: dict[str, _Pending] = {}
        self.finished: set[str] = set()

    def __enter__(self) -> "Assembler":
        from vidclip.model.encoder import torch_threads

        light = not any(True for _ in self.aggregator.parameters()) if hasattr(self.aggregator, "parameters") else True
        self._threads = torch_threads(1) if light else contextlib.nullcontext()
        self._threads.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._threads.__exit__(*exc)

    def take(self, batch: dict) -> None:
        """One batch of encoder rows (numpy columns video_id, kind, position, vector, meta).  Frame
        rows are unpacked a video at a time with numpy, not a row at a time: the driver's Python
        work per batch grows with the videos in it, not with its frames."""
        vids = np.asarray(batch["video_id"]).astype(str)  # (N,)
        kinds = np.asarray(batch["kind"])  # (N,)
        frames = np.flatnonzero(kinds == FRAME)  # (F,)
        touched: list[str] = []
        if len(frames):
            vectors = np.frombuffer(b"".join(batch["vector"][frames]), np.float32).reshape(len(frames), self.dim)  # (F, D)
            positions = np.asarray(batch["position"])[frames].astype(np.int64)  # (F,)
            frame_vids = vids[frames]  # (F,)
            for vid in dict.fromkeys(frame_vids.tolist()):  # each video once, in order of arrival
                if vid in self.finished:
                    continue  # a retried task delivering rows of a video already committed
                sel = frame_vids == vid
                p = self.pending.setdefault(vid, _Pending(self.work[vid]))
                p.positions.append(positions[sel])
                p.vectors.append(vectors[sel])
                p.seen.update(positions[sel].tolist())
                touched.append(vid)
        for i in np.flatnonzero(kinds != FRAME):
            vid = vids[i]
            if vid in self.finished:
                continue
            p = self.pending.setdefault(vid, _Pending(self.work[vid]))
            if kinds[i] == END:
                p.facts, p.done = pickle.loads(batch["meta"][i])
                p.done = dict(p.done, delivered=len(p.facts.plan.frame_index) - p.done["missing"])
                touched.append(vid)
            elif kinds[i] == ERROR:
                del self.pending[vid]
                self.finished.add(vid)
                self.committer.failed(p.work, bytes(batch["meta"][i]).decode())
        for vid in dict.fromkeys(touched):
            if vid in self.pending:
                self._complete(vid)

    def _complete(self, vid: str) -> None:
        p = self.pending[vid]
        if p.done is None or len(p.seen) < p.done["delivered"]:
            return
        del self.pending[vid]
        self.finished.add(vid)
        facts = p.facts
        k = len(facts.plan.frame_index)
        vectors = np.zeros((k, self.dim), np.float32)  # (K, D)
        have = np.zeros(k, bool)  # (K,)
        if p.positions:
            positions = np.concatenate(p.positions)  # (n,) a repeated position carries the same vector
            vectors[positions] = np.concatenate(p.vectors)
            have[positions] = True
        try:
            rows = finish_video(p.work, facts, vectors, have, self.aggregator, self.temporal_name, self.max_frames,
                                p.done["decoder"], p.done["note"], shots=p.done.get("shots"))
        except MediaError as exc:
            self.committer.failed(p.work, exc.reason)
            return
        self.committer.finished(p.work, rows)

    def unanswered(self) -> list[Work]:
        """Work items the pipeline never finished (a lost worker)."""
        return [item for vid, item in self.work.items() if vid not in self.finished]
