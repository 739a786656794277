"""Exact nearest-neighbour search over an in-memory copy of a segment table's vectors.

LanceDB's flat (exact) search reads and scores the whole vector column on every query: about
270 ms at 100k 512-d clips on the 2-core dev machine, while one BLAS matrix-vector product over the
same matrix held in RAM takes about 10 ms (benchmarks/query_cpu.json).  For a table without an ANN index
the store therefore keeps the float32 vectors (as a (D, N) torch tensor) and the few columns a hit
needs in memory, loaded on first use and reloaded whenever the table's version changes (any commit,
from any process).  The result is the same rows and `_distance` (1 - dot) LanceDB would return, so
callers cannot tell the two paths apart except by speed.  At most MAX_TABLES tables are held (the
clip and the whole-video level): after a reindex switches tables, the old copies are dropped.

The copy costs N x D x 4 bytes (200 MB at 100k clips of 512-d); a table larger than `max_bytes`
stays on LanceDB's own flat scan, and above `vidclip.store.index.EXACT_THRESHOLD` rows `vidclip index`
moves it to an IVF index instead.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: ~520k clip vectors of 512-d, ~350k of 768-d
MAX_TABLES = 2


class ExactIndex:
    """Per-table in-memory matrices for exact top-k by dot product (vectors are normalised)."""

    def __init__(self, columns: list[str], max_bytes: int = DEFAULT_MAX_BYTES):
        self.columns = list(columns)  # the non-vector columns a search returns
        self.max_bytes = int(max_bytes)
        self._loaded: dict[str, tuple] = {}  # name -> (version, rows, (D, N) torch tensor)
        self._lock = threading.Lock()
        self._sized: dict[str, tuple[int, int]] = {}  # table name -> (version, bytes) at the last check

    def fits(self, tbl, version: int | None = None) -> bool:
        """Whether the table's vectors fit the budget (counted once per table version)."""
        if self.max_bytes <= 0:
            return False
        version = tbl.version if version is None else version
        sized = self._sized.get(tbl.name)
        if sized is None or sized[0] != version:
            dim = tbl.schema.field("vector").type.list_size
            sized = self._sized[tbl.name] = (version, tbl.count_rows() * dim * 4)
        return sized[1] <= self.max_bytes

    def _matrix(self, tbl, version: int):
        """(rows, (D, N) float32 torch tensor) for the table at `version` (or newer)."""
        name = tbl.name
        with self._lock:
            entry = self._loaded.get(name)
            if entry is None or entry[0] != version:
                self._loaded.pop(name, None)  # free the old copy before reading the new one
                # A commit landing between the version check and this read only causes one extra
                # reload later (the rows are at least as new as `version`), never stale results.
                while len(self._loaded) >= MAX_TABLES:  # the least recently used goes first
                    self._loaded.pop(next(iter(self._loaded)))
                entry = (version, *self._read(tbl))
            self._loaded.pop(name, None)
            self._loaded[name] = entry  # most recently used last
            return entry[1], entry[2]

    def _read(self, tbl):
        import torch

        from vidclip.store.schema import vectors_of

        dim = tbl.schema.field("vector").type.list_size
        metas, chunks = [], []
        for batch in tbl.search().select([*self.columns, "vector"]).limit(None).to_batches(1 << 16):
            chunks.append(np.ascontiguousarray(vectors_of(batch.column("vector")).T))  # (D, n)
            metas.append(batch.drop_columns(["vector"]))
        # Stored transposed: a (1, D) @ (D, N) product streams the matrix row by row (8.7 ms at 100k
        # on one core, as fast as numpy's BLAS), where torch.mv over (N, D) took 17 ms.  torch, not
        # numpy: numpy's OpenBLAS threads keep spinning after a call and halved the speed of the
        # text tower's torch threads that run right before the next query (74 vs 35 ms).
        matrix = torch.from_numpy(np.concatenate(chunks, axis=1) if chunks else np.zeros((dim, 0), np.float32))
        schema = pa.schema([f for f in tbl.schema if f.name in self.columns])
        rows = pa.Table.from_batches(metas, schema=schema).combine_chunks() if metas else schema.empty_table()
        return rows, matrix

    def search(self, tbl, vector: np.ndarray, limit: int, video_ids: set[str] | None = None) -> pa.Table | None:
        """The `limit` rows with the largest dot product with `vector` (D,), best first, as LanceDB
        returns them: `self.columns` + `_distance` (1 - dot).  `video_ids` restricts the rows.
        None when the table does not fit the budget (the caller asks LanceDB instead)."""
        import torch

        version = tbl.version
        if not self.fits(tbl, version):
            return None
        rows, matrix = self._matrix(tbl, version)
        query = torch.from_numpy(np.array(vector, dtype=np.float32))  # (D,)
        scores = (query[None] @ matrix)[0].numpy()  # (N,)
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


class VideoDirectory:
    """video_id -> uri of the committed ("ok") videos, in memory, reloaded whenever the videos
    table's version changes.  Search needs only that to turn ranked clip rows into hits; a LanceDB
    lookup of 40 candidate ids costs ~7 ms of fixed query overhead, this a dict lookup.  About 200
    bytes per video; a table beyond the budget is left to LanceDB lookups."""

    BYTES_PER_VIDEO = 200

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._version: int | None = None
        self._uris: dict[str, str] | None = None
        self._lock = threading.Lock()

    def lookup(self, tbl, video_ids, ok_status: str) -> dict[str, dict] | None:
        """{video_id: {"uri": ...}} for the ok ones among `video_ids`, or None when the table is
        over budget (the caller then asks LanceDB)."""
        version = tbl.version
        with self._lock:
            if self._version != version:
                self._uris = None
                if self.max_bytes > 0 and tbl.count_rows() * self.BYTES_PER_VIDEO <= self.max_bytes:
                    quoted = "'" + ok_status.replace("'", "''") + "'"
                    data = tbl.search().where(f"status = {quoted}").select(["video_id", "uri"]).limit(None).to_arrow()
                    self._uris = dict(zip(data.column("video_id").to_pylist(), data.column("uri").to_pylist()))
                self._version = version
            uris = self._uris
        if uris is None:
            return None
        return {v: {"video_id": v, "uri": uris[v]} for v in video_ids if v in uris}

    def clear(self) -> None:
        with self._lock:
            self._version, self._uris = None, None
