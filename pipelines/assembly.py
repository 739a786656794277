"""The driver's side of the Ray job: encoder output rows -> one finished video at a time.

Rows arrive interleaved across videos, in any order, possibly twice (a retried decode task).  A
video is finished once its end row and every frame it announced have arrived; it is then
aggregated by the temporal module and handed to the committer.  No Ray here: the benchmark
`benchmarks/driver.py` drives it with synthetic rows to measure the driver's ceiling."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np

from vidclip.errors import MediaError
from vidclip.ingest.video import Work, finish_video

from pipelines.stages import END, ERROR, FRAME


@dataclass
class _Pending:
    work: Work
    vectors: dict = field(default_factory=dict)  # plan position -> (D,) float32
    facts: object = None
    done: dict | None = None


class Assembler:
    def __init__(self, work: dict[str, Work], dim: int, aggregator, temporal_name: str, max_frames: int, committer):
        self.work, self.dim = work, dim
        self.aggregator, self.temporal_name, self.max_frames = aggregator, temporal_name, max_frames
        self.committer = committer
        self.pending: dict[str, _Pending] = {}
        self.finished: set[str] = set()

    def take(self, batch: dict) -> None:
        """One batch of encoder rows (numpy columns video_id, kind, position, vector, meta)."""
        for vid, kind, pos, vec, meta in zip(batch["video_id"], batch["kind"], batch["position"], batch["vector"], batch["meta"]):
            vid = str(vid)
            if vid in self.finished:
                continue  # a retried task delivering rows of a video already committed
            p = self.pending.setdefault(vid, _Pending(self.work[vid]))
            if kind == FRAME:
                p.vectors[int(pos)] = np.frombuffer(vec, np.float32)
            elif kind == END:
                p.facts, p.done = pickle.loads(meta)
                p.done = dict(p.done, delivered=len(p.facts.plan.frame_index) - p.done["missing"])
            elif kind == ERROR:
                del self.pending[vid]
                self.finished.add(vid)
                self.committer.failed(p.work, bytes(meta).decode())
                continue
            self._complete(vid)

    def _complete(self, vid: str) -> None:
        p = self.pending[vid]
        if p.done is None or len(p.vectors) < p.done["delivered"]:
            return
        del self.pending[vid]
        self.finished.add(vid)
        facts = p.facts
        k = len(facts.plan.frame_index)
        vectors = np.zeros((k, self.dim), np.float32)  # (K, D)
        have = np.zeros(k, bool)  # (K,)
        for pos, vec in p.vectors.items():
            vectors[pos] = vec
            have[pos] = True
        try:
            rows = finish_video(p.work, facts, vectors, have, self.aggregator, self.temporal_name, self.max_frames,
                                p.done["decoder"], p.done["note"])
        except MediaError as exc:
            self.committer.failed(p.work, exc.reason)
            return
        self.committer.finished(p.work, rows)

    def unanswered(self) -> list[Work]:
        """Work items the pipeline never finished (a lost worker)."""
        return [item for vid, item in self.work.items() if vid not in self.finished]
