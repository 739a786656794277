"""Concurrent text queries share one forward pass of the text tower.

The first request to arrive while the model is idle becomes the leader: it encodes every text
waiting at that moment as one batch, then the texts that arrived during that pass, and so on
until none is waiting.  The others wait for their own vector.  One client gets one pass of one
text; sixteen clients get a few passes of many texts, never sixteen passes of one.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable

import numpy as np

MAX_BATCH = 64


class TextBatcher:
    def __init__(self, encode: Callable[[list[str]], np.ndarray], max_batch: int = MAX_BATCH):
        self._encode = encode  # list of n texts -> (n, D) normalised vectors
        self._max = max_batch
        self._lock = threading.Lock()
        self._pending: list[tuple[str, Future]] = []
        self._busy = False
        self.passes = 0  # forward passes run (for the benchmark's report)
        self.texts = 0

    def embed(self, text: str) -> np.ndarray:
        """The (D,) vector of one text, encoded in a batch with whatever else is waiting."""
        done: Future = Future()
        with self._lock:
            self._pending.append((text, done))
            lead = not self._busy
            self._busy = True
        if lead:
            self._drain()
        return done.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                if not batch:
                    self._busy = False
                    return
            try:
                vectors = self._encode([t for t, _ in batch])  # (n, D)
            except BaseException as exc:  # each waiting request gets the error, the leader goes on
                for _, f in batch:
                    f.set_exception(exc)
                continue
            self.passes += 1
            self.texts += len(batch)
            for (_, f), v in zip(batch, vectors):
                f.set_result(v)
