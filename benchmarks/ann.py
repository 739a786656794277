"""ANN index sweep on hard data (issue 21): LanceDB's index types, their build cost, and the query
knobs that reach recall@10 >= 0.95 when queries don't look like the data.

Data and queries come from benchmarks/query_hard.py (one anisotropic Gaussian, no clusters; queries
from a shifted distribution with median top-1 cosine ~0.40).  Rows go to a LanceDB table in bulk
(one streamed write, never the whole array in memory) with the clip table's columns plus `row`,
the position the exact ground truth refers to; the vector column is float32 or float16 (`dtype=`).
Ground truth is exact top-10 by dot product over the float32 rows, computed with numpy during that
write; LanceDB's own flat search is checked against it on a few queries.  The metric is "dot", as
vidclip's index uses (vidclip.store.index): the vectors are unit-norm, so dot is cosine.

Each index config is built and queried in its own fresh process (spawned), so its peak RSS
(VmHWM, reset just before the build and read right after it) and CPU time (user + system, all
threads) are the build's own.
Then every query setting is timed over all queries after a warm-up: p50/p99 latency and recall@10.
Settings run as ladders (nprobes ascending, or ef ascending for HNSW at each nprobes and refine)
that stop at the first setting reaching --target unless --full-sweep.  The summary gives each
config's cheapest setting (lowest p50) reaching the target.  LANCE_CPU_THREADS is set to the core
count unless already set or --lance-threads says otherwise (Lance uses ONE compute thread on a
2-core machine by default); it is recorded in the JSON.

Config syntax: KIND[:key=value,...] with KIND one of ivf_flat, ivf_sq, ivf_pq, ivf_rq, hnsw_sq,
hnsw_pq, and keys partitions, sub_vectors, bits, m, ef_construction, sample_rate, max_iterations,
dtype (f32|f16).  For example `ivf_pq:partitions=256,sub_vectors=64,bits=8` or
`hnsw_sq:partitions=1,m=16,ef_construction=150,dtype=f16`.

The runs behind benchmarks/ann_hard_*.json and docs/performance.md (quiet 2-core machine; the
research and plan are in benchmarks/ann_research.md):

    # 100k: every option, ~25 min in all (ann_hard_100k.json)
    vidclip bench ann --size 100000 --out benchmarks/ann_hard_100k.json --configs \
        ivf_flat:partitions=316 ivf_flat:partitions=316,dtype=f16 ivf_sq:partitions=256 \
        ivf_pq:partitions=256,sub_vectors=64 ivf_pq:partitions=256,sub_vectors=128 \
        ivf_rq:partitions=256,bits=1 ivf_rq:partitions=256,bits=4 ivf_rq:partitions=1024,bits=1 \
        hnsw_sq:partitions=1,m=16,ef_construction=150 hnsw_sq:partitions=4,m=16,ef_construction=150 \
        hnsw_sq:partitions=1,m=16,ef_construction=150,dtype=f16 \
        hnsw_pq:partitions=1,sub_vectors=64,m=16,ef_construction=150

    # 1M, k=10 rows (ann_hard_1m.json), ~12 min
    vidclip bench ann --size 1000000 --out benchmarks/ann_hard_1m.json --nprobes 16 32 48 64 96 128 192 256 \
        --refine 0 2 5 10 --configs ivf_rq:partitions=256,bits=4 ivf_rq:partitions=512,bits=4

    # 1M, 40 rows as `vidclip search` asks (ann_hard_1m_limit40.json; IVF_HNSW_SQ alone builds 8 min)
    vidclip bench ann --size 1000000 --limit 40 --nprobes 16 32 64 128 256 384 512 --refine 0 5 10 20 \
        --configs ivf_rq:partitions=256,bits=4 ivf_rq:partitions=1024,bits=4
    vidclip bench ann --size 1000000 --limit 40 --refine 0 5 --configs hnsw_sq:partitions=1,m=16,ef_construction=150

The 1M table is ~2.2 GB on disk (f32; ~1.2 GB with dtype=f16 configs) in --dir (default: a temp
dir); one index at a time is kept on disk.  The tables print as Markdown for docs/performance.md.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks import corpus
from benchmarks.query_hard import DIM, HardData, HardSpec, TopK
from vidclip.store.index import CALIBRATION_LIMIT
from vidclip.store.schema import SEARCH_COLUMNS

METRIC = "dot"
TABLE = "clips"
INDEX_NAME = "vector_idx"
SEARCH_LIMIT = CALIBRATION_LIMIT  # rows `vidclip search` asks for at k=10 (vidclip.query.search.rows_to_fetch)
COLUMNS = ["row", *SEARCH_COLUMNS, "_distance"]  # a clip search's, plus row
DEFAULT_CONFIGS = ["ivf_flat:partitions=316", "ivf_pq:partitions=256,sub_vectors=64", "ivf_rq:partitions=256,bits=1",
                   "ivf_rq:partitions=256,bits=4", "ivf_sq:partitions=256",
                   "hnsw_sq:partitions=1,m=16,ef_construction=150",
                   "hnsw_pq:partitions=1,sub_vectors=64,m=16,ef_construction=150",
                   "ivf_flat:partitions=316,dtype=f16"]
VIDCLIP_TYPES = {"ivf_flat": "IVF_FLAT", "ivf_rq": "IVF_RQ", "ivf_pq": "IVF_PQ", "hnsw_sq": "IVF_HNSW_SQ"}
KINDS = {"ivf_flat": "IvfFlat", "ivf_sq": "IvfSq", "ivf_pq": "IvfPq", "ivf_rq": "IvfRq",
         "hnsw_sq": "IvfHnswSq", "hnsw_pq": "IvfHnswPq"}


@dataclass(frozen=True)
class IndexConfig:
    """One index to build: LanceDB's config class (`kind`) and its parameters (None: Lance's default)."""

    kind: str
    partitions: int | None = None
    sub_vectors: int | None = None  # PQ
    bits: int | None = None  # PQ (4|8), RQ (1..)
    m: int | None = None  # HNSW
    ef_construction: int | None = None  # HNSW
    sample_rate: int | None = None
    max_iterations: int | None = None
    dtype: str = "f32"  # the vector column's type: f32 or f16

    @classmethod
    def parse(cls, text: str) -> IndexConfig:
        kind, _, rest = text.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r} (one of {', '.join(KINDS)})")
        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            if key not in known or key == "kind":
                raise ValueError(f"{text!r}: unknown key {key!r}")
            values[key] = value if key == "dtype" else int(value)
        config = cls(kind, **values)
        if config.dtype not in ("f32", "f16"):
            raise ValueError(f"{text!r}: dtype must be f32 or f16")
        return config

    @property
    def label(self) -> str:
        keys = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                if f.name not in ("kind", "dtype") and getattr(self, f.name) is not None]
        return f"{self.kind}:{','.join(keys + ([f'dtype={self.dtype}'] if self.dtype != 'f32' else []))}"

    @property
    def hnsw(self) -> bool:
        return self.kind.startswith("hnsw")

    @property
    def quantised(self) -> bool:
        return self.kind != "ivf_flat"  # refine_factor re-ranks with the raw vectors

    def lance_config(self):
        import lancedb.index

        names = {"partitions": "num_partitions", "sub_vectors": "num_sub_vectors", "bits": "num_bits",
                 "m": "m", "ef_construction": "ef_construction", "sample_rate": "sample_rate",
                 "max_iterations": "max_iterations"}
        kwargs = {names[k]: v for k, v in asdict(self).items() if k in names and v is not None}
        return getattr(lancedb.index, KINDS[self.kind])(distance_type=METRIC, **kwargs)


def default_partitions(config: IndexConfig, rows: int) -> int:
    """Lance's partition count when none is given: rows / a per-type target size, in [1, 4096]
    (lance-index target_partition_size(): IVF_FLAT 4096, IVF_PQ/SQ/RQ 8192, HNSW 2^20 rows)."""
    target = 4096 if config.kind == "ivf_flat" else (1 << 20 if config.hnsw else 8192)
    return max(1, min(4096, rows // target))


@dataclass(frozen=True)
class Setting:
    """Query-time knobs (None: not set, LanceDB's default)."""

    nprobes: int | None = None
    refine_factor: int | None = None
    ef: int | None = None

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items() if v is not None) or "defaults"


def ladders(config: IndexConfig, partitions: int, nprobes: list[int], refines: list[int], efs: list[int],
            k: int = 10) -> list[list[Setting]]:
    """The settings to time, as ladders of increasing cost (a ladder stops once it reaches the
    target): nprobes ascending per refine for IVF; ef ascending per (refine, nprobes) for HNSW.
    nprobes above the index's partition count collapse to all partitions; an ef below the k x refine
    candidates it must return is skipped (Lance refuses it: "ef must be greater than or equal to k")."""
    probes = sorted({min(p, partitions) for p in nprobes})
    refs = sorted({r or None for r in refines}, key=lambda r: r or 0) if config.quantised else [None]
    if config.hnsw:
        runs = [[Setting(p, r, ef) for ef in sorted(efs) if ef >= k * (r or 1)] for r in refs for p in probes]
        return [run for run in runs if run]
    return [[Setting(p, r) for p in probes] for r in refs]


# -- data -------------------------------------------------------------------------------------------
def schema(dtype: str):
    import pyarrow as pa

    from vidclip.store.schema import segment_schema

    seg = segment_schema(DIM)
    vector = pa.field("vector", pa.list_(pa.float16() if dtype == "f16" else pa.float32(), DIM))
    return pa.schema([pa.field("row", pa.int64())] + [vector if f.name == "vector" else f for f in seg])


def write_table(db, name: str, data: HardData, n: int, dtype: str, chunk: int, top: TopK | None = None):
    """Stream rows 0..n-1 into a new table in one bulk write (feeding `top` the float32 rows)."""
    import pyarrow as pa

    sch = schema(dtype)
    per_video = 10

    def n_frames(rows: np.ndarray) -> np.ndarray:
        # 8 frames (4 s at 2 fps) per clip, fewer in each video's last one, as in a real store: a
        # column holding one value throughout is stored by Lance 2.2 in a layout that costs ~1.5 ms
        # per 10-row take at 1M rows, which a real clip table never pays
        last = rows % per_video == per_video - 1
        return np.where(last, 1 + (rows // per_video) % 8, 8)

    def batches():
        for lo, x in data.chunks(n, chunk):
            if top is not None:
                top.add(lo, x)
            rows = np.arange(lo, lo + len(x))
            vec = x.astype(np.float16 if dtype == "f16" else np.float32)  # (m, D)
            yield pa.record_batch([
                pa.array(rows, pa.int64()),
                pa.array([f"v{i // per_video:08d}" for i in rows]),
                pa.array(rows % per_video, pa.int32()),
                pa.array((rows % per_video) * 4.0),
                pa.array((rows % per_video) * 4.0 + n_frames(rows) / 2.0),
                pa.array(n_frames(rows), pa.int32()),
                pa.array(["mean"] * len(x)),
                pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), DIM),
            ], schema=sch)

    return db.create_table(name, data=pa.RecordBatchReader.from_batches(sch, batches()), mode="overwrite")


def search(atbl, q: np.ndarray, setting: Setting, k: int):
    """One timed query, as vidclip's store searches: LanceDB's async API on this thread's own loop
    (vidclip.store.store.nearest, vidclip/store/eventloop.py).  An HNSW index's ef is raised to the
    k x refine candidates Lance must return, as there."""
    from vidclip.store.eventloop import run_here
    from vidclip.store.store import nearest

    return run_here(lambda: nearest(atbl, q, k, COLUMNS, None, setting.nprobes, setting.refine_factor, setting.ef))


async def open_async(root: str, table: str, session):
    """The AsyncTable for vidclip's search path, on the sync connection's session (shared caches)."""
    import lancedb

    return await (await lancedb.connect_async(root, session=session)).open_table(table)


def flat_agreement(tbl, queries: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean overlap of LanceDB's exact (flat) top-k with numpy's on these queries (1.0: they agree)."""
    found = [tbl.search(q, vector_column_name="vector").distance_type(METRIC).bypass_vector_index().limit(k)
             .select(["row"]).to_arrow().column("row").to_numpy() for q in queries]
    return recall_at(truth[:len(queries)], found)


def recall_at(truth: np.ndarray, found: list[np.ndarray]) -> float:
    return float(np.mean([len(set(t.tolist()) & set(f.tolist())) / len(t) for t, f in zip(truth, found)]))


# -- one config, in its own process --------------------------------------------------------------------
def _status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MB."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0).  ru_maxrss cannot be used: it survives exec,
    so a spawned child starts with its parent's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _ms(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)}


def measure(root: str, table: str, config: IndexConfig, rows: int, queries: np.ndarray, truth: np.ndarray,
            nprobes: list[int], refines: list[int], efs: list[int], target: float, full_sweep: bool,
            warmup: int, limit: int | None = None, calibration: dict | None = None) -> dict:
    """Build `config` on the table, then time its query ladders.  Meant for a fresh process.
    limit: rows asked of LanceDB per query (default k); recall counts the first k of them.
    calibration: {name: (Q, D) queries, or None for vidclip's stored-vector queries} to run
    vidclip's own calibration with (index types vidclip builds only)."""
    import lancedb

    from vidclip.store.eventloop import run_here

    session = lancedb.Session()
    db = lancedb.connect(root, session=session)
    tbl = db.open_table(table)
    k = truth.shape[1]
    limit = max(k, limit or k)
    indices = Path(root) / f"{table}.lance" / "_indices"
    before = {p.name for p in indices.iterdir()} if indices.exists() else set()
    reset = _reset_peak_rss()
    rss0, cpu0 = _status_mb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    tbl.create_index("vector", config=config.lance_config(), replace=True, name=INDEX_NAME)
    wall = time.perf_counter() - t0
    cpu1, peak = resource.getrusage(resource.RUSAGE_SELF), _status_mb("VmHWM")
    stats = tbl.index_stats(INDEX_NAME)
    new = [p for p in indices.iterdir() if p.name not in before]
    partitions = config.partitions or default_partitions(config, rows)
    out = {"config": config.label, **asdict(config), "rows": rows, "index_type": stats.index_type,
           "indexed_rows": stats.num_indexed_rows, "build_s": round(wall, 2),
           "build_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
           "rss_before_build_mb": round(rss0, 1), "peak_rss_mb": round(peak, 1),
           "peak_rss_is": "of the build" if reset else "of the process until the build ended",
           "index_mb": round(sum(_dir_bytes(p) for p in new) / 1e6, 2), "settings": []}
    try:
        tbl.prewarm_index(INDEX_NAME)
    except Exception as exc:  # noqa: BLE001 - not every index type supports it
        out["prewarm"] = f"failed: {exc}"
    out["limit"] = limit
    atbl = run_here(lambda: open_async(root, table, session))  # opened after the build: it sees the index
    todo = ladders(config, partitions, nprobes, refines, efs, limit)
    for q in queries:  # one untimed pass: page cache and index cache
        search(atbl, q, todo[0][0], limit)
    for ladder in todo:
        for setting in ladder:
            row = timed(atbl, queries, truth, setting, limit, warmup)
            out["settings"].append({**asdict(setting), **row})
            print(f"  {config.label} {setting.label}: recall@{k} {row['recall_at_10']:.3f}, p50 {row['p50_ms']} ms",
                  flush=True)
            if row["recall_at_10"] >= target and not full_sweep:
                break
    out["best"] = best(out["settings"], target)
    if config.kind in VIDCLIP_TYPES and calibration:
        out["calibrated"] = calibrated(tbl, atbl, config, partitions, calibration, queries, truth, limit)
    import warnings
    from datetime import timedelta

    tbl.drop_index(INDEX_NAME)
    with warnings.catch_warnings():  # "removes every version but the latest": nothing else reads this table
        warnings.simplefilter("ignore", UserWarning)
        tbl.optimize(cleanup_older_than=timedelta(0))  # one index on disk at a time (1M IVF_FLAT: 2 GB)
    return out


def timed(atbl, queries: np.ndarray, truth: np.ndarray, setting: Setting, limit: int, warmup: int = 10) -> dict:
    k = truth.shape[1]
    for q in queries[:warmup]:
        search(atbl, q, setting, limit)
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        res = search(atbl, q, setting, limit)
        lat.append(time.perf_counter() - t)
        found.append(res.column("row").to_numpy()[:k])
    return {"recall_at_10": round(recall_at(truth, found), 4), **_ms(lat)}


def calibrated(tbl, atbl, config: IndexConfig, partitions: int, calibration: dict, queries: np.ndarray,
               truth: np.ndarray, limit: int) -> list[dict]:
    """What `vidclip index` would choose on this index (vidclip.store.index.calibrate) with each
    calibration set, and how the choice does on the held-out OOD queries, as calibrated and as
    vidclip records it (vidclip.store.index.with_margin: as calibrated for text-like queries that
    reached the calibration target, else nprobes or ef doubled).  Timed at `limit` rows with the
    refine factor scaled to re-rank the candidates calibration chose (vidclip.store.index.refine_for:
    it searched SEARCH_LIMIT rows, as vidclip does at k=10), and as vidclip searches."""
    from vidclip.store import index as vindex
    from vidclip.store.calibration import STORED, TEXT, stored_queries

    rows = []
    for name, vectors in calibration.items():
        cal = stored_queries(tbl).vectors if vectors is None else vectors
        t0 = time.perf_counter()
        chosen, cal_r = vindex.calibrate(tbl, VIDCLIP_TYPES[config.kind], partitions, cal)
        cal_s = time.perf_counter() - t0
        source = STORED if vectors is None else TEXT  # the OOD queries stand for text prompts
        recorded = vindex.with_margin(chosen, partitions, source, cal_r)
        variants = ([("recorded (as calibrated)", chosen)] if recorded == chosen
                    else [("as calibrated", chosen), ("recorded (with margin)", recorded)])
        for label, s in variants:
            searched = Setting(s.nprobes, s.refine_factor, s.ef)  # as vidclip searches: SEARCH_LIMIT rows
            setting = replace(searched, refine_factor=vindex.refine_for(limit, s.refine_factor))  # at `limit` rows
            at_search = timed(atbl, queries, truth, searched, SEARCH_LIMIT)
            row = {"calibration": name, "queries": len(cal), "variant": label, **asdict(searched),
                   "calibrated_limit": SEARCH_LIMIT, "refine_factor_at_limit": setting.refine_factor,
                   "calibration_recall_at_10": round(cal_r, 4), "calibration_s": round(cal_s, 1),
                   **timed(atbl, queries, truth, setting, limit),
                   "search_limit": SEARCH_LIMIT, "refine_factor_searched": searched.refine_factor,
                   "search_recall_at_10": at_search["recall_at_10"], "search_p50_ms": at_search["p50_ms"],
                   "search_p99_ms": at_search["p99_ms"]}
            rows.append(row)
            print(f"  {config.label} calibrated on {name} ({label}): {searched.label}; at {limit} rows "
                  f"(refine {setting.refine_factor}) held-out recall {row['recall_at_10']}, p50 {row['p50_ms']} ms; as vidclip searches ({SEARCH_LIMIT} rows, "
                  f"refine {searched.refine_factor}): recall {row['search_recall_at_10']}, p50 {row['search_p50_ms']} ms",
                  flush=True)
    return rows


def best(settings: list[dict], target: float) -> dict | None:
    """The cheapest setting (lowest p50) whose recall reaches the target; None if none does."""
    ok = [s for s in settings if s["recall_at_10"] >= target]
    return min(ok, key=lambda s: s["p50_ms"]) if ok else None


def measure_apart(*args) -> dict:
    """`measure` in a fresh spawned process (its own ru_maxrss and CPU time)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


# -- the run ----------------------------------------------------------------------------------------
def lance_threads(requested: int | None) -> str:
    """Set LANCE_CPU_THREADS for this process and its children (before Lance starts its pool)."""
    if requested:
        os.environ["LANCE_CPU_THREADS"] = str(requested)
    elif "LANCE_CPU_THREADS" not in os.environ:
        os.environ["LANCE_CPU_THREADS"] = str(len(os.sched_getaffinity(0)))
    return os.environ["LANCE_CPU_THREADS"]


def run(size: int, configs: list[IndexConfig], root: str, n_queries: int = 200, k: int = 10,
        nprobes: list[int] = (8, 16, 32, 64, 128, 256, 384, 512), refines: list[int] = (0, 2, 5, 10, 20),
        efs: list[int] = (64, 128, 256, 512, 1024), target: float = 0.95, full_sweep: bool = False,
        check_flat: int = 10, warmup: int = 10, chunk: int = 100_000, spec: HardSpec = HardSpec(),
        lance_cpu_threads: int | None = None, apart: bool = True, log=print, on_result=None,
        limit: int | None = None, calibration_queries: int = 96) -> dict:
    threads = lance_threads(lance_cpu_threads)
    import lancedb

    data = HardData(spec)
    queries = data.queries(n_queries)  # (Q, D)
    in_dist = data.in_distribution_queries(n_queries)  # (Q, D)
    top = TopK(np.concatenate([queries, in_dist]), k)
    db = lancedb.connect(root)
    result = {"machine": corpus.machine_info(), "lance_cpu_threads": threads, "metric": METRIC, "dim": DIM,
              "k": k, "limit": max(k, limit or k), "rows": size, "queries": n_queries, "target_recall": target, "spec": asdict(spec),
              "data": f"hard: one anisotropic Gaussian (spectrum i^-{spec.alpha}, top-20 variance share "
                      f"{data.top_variance():.2f}, no clusters), OOD queries (benchmarks/query_hard.py)",
              "tables": {}, "configs": []}
    # vidclip's calibration, run on each index: fresh OOD queries (another seed than the timed ones,
    # as text prompts are to user queries), and the stored-vector queries vidclip used before
    calibration = {"OOD queries (seed 1)": data.queries(calibration_queries, seed=1), "stored vectors": None} \
        if calibration_queries else {}
    truth = None
    for dtype in sorted({c.dtype for c in configs}):
        t0 = time.perf_counter()
        name = f"{TABLE}_{dtype}"
        tbl = write_table(db, name, data, size, dtype, chunk, top if truth is None else None)
        if truth is None:
            truth = top.ids[:n_queries]
            result["median_top1_cosine"] = round(float(np.median(top.scores[:n_queries, 0])), 4)
            result["median_top1_cosine_in_distribution"] = round(float(np.median(top.scores[n_queries:, 0])), 4)
            result["truth_s"] = "computed during the first table write"
        agree = flat_agreement(tbl, queries[:check_flat], truth, k) if check_flat else None
        result["tables"][dtype] = {"name": name, "write_s": round(time.perf_counter() - t0, 1),
                                   "flat_search_agreement_with_exact": agree, "flat_checked_queries": check_flat}
        log(f"table {name}: {size} rows in {result['tables'][dtype]['write_s']} s; LanceDB flat vs numpy exact "
            f"top-{k} agreement {agree} on {check_flat} queries")
    log(f"median top-1 cosine: OOD queries {result['median_top1_cosine']}, in-distribution "
        f"{result['median_top1_cosine_in_distribution']}; LANCE_CPU_THREADS={threads}")
    for config in configs:
        args = (root, f"{TABLE}_{config.dtype}", config, size, queries, truth, list(nprobes), list(refines),
                list(efs), target, full_sweep, warmup, limit, calibration)
        try:
            out = measure_apart(*args) if apart else measure(*args)
        except Exception as exc:  # noqa: BLE001 - one failing config must not lose the others
            result.setdefault("failed", []).append({"config": config.label, "error": repr(exc)})
            log(f"{config.label}: FAILED {exc!r}")
            continue
        result["configs"].append(out)
        b = out["best"]
        log(f"{config.label}: build {out['build_s']} s, best " +
            (f"{Setting(b['nprobes'], b['refine_factor'], b['ef']).label} recall {b['recall_at_10']} p50 {b['p50_ms']} ms"
             if b else f"none reaches {target}"))
        if on_result:
            on_result(result)
    return result


def markdown(result: dict) -> str:
    """The summary (one row per config: its cheapest setting reaching the target) and every setting."""
    t = result["target_recall"]
    head = (f"{result['rows']:,} rows x {result['dim']}, limit {result.get('limit', result['k'])}, {result['queries']} OOD queries (median top-1 cosine "
            f"{result.get('median_top1_cosine')}; in-distribution {result.get('median_top1_cosine_in_distribution')}), "
            f"metric {result['metric']}, LANCE_CPU_THREADS={result['lance_cpu_threads']}, "
            f"{result['machine'].get('cpu_count')} cores")
    lines = [head, "", f"| config | build s | build CPU s | peak RSS MB | index MB | cheapest setting with recall@10 >= {t} "
             "| recall@10 | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for c in result["configs"]:
        b = c["best"]
        knobs = Setting(b["nprobes"], b["refine_factor"], b["ef"]).label if b else "none reached"
        top = b or max(c["settings"], key=lambda s: s["recall_at_10"])
        lines.append(f"| {c['config']} | {c['build_s']} | {c['build_cpu_s']} | {c['peak_rss_mb']} | {c['index_mb']} | "
                     f"{knobs} | {top['recall_at_10']} | {top['p50_ms']} | {top['p99_ms']} |")
    lines += ["", "| config | setting | recall@10 | p50 ms | p99 ms |", "|---|---|---:|---:|---:|"]
    for c in result["configs"]:
        for s in c["settings"]:
            lines.append(f"| {c['config']} | {Setting(s['nprobes'], s['refine_factor'], s['ef']).label} | "
                         f"{s['recall_at_10']} | {s['p50_ms']} | {s['p99_ms']} |")
    cal = [(c["config"], r) for c in result["configs"] for r in c.get("calibrated", [])]
    if cal:
        lines += ["", "vidclip's own calibration (vidclip.store.index.calibrate, target "
                  f"0.97 on the calibration queries, {SEARCH_LIMIT} rows asked), then timed on the held-out OOD "
                  f"queries at k={result['limit']} rows (refine scaled to the calibrated candidate count) and as vidclip searches:", "",
                  f"| config | calibrated on | variant | setting | calibration recall | held-out recall@10 | p50 ms | p99 ms "
                  f"| as vidclip searches ({SEARCH_LIMIT} rows): refine, recall@10, p50 ms, p99 ms |",
                  "|---|---|---|---|---:|---:|---:|---:|---|"]
        for config, r in cal:
            lines.append(f"| {config} | {r['queries']} {r['calibration']} | {r['variant']} | "
                         f"{Setting(r['nprobes'], r['refine_factor'], r['ef']).label} | {r['calibration_recall_at_10']} | "
                         f"{r['recall_at_10']} | {r['p50_ms']} | {r['p99_ms']} | {r.get('refine_factor_searched')}, "
                         f"{r.get('search_recall_at_10')}, {r.get('search_p50_ms')}, {r.get('search_p99_ms')} |")
    return "\n".join(lines)


def add_arguments(ap) -> None:
    ap.add_argument("--size", type=int, default=100_000, help="rows in the table")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS,
                    help="index configs, KIND[:key=value,...] (see the module docstring)")
    ap.add_argument("--nprobes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 384, 512],
                    help="nprobes ladder (capped at each index's partitions)")
    ap.add_argument("--refine", type=int, nargs="+", default=[0, 2, 5, 10, 20],
                    help="refine factors for quantised indexes (0: none)")
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512, 1024], help="HNSW ef ladder")
    ap.add_argument("--queries", type=int, default=200, help="OOD queries per setting")
    ap.add_argument("--limit", type=int, default=None,
                    help="rows asked of LanceDB per query (default k=10; `vidclip search` asks for at least 40 and "
                         "ranks them); recall@10 counts the first 10")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 a setting must reach")
    ap.add_argument("--full-sweep", action="store_true", help="time every setting, not stopping a ladder at the target")
    ap.add_argument("--check-flat", type=int, default=10, help="queries on which LanceDB's flat search is checked against numpy's exact top-k")
    ap.add_argument("--lance-threads", type=int, default=None,
                    help="LANCE_CPU_THREADS (default: the environment's, else the core count)")
    ap.add_argument("--seed", type=int, default=0, help="HardSpec seed")
    ap.add_argument("--dir", default=None, help="where the tables go (default: a temp dir, removed after)")
    ap.add_argument("--out", default="benchmarks/ann_hard.json")


def cli(args) -> int:
    configs = [IndexConfig.parse(c) for c in args.configs]

    def save(result):
        corpus.write_result(args.out, result)

    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        result = run(args.size, configs, root, n_queries=args.queries, nprobes=args.nprobes, refines=args.refine,
                     efs=args.ef, target=args.target, full_sweep=args.full_sweep, check_flat=args.check_flat,
                     spec=replace(HardSpec(), seed=args.seed), lance_cpu_threads=args.lance_threads, on_result=save,
                     limit=args.limit)
    save(result)
    print(markdown(result))
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
