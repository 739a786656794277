"""Exact nearest-neighbour search over an in-memory copy of a segment table's vectors.

LanceDB's flat (exact) search reads and scores the whole vector column on every query: about
270 ms at 100k 512-d clips on the 2-core dev machine, while one BLAS matrix-vector product over the
same matrix held in RAM takes about 10 ms (bench/query_cpu.json).  For a table without an ANN index
the store therefore keeps (N, D) float32 vectors plus the few columns a hit needs in memory, loaded
on first use and reloaded whenever the table's version changes (any commit, from any process).  The
result is the same rows and `_distance` (1 - dot) LanceDB would return, so callers cannot tell the
two paths apart except by speed.

The copy costs N x D x 4 bytes (200 MB at 100k clips of 512-d); a table larger than `max_bytes`
stays on LanceDB's own flat scan, and above `vidclip.index.EXACT_THRESHOLD` rows `vidclip index`
moves it to an IVF index instead.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: ~520k clip vectors of 512-d, ~350k of 768-d


class ExactIndex:
    """Per-table in-memory matrices for exact top-k by dot product (vectors are normalised)."""

    def __init__(self, columns: list[str], max_bytes: int = DEFAULT_MAX_BYTES):
        self.columns = list(columns)  # the non-vector columns a search returns
        self.max_bytes = int(max_bytes)
        self._loaded: dict[str, tuple[int, pa.Table, np.ndarray]] = {}  # name -> (version, rows, (N, D))
        self._lock = threading.Lock()

    def fits(self, tbl) -> bool:
        dim = tbl.schema.field("vector").type.list_size
        return self.max_bytes > 0 and tbl.count_rows() * dim * 4 <= self.max_bytes

    def _matrix(self, name: str, tbl) -> tuple[pa.Table, np.ndarray]:
        from vidclip.store import vectors_of

        version = tbl.version
        with self._lock:
            entry = self._loaded.get(name)
            if entry is None or entry[0] != version:
                self._loaded.pop(name, None)  # free the old copy before reading the new one
                # A commit landing between the version check and this read only causes one extra
                # reload later (the rows are at least as new as `version`), never stale results.
                data = tbl.search().select([*self.columns, "vector"]).limit(None).to_arrow()
                matrix = np.ascontiguousarray(vectors_of(data.column("vector")))  # (N, D)
                entry = (version, data.drop_columns(["vector"]).combine_chunks(), matrix)
                self._loaded[name] = entry
            return entry[1], entry[2]

    def search(self, name: str, tbl, vector: np.ndarray, limit: int, video_ids: set[str] | None = None) -> pa.Table:
        """The `limit` rows with the largest dot product with `vector` (D,), best first, as LanceDB
        returns them: `self.columns` + `_distance` (1 - dot).  `video_ids` restricts the rows."""
        rows, matrix = self._matrix(name, tbl)
        scores = matrix @ np.asarray(vector, dtype=np.float32)  # (N,)
        if video_ids is not None:
            keep = pc.is_in(rows.column("video_id"), value_set=pa.array(sorted(video_ids), pa.string()))
            scores = np.where(keep.to_numpy(zero_copy_only=False), scores, -np.inf)
            n = int(np.count_nonzero(np.isfinite(scores)))
        else:
            n = len(scores)
        k = min(int(limit), n)
        if k <= 0:
            return rows.slice(0, 0).append_column("_distance", pa.array([], pa.float32()))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]  # best first; ties in row order
        out = rows.take(pa.array(top))
        return out.append_column("_distance", pa.array((1.0 - scores[top]).astype(np.float32)))

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()
