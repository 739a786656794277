"""Vector indexes on the segment tables (clip and whole-video vectors), chosen from the table size.

Below `EXACT_THRESHOLD` rows a table stays on exact (flat) search: a full scan is fast enough there
(see benchmarks/query_cpu.json) and recall is 1.0 by construction.  Above it, an IVF index is trained
with num_partitions ~ sqrt(N), and the query-time `nprobes` (and `refine_factor` for quantised
index types) are *calibrated on the table itself*: the smallest setting whose recall@10 against
exact search reaches `TARGET_RECALL` on perturbed stored vectors.  The result is recorded in store
meta under "index" (one entry per table name), where `query_options` reads it back.

Rows added after the index was built are still found: LanceDB scans unindexed fragments with a flat
search and merges them with the index results.  That scan grows with the unindexed share, so
`index_status` reports it; re-run `vidclip index` when `needs_reindex` says so (unindexed share above
`REINDEX_UNINDEXED_FRACTION`, or the table has grown past `REINDEX_GROWTH` x its size at build
time, when sqrt(N) partitions no longer fit).  A reindex writes new tables: they start exact.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from vidclip.store.schema import vectors_of

log = logging.getLogger("vidclip")

EXACT_THRESHOLD = 20_000  # rows: exact p50 16 ms at 10k but ~1 s at 100k on this (shared, loaded) box, IVF_FLAT 7 ms @ recall 0.99 (benchmarks/query_cpu.json)
DEFAULT_INDEX_TYPE = "IVF_FLAT"  # best recall/latency here (benchmarks/query_cpu.json, "index_types")
TARGET_RECALL = 0.95
# Calibration aims higher than the target: 48 calibration queries are a noisy estimate, and a
# setting that just reaches 0.95 on them measured 0.9475 on held-out queries (tests/test_index.py).
CALIBRATION_TARGET = 0.97
REINDEX_UNINDEXED_FRACTION = 0.10
REINDEX_GROWTH = 2.0
INDEX_NAME = "vector_idx"  # LanceDB's default name for an index on the "vector" column
NPROBES_LADDER = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
REFINE_LADDER = (None, 5, 10, 20, 40)
CALIBRATION_QUERIES = 48
K = 10


@dataclass
class TableIndex:
    """What `vidclip index` did to (or found on) one table."""

    level: str
    table: str
    rows: int
    mode: str  # "exact" or "ann"
    index_type: str | None = None
    metric: str = "dot"
    num_partitions: int | None = None
    num_sub_vectors: int | None = None
    nprobes: int | None = None
    refine_factor: int | None = None
    recall_at_10: float | None = None  # measured on this table at build time
    rows_at_build: int | None = None
    indexed_rows: int | None = None
    unindexed_rows: int | None = None
    needs_reindex: bool = False
    build_s: float | None = None
    note: str = ""


@dataclass
class IndexReport:
    threshold: int
    tables: list[TableIndex] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "tables": [asdict(t) for t in self.tables]}


# -- parameters -------------------------------------------------------------------------------------
def create_vector_index(tbl, params: dict) -> None:
    """Build the index `params` (from index_params) describes, through LanceDB's config objects."""
    from lancedb.index import IvfFlat, IvfHnswSq, IvfPq

    kind = params["index_type"]
    common = {"distance_type": params["metric"], "num_partitions": params["num_partitions"]}
    if kind == "IVF_FLAT":
        config = IvfFlat(**common)
    elif kind == "IVF_PQ":
        config = IvfPq(**common, num_sub_vectors=params["num_sub_vectors"])
    elif kind == "IVF_HNSW_SQ":
        config = IvfHnswSq(**common)
    else:
        raise ValueError(f"unsupported index type {kind!r}")
    tbl.create_index(params.get("vector_column_name", "vector"), config=config, replace=True)


def index_params(n_rows: int, dim: int, index_type: str = DEFAULT_INDEX_TYPE) -> dict:
    """create_index arguments for a table of n_rows vectors of dimension dim."""
    partitions = max(1, min(int(round(math.sqrt(n_rows))), n_rows // 32 or 1))  # >= ~32 rows per partition
    params = {"metric": "dot", "index_type": index_type, "num_partitions": partitions, "vector_column_name": "vector"}
    if "PQ" in index_type:
        # 8 dims per sub-vector (dim 512 -> 64 sub-vectors, 64 bytes per vector); must divide dim.
        sub = next(s for s in (dim // 8, dim // 16, dim // 4, dim // 2, 1) if s >= 1 and dim % s == 0)
        params["num_sub_vectors"] = sub
    return params


def _exact(tbl, queries: np.ndarray, k: int = K) -> list[set]:
    out = []
    for q in queries:
        res = tbl.search(q).distance_type("dot").bypass_vector_index().limit(k).with_row_id(True).select(["_distance"]).to_arrow()
        out.append(set(res.column("_rowid").to_pylist()))
    return out


def _ann(tbl, queries: np.ndarray, nprobes: int, refine: int | None, k: int = K) -> list[set]:
    out = []
    for q in queries:
        query = tbl.search(q).distance_type("dot").nprobes(nprobes).limit(k).with_row_id(True).select(["_distance"])
        if refine:
            query = query.refine_factor(refine)
        out.append(set(query.to_arrow().column("_rowid").to_pylist()))
    return out


def recall(truth: list[set], found: list[set]) -> float:
    return float(np.mean([len(t & f) / max(1, len(t)) for t, f in zip(truth, found)]))


def calibration_queries(tbl, n: int = CALIBRATION_QUERIES, seed: int = 0) -> np.ndarray:
    """Query-like vectors near the data: stored vectors perturbed by noise of the same norm
    (cosine ~0.7 to their source) and midpoints of two stored vectors, L2-normalised."""
    rng = np.random.default_rng(seed)
    rows = tbl.count_rows()
    take = np.sort(rng.choice(rows, size=min(rows, 2 * n), replace=False))
    vecs = vectors_of(tbl.take_offsets([int(i) for i in take]).select(["vector"]).to_arrow().column("vector"))
    vecs = vecs[rng.permutation(len(vecs))]
    half = len(vecs) // 2
    a, b = vecs[:half], vecs[half:2 * half]
    noise = rng.standard_normal(a.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = np.concatenate([a[: half // 2] + noise[: half // 2], a[half // 2:] + b[half // 2:]])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def calibrate(tbl, index_type: str, num_partitions: int, queries: np.ndarray | None = None,
              target: float = CALIBRATION_TARGET) -> tuple[int, int | None, float]:
    """Smallest (nprobes, refine_factor) reaching `target` recall@10 vs exact; the best found otherwise."""
    queries = calibration_queries(tbl) if queries is None else queries
    truth = _exact(tbl, queries)
    refines = REFINE_LADDER if ("PQ" in index_type or "SQ" in index_type) else (None,)
    best = (num_partitions, refines[-1], 0.0)
    for nprobes in sorted({min(p, num_partitions) for p in NPROBES_LADDER}):
        for refine in refines:
            r = recall(truth, _ann(tbl, queries, nprobes, refine))
            if r >= target:
                return nprobes, refine, r
            if r > best[2]:
                best = (nprobes, refine, r)
    return best


# -- building ---------------------------------------------------------------------------------------
def _stats(tbl) -> tuple[int | None, int | None]:
    try:
        st = tbl.index_stats(INDEX_NAME)
    except Exception:  # noqa: BLE001 - no index / older table layout
        return None, None
    if st is None:
        return None, None
    return int(st.num_indexed_rows), int(st.num_unindexed_rows)


def build_table_index(store, level: str, threshold: int = EXACT_THRESHOLD, force: bool = False,
                      index_type: str = DEFAULT_INDEX_TYPE) -> TableIndex:
    name = store.segments[level]
    rows = store.count(name)
    if not store.has_table(name) or rows == 0:
        return TableIndex(level, name, rows, "exact", note="empty table: exact search")
    tbl = store.table(name)
    if rows < threshold and not force:
        if _stats(tbl)[0] is not None:
            tbl.drop_index(INDEX_NAME)  # an old index on a shrunk table would only cost recall
        return TableIndex(level, name, rows, "exact",
                          note=f"{rows} rows < threshold {threshold}: exact (flat) search")
    dim = tbl.schema.field("vector").type.list_size
    params = index_params(rows, dim, index_type)
    t0 = time.perf_counter()
    create_vector_index(tbl, params)
    build_s = time.perf_counter() - t0
    nprobes, refine, r = calibrate(tbl, index_type, params["num_partitions"])
    # Safety factor: calibration queries are a proxy for real ones (held-out recall measured up to
    # 0.02-0.03 below the calibration estimate in tests/test_index.py); doubling nprobes on an
    # IVF_FLAT index costs ~2x of a few-ms search.
    nprobes = min(params["num_partitions"], 2 * nprobes)
    indexed, unindexed = _stats(tbl)
    entry = TableIndex(
        level, name, rows, "ann", index_type=index_type, num_partitions=params["num_partitions"],
        num_sub_vectors=params.get("num_sub_vectors"), nprobes=nprobes, refine_factor=refine,
        recall_at_10=round(r, 4), rows_at_build=rows, indexed_rows=indexed, unindexed_rows=unindexed,
        build_s=round(build_s, 2),
        note=("" if r >= TARGET_RECALL else f"recall@10 {r:.3f} below {TARGET_RECALL} even at the largest setting"),
    )
    return entry


def build_index(store, threshold: int = EXACT_THRESHOLD, force: bool = False,
                index_type: str = DEFAULT_INDEX_TYPE) -> IndexReport:
    """Index the clip and whole-video tables (or leave them exact) and record the choice in meta."""
    with store.writing("index"):
        return _build_index(store, threshold, force, index_type)


def _build_index(store, threshold: int, force: bool, index_type: str) -> IndexReport:
    report = IndexReport(threshold)
    for level in ("clip", "video"):
        report.tables.append(build_table_index(store, level, threshold, force, index_type))
    recorded = dict(store.meta.get("index") or {})
    for t in report.tables:
        recorded[t.table] = {k: v for k, v in asdict(t).items()
                             if k in ("mode", "index_type", "metric", "num_partitions", "num_sub_vectors",
                                      "nprobes", "refine_factor", "recall_at_10", "rows_at_build")}
    live = set(store.segments.values())
    store.set_meta({"index": {k: v for k, v in recorded.items() if k in live}})
    return report


# -- reading ----------------------------------------------------------------------------------------
def query_options(store, table_name: str) -> dict:
    """Query-time settings for `table_name`: {} for exact search, else {"nprobes", "refine_factor"}."""
    entry = (store.meta.get("index") or {}).get(table_name)
    if not entry or entry.get("mode") != "ann":
        return {}
    return {"nprobes": entry.get("nprobes"), "refine_factor": entry.get("refine_factor")}


def index_status(store) -> IndexReport:
    """Per table: indexed / unindexed rows and whether a reindex is due."""
    recorded = store.meta.get("index") or {}
    report = IndexReport(EXACT_THRESHOLD)
    for level in ("clip", "video"):
        name = store.segments[level]
        rows = store.count(name)
        entry = recorded.get(name) or {}
        indexed, unindexed = _stats(store.table(name)) if rows else (None, None)
        t = TableIndex(level, name, rows, "ann" if indexed is not None else "exact",
                       index_type=entry.get("index_type"), num_partitions=entry.get("num_partitions"),
                       num_sub_vectors=entry.get("num_sub_vectors"), nprobes=entry.get("nprobes"),
                       refine_factor=entry.get("refine_factor"), recall_at_10=entry.get("recall_at_10"),
                       rows_at_build=entry.get("rows_at_build"), indexed_rows=indexed, unindexed_rows=unindexed)
        reasons = []
        if indexed is not None:
            if unindexed and unindexed > REINDEX_UNINDEXED_FRACTION * rows:
                reasons.append(f"{unindexed} of {rows} rows unindexed (> {REINDEX_UNINDEXED_FRACTION:.0%})")
            if t.rows_at_build and rows > REINDEX_GROWTH * t.rows_at_build:
                reasons.append(f"table grew {rows / t.rows_at_build:.1f}x since the index was trained")
        elif rows >= EXACT_THRESHOLD:
            reasons.append(f"{rows} rows >= threshold {EXACT_THRESHOLD} and no index")
        t.needs_reindex = bool(reasons)
        t.note = "; ".join(reasons) + ("; run 'vidclip index'" if reasons else "")
        report.tables.append(t)
    return report
