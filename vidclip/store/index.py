"""Vector indexes on the segment tables (clip and whole-video vectors), chosen from the table size.

Below `EXACT_THRESHOLD` rows a table stays on exact (flat) search: a full scan is fast enough there
(see benchmarks/query_cpu.json) and recall is 1.0 by construction.  Above it, an index of
`DEFAULT_INDEX_TYPE` is trained (IVF_RQ: 4-bit RaBitQ codes in IVF partitions, candidates re-ranked
on their exact vectors; chosen on hard, out-of-distribution data, benchmarks/ann_hard_*.json and
docs/performance.md), and the query-time settings (`nprobes`, `refine_factor`, and `ef` for HNSW)
are *calibrated on the table itself*: the fastest setting, timed on the table, whose recall@10
against exact search reaches `CALIBRATION_TARGET` on calibration queries (vidclip.store.calibration:
text prompts through the store's text tower, or perturbed stored vectors); settings from stored
vectors get a safety margin on top (`with_margin`).
The result is recorded in store meta under "index" (one entry per table name), where
`query_options` reads it back.

Rows added after the index was built are still found: LanceDB scans unindexed fragments with a flat
search and merges them with the index results.  That scan grows with the unindexed share, so
`index_status` reports it; re-run `vidclip index` when `needs_reindex` says so (unindexed share above
`REINDEX_UNINDEXED_FRACTION`, or the table has grown past `REINDEX_GROWTH` x its size at build
time, when the partitions no longer fit).  A reindex writes new tables: they start exact.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from vidclip.errors import InputError
from vidclip.store.calibration import TEXT, CalibrationSet
from vidclip.store.schema import vectors_of

log = logging.getLogger("vidclip")

EXACT_THRESHOLD = 20_000  # rows: exact p50 16 ms at 10k but ~1 s at 100k on this (shared, loaded) box, IVF_FLAT 7 ms @ recall 0.99 (benchmarks/query_cpu.json)
DEFAULT_INDEX_TYPE = "IVF_RQ"  # RaBitQ codes + exact re-rank: fastest at recall@10 >= 0.95 on hard data (benchmarks/ann_hard_*.json)
INDEX_TYPES = ("IVF_RQ", "IVF_FLAT", "IVF_PQ", "IVF_HNSW_SQ")
RQ_BITS = 4  # 1-bit codes top out below 0.95 recall on hard data even with refine 40 (benchmarks/ann_hard_100k.json)
HNSW_ROWS_PER_PARTITION = 250_000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 150
TARGET_RECALL = 0.95
# Calibration aims higher than the target: its queries are a noisy estimate, and a setting that
# just reaches 0.95 on them measured 0.9475 on held-out queries (tests/test_index.py).
CALIBRATION_TARGET = 0.97
REINDEX_UNINDEXED_FRACTION = 0.10
REINDEX_GROWTH = 2.0
INDEX_NAME = "vector_idx"  # LanceDB's default name for an index on the "vector" column
NPROBES_LADDER = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
REFINE_LADDER = (None, 1, 2, 3, 5, 10, 20)  # x CALIBRATION_LIMIT candidates re-ranked: 40 to 800
HNSW_REFINE_LADDER = (None, 1)
EF_LADDER = (64, 128, 256, 512, 1024)
K = 10
# Rows a search asks LanceDB for at k=10 (vidclip.query.search.rows_to_fetch: 4 per result, so
# that clips of one video crowding the top still leave k videos).  Calibration searches as that
# search does: recall@10 is of its first 10 rows, and the time is that request's.
CALIBRATION_LIMIT = 40


RQ_MIN_PARTITIONS = 256
RQ_ROWS_PER_PARTITION = 2048


def rq_partitions(n_rows: int) -> int:
    """IVF partitions of an IVF_RQ index on n_rows vectors: 256 up to ~500k rows, then one per 2048
    rows.  Measured on hard data with out-of-distribution queries (benchmarks/ann_hard_*.json): at
    100k, 256 partitions reach recall@10 0.966 at 5.7 ms; at 1M, 512 partitions 0.959 at 7.8 ms
    against 256 partitions' 0.957 at 8.7 ms (k=10), and in a run asking 40 rows 1024 partitions
    beat 256 (14.1 vs 15.5 ms).  More partitions also train longer (k-means cost ~ partitions^2)."""
    return max(RQ_MIN_PARTITIONS, n_rows // RQ_ROWS_PER_PARTITION)


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
    num_bits: int | None = None  # IVF_RQ
    nprobes: int | None = None
    refine_factor: int | None = None
    ef: int | None = None  # IVF_HNSW_SQ
    calibrated_limit: int | None = None  # rows asked per calibration search: refine_factor is for that many
    recall_at_10: float | None = None  # measured on this table at build time, on the calibration queries
    calibration: str | None = None  # which queries: "96 text prompts", "96 stored vectors"
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
@dataclass(frozen=True)
class Setting:
    """Query-time knobs of an index (None: not set)."""

    nprobes: int | None = None
    refine_factor: int | None = None
    ef: int | None = None  # HNSW only


def create_vector_index(tbl, params: dict) -> None:
    """Build the index `params` (from index_params) describes, through LanceDB's config objects."""
    from lancedb.index import IvfFlat, IvfHnswSq, IvfPq, IvfRq

    kind = params["index_type"]
    common = {"distance_type": params["metric"], "num_partitions": params["num_partitions"]}
    if kind == "IVF_FLAT":
        config = IvfFlat(**common)
    elif kind == "IVF_PQ":
        config = IvfPq(**common, num_sub_vectors=params["num_sub_vectors"])
    elif kind == "IVF_RQ":
        config = IvfRq(**common, num_bits=params["num_bits"])
    elif kind == "IVF_HNSW_SQ":
        config = IvfHnswSq(**common, m=params["m"], ef_construction=params["ef_construction"])
    else:
        raise ValueError(f"unsupported index type {kind!r}")
    tbl.create_index(params.get("vector_column_name", "vector"), config=config, replace=True)


def index_params(n_rows: int, dim: int, index_type: str = DEFAULT_INDEX_TYPE) -> dict:
    """create_index arguments for a table of n_rows vectors of dimension dim."""
    if index_type == "IVF_RQ":
        partitions = rq_partitions(n_rows)
    elif index_type == "IVF_HNSW_SQ":
        partitions = max(1, n_rows // HNSW_ROWS_PER_PARTITION)
    else:
        partitions = int(round(math.sqrt(n_rows)))
    partitions = max(1, min(partitions, n_rows // 32 or 1))  # >= ~32 rows per partition
    params = {"metric": "dot", "index_type": index_type, "num_partitions": partitions, "vector_column_name": "vector"}
    if "PQ" in index_type:
        # 8 dims per sub-vector (dim 512 -> 64 sub-vectors, 64 bytes per vector); must divide dim.
        sub = next(s for s in (dim // 8, dim // 16, dim // 4, dim // 2, 1) if s >= 1 and dim % s == 0)
        params["num_sub_vectors"] = sub
    if index_type == "IVF_RQ":
        params["num_bits"] = RQ_BITS
    if index_type == "IVF_HNSW_SQ":
        params.update(m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
    return params


# -- calibration ------------------------------------------------------------------------------------
def exact_neighbours(tbl, queries: np.ndarray, k: int = K, batch: int = 65_536) -> list[set]:
    """Exact top-k `_rowid`s by dot product for each query, in one streamed pass over the table
    (numpy; LanceDB's flat search would scan the whole table once per query)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)  # (Q, D)
    best_s = np.full((len(q), 0), -np.inf, np.float32)  # (Q, <=k)
    best_i = np.zeros((len(q), 0), np.uint64)  # (Q, <=k)
    reader = tbl.search().select(["vector"]).with_row_id(True).limit(None).to_batches(batch)
    for rb in reader:
        x = vectors_of(rb.column("vector"))  # (m, D)
        ids = rb.column("_rowid").to_numpy()  # (m,)
        s = q @ x.T  # (Q, m)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k] if s.shape[1] > k else np.broadcast_to(np.arange(s.shape[1]), s.shape)
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)  # (Q, <=2k)
        cand_i = np.concatenate([best_i, ids[top]], axis=1)  # (Q, <=2k)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return [set(int(i) for i in row) for row in best_i]


def search_ids(tbl, queries: np.ndarray, setting: Setting, k: int = K, limit: int = CALIBRATION_LIMIT) -> list[set]:
    """The `_rowid`s of the first k of `limit` rows each query's search returns with `setting`."""
    out = []
    limit = max(limit, k)
    for q in queries:
        query = tbl.search(q).distance_type("dot").limit(limit).with_row_id(True).select(["_distance"])
        if setting.nprobes:
            query = query.nprobes(setting.nprobes)
        if setting.refine_factor:
            query = query.refine_factor(setting.refine_factor)
        if setting.ef:
            query = query.ef(max(setting.ef, limit * (setting.refine_factor or 1)))
        out.append(set(query.to_arrow().column("_rowid").to_pylist()[:k]))
    return out


def recall(truth: list[set], found: list[set]) -> float:
    return float(np.mean([len(t & f) / max(1, len(t)) for t, f in zip(truth, found)]))


def settings_ladder(index_type: str, num_partitions: int) -> list[list[Setting]]:
    """Settings calibration may try, in groups of one search breadth (nprobes, or ef for HNSW) with
    their re-rank depths, cheapest first in both orders."""
    if index_type == "IVF_HNSW_SQ":  # few partitions, all probed; the graph's ef does the work
        return [[Setting(num_partitions, r, ef) for r in HNSW_REFINE_LADDER] for ef in EF_LADDER]
    refines = REFINE_LADDER if index_type != "IVF_FLAT" else (None,)
    probes = sorted({min(p, num_partitions) for p in NPROBES_LADDER})
    return [[Setting(p, r) for r in refines] for p in probes]


@dataclass(frozen=True)
class Trial:
    """One setting measured on the calibration queries."""

    setting: Setting
    recall: float
    seconds: float  # all calibration queries, one after another


RETIME_WITHIN = 1.25  # settings reaching the target within this factor of the fastest are timed again


def cheapest_reaching(groups: list[list[Setting]], measure: Callable[[Setting], Trial], target: float,
                      retime: Callable[[Setting], float] | None = None) -> tuple[Trial, list[Trial]]:
    """The fastest measured setting whose recall reaches `target`, and every trial made.

    Within a group, deeper re-ranking only adds time, so the walk stops at the first depth reaching
    the target, at one already slower than the fastest setting found, or at one that found no more
    neighbours than the depth before (the search breadth is what is short: at 1M rows, 64 of 512
    partitions gave 0.9365 at every depth from 40 to 800 candidates).  A group whose cheapest
    setting is already slower than that ends the walk: every broader search is slower still.  So a
    wider search without re-ranking competes with a narrower one re-ranking more candidates, by
    time: at 1M rows, (128 probes, refine 2) reached 0.97 faster than (96, refine 10), which an
    nprobes-major "first reaching" walk would pick.  Near ties (within RETIME_WITHIN) are timed
    again with `retime` and decided on both timings.  With no setting reaching the target, the
    highest recall is returned."""
    trials: list[Trial] = []
    reaching: list[Trial] = []
    for group in groups:
        fastest = min((r.seconds for r in reaching), default=math.inf)
        first = previous = None
        for setting in group:
            t = measure(setting)
            trials.append(t)
            first = first or t
            if t.recall >= target:
                reaching.append(t)
                break
            if t.seconds >= fastest or (previous is not None and t.recall <= previous.recall):
                break  # slower than a setting found, or the breadth, not the depth, is what's short
            previous = t
        if first is not None and first.seconds >= fastest:
            break
    if not reaching:
        return max(trials, key=lambda t: t.recall), trials
    fastest = min(r.seconds for r in reaching)
    near = [r for r in reaching if r.seconds <= RETIME_WITHIN * fastest]
    if retime is not None and len(near) > 1:
        near = [replace(r, seconds=r.seconds + retime(r.setting)) for r in near]
    return min(near, key=lambda t: t.seconds), trials


def refine_for(limit: int, refine_factor: int | None, calibrated_limit: int = CALIBRATION_LIMIT) -> int | None:
    """The refine factor to pass LanceDB when `limit` rows are asked with a setting calibrated at
    `calibrated_limit` rows: the same number of re-ranked candidates (calibrated_limit x
    refine_factor, at least `limit`).  A search asking for 4x the rows with the calibrated factor
    would re-rank 4x the candidates, each a random read of a raw vector, and the top K of a superset
    of the calibrated candidates is at least as good."""
    if not refine_factor:
        return refine_factor
    return max(1, math.ceil(refine_factor * calibrated_limit / max(limit, 1)))


def with_margin(setting: Setting, num_partitions: int, source: str = TEXT, calibrated_recall: float = 0.0) -> Setting:
    """The setting to record for one calibrated on `source` queries to `calibrated_recall`.

    A text-prompt calibration that reached CALIBRATION_TARGET is recorded as it is: aiming at 0.97
    where 0.95 is the target is the margin.  On hard data such settings held recall@10 0.970-0.986
    on fresh out-of-distribution queries (benchmarks/ann_hard_1m.json, "as calibrated"), and
    doubling their nprobes on top cost ~30% more time for 0.994 (docs/performance.md).
    Otherwise a margin is added: twice the nprobes (IVF) or ef (HNSW), and for stored-vector
    calibration twice the refine_factor too.  Stored-vector queries are easier than real ones in
    both knobs: IVF_RQ's 0.94 held-out against 0.97 calibrated at 1M, and an IVF_PQ index whose
    refine factor reached 0.996 on them gave 0.90 on fresh in-distribution queries
    (tests/test_index.py), which only a larger refine factor recovers.  A text calibration short of
    the target (the ladder's best, e.g. HNSW at 1M) gains what doubling its breadth still gives."""
    if source == TEXT and calibrated_recall >= CALIBRATION_TARGET:
        return setting
    if setting.ef:
        return replace(setting, ef=2 * setting.ef)
    out = setting
    if setting.nprobes:
        out = replace(out, nprobes=min(num_partitions, 2 * setting.nprobes))
    if setting.refine_factor and source != TEXT:
        out = replace(out, refine_factor=2 * setting.refine_factor)
    return out


def calibrate(tbl, index_type: str, num_partitions: int, queries: np.ndarray | None = None,
              target: float = CALIBRATION_TARGET) -> tuple[Setting, float]:
    """The fastest setting (`cheapest_reaching`) whose recall@10 against exact search on `queries`
    (default: stored-vector queries) reaches `target`, searched and timed on this table as a k=10
    search asks (CALIBRATION_LIMIT rows); the best found otherwise."""
    if queries is None:
        from vidclip.store.calibration import stored_queries

        queries = stored_queries(tbl).vectors
    truth = exact_neighbours(tbl, queries)
    search_ids(tbl, queries[:8], Setting(min(num_partitions, NPROBES_LADDER[0])))  # warm the index caches

    def timed(setting: Setting) -> tuple[list[set], float]:
        t0 = time.perf_counter()
        found = search_ids(tbl, queries, setting)
        return found, time.perf_counter() - t0

    def measure(setting: Setting) -> Trial:
        found, seconds = timed(setting)
        return Trial(setting, recall(truth, found), seconds)

    best, trials = cheapest_reaching(settings_ladder(index_type, num_partitions), measure, target,
                                     retime=lambda s: timed(s)[1])
    log.debug("calibration trials: %s", [(t.setting, round(t.recall, 4), round(t.seconds, 3)) for t in trials])
    return best.setting, best.recall


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
                      index_type: str = DEFAULT_INDEX_TYPE,
                      calibration: CalibrationSet | Callable[[], CalibrationSet] | None = None) -> TableIndex:
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
    if callable(calibration):  # made on first need (text prompts: loads the model)
        calibration = calibration()
    if calibration is None:
        from vidclip.store.calibration import stored_queries

        calibration = stored_queries(tbl)
    setting, r = calibrate(tbl, index_type, params["num_partitions"], calibration.vectors)
    setting = with_margin(setting, params["num_partitions"], calibration.source, r)
    indexed, unindexed = _stats(tbl)
    entry = TableIndex(
        level, name, rows, "ann", index_type=index_type, num_partitions=params["num_partitions"],
        num_sub_vectors=params.get("num_sub_vectors"), num_bits=params.get("num_bits"),
        nprobes=setting.nprobes, refine_factor=setting.refine_factor, ef=setting.ef,
        calibrated_limit=CALIBRATION_LIMIT, recall_at_10=round(r, 4), calibration=calibration.label, rows_at_build=rows, indexed_rows=indexed,
        unindexed_rows=unindexed, build_s=round(build_s, 2),
        note=("" if r >= TARGET_RECALL else f"recall@10 {r:.3f} below {TARGET_RECALL} even at the largest setting"),
    )
    return entry


def build_index(store, threshold: int = EXACT_THRESHOLD, force: bool = False,
                index_type: str = DEFAULT_INDEX_TYPE,
                calibration: CalibrationSet | Callable[[], CalibrationSet] | None = None) -> IndexReport:
    """Index the clip and whole-video tables (or leave them exact) and record the choice in meta.

    calibration: the queries the settings are chosen on (vidclip.store.calibration), or a function
    making them, called once if a table is indexed; default: each table's own stored-vector queries.
    `vidclip index` passes its text prompts through the store's text tower."""
    if index_type not in INDEX_TYPES:
        raise InputError(f"unsupported index type {index_type!r} (one of {', '.join(INDEX_TYPES)})")
    with store.writing("index"):
        return _build_index(store, threshold, force, index_type, calibration)


RECORDED = ("mode", "index_type", "metric", "num_partitions", "num_sub_vectors", "num_bits", "nprobes", "refine_factor",
            "ef", "calibrated_limit", "recall_at_10", "calibration", "rows_at_build")


def _build_index(store, threshold: int, force: bool, index_type: str, calibration) -> IndexReport:
    report = IndexReport(threshold)
    if callable(calibration):
        calibration = functools.cache(calibration)  # one set for both tables, made only if one is indexed
    for level in ("clip", "video"):
        report.tables.append(build_table_index(store, level, threshold, force, index_type, calibration))
    recorded = dict(store.meta.get("index") or {})
    for t in report.tables:
        recorded[t.table] = {k: v for k, v in asdict(t).items() if k in RECORDED}
    live = set(store.segments.values())
    store.set_meta({"index": {k: v for k, v in recorded.items() if k in live}})
    return report


# -- reading ----------------------------------------------------------------------------------------
def query_options(store, table_name: str, limit: int = CALIBRATION_LIMIT) -> dict:
    """Query-time settings for a search of `table_name` asking `limit` rows: {} for exact search,
    else {"nprobes", "refine_factor"} and, for an HNSW index, "ef".  The refine factor re-ranks as
    many candidates as calibration did (`refine_for`; stores indexed before calibration searched
    CALIBRATION_LIMIT rows were calibrated at K)."""
    entry = (store.meta.get("index") or {}).get(table_name)
    if not entry or entry.get("mode") != "ann":
        return {}
    refine = refine_for(limit, entry.get("refine_factor"), entry.get("calibrated_limit") or K)
    opts = {"nprobes": entry.get("nprobes"), "refine_factor": refine}
    if entry.get("ef"):
        opts["ef"] = entry["ef"]
    return opts


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
                       refine_factor=entry.get("refine_factor"), ef=entry.get("ef"), num_bits=entry.get("num_bits"),
                       calibration=entry.get("calibration"), recall_at_10=entry.get("recall_at_10"),
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
