"""vidclip.store.index: ANN index build, calibrated recall, rows added after indexing, exact below threshold."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pytest

from vidclip.query.search import rows_to_fetch
from vidclip.store import index as vindex
from vidclip.store.calibration import PROMPTS, CalibrationSet, stored_queries
from vidclip.store.store import Store
from vidclip.store.schema import OK, VIDEO_SCHEMA, segment_schema, vectors_array

DIM = 64


def _vectors(n: int, rng, n_clusters: int = 40) -> np.ndarray:
    centres = rng.standard_normal((n_clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, n_clusters, n)] + 0.1 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _add(store: Store, vecs: np.ndarray, start: int, level: str = "clip") -> None:
    n = len(vecs)
    ids = [f"v{i:06d}" for i in range(start, start + n)]
    store.table(store.segments[level]).add(pa.table({
        "video_id": ids, "clip_id": pa.array(np.zeros(n), pa.int32()), "start_s": np.zeros(n), "end_s": np.ones(n),
        "n_frames": pa.array(np.ones(n), pa.int32()), "temporal": ["mean"] * n, "vector": vectors_array(vecs),
    }, schema=segment_schema(DIM)))
    if level == "clip":
        store.table("videos").add(pa.Table.from_pylist([{"video_id": v, "uri": f"/x/{v}.mp4", "status": OK} for v in ids],
                                                       schema=VIDEO_SCHEMA))


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "db"), create=True)
    s.ensure_vector_tables(DIM)
    rng = np.random.default_rng(0)
    _add(s, _vectors(3000, rng), 0)
    _add(s, _vectors(300, rng), 0, level="video")
    return s


def _search(store, table, q, opts, k=10, exact=False):
    query = store.table(table).search(q).distance_type("dot").limit(k).select(["video_id", "_distance"])
    if exact:
        query = query.bypass_vector_index()
    if opts.get("nprobes"):
        query = query.nprobes(opts["nprobes"])
    if opts.get("refine_factor"):
        query = query.refine_factor(opts["refine_factor"])
    return query.to_arrow().column("video_id").to_pylist()


def test_below_threshold_stays_exact(store):
    from vidclip.errors import InputError

    with pytest.raises(InputError, match="unsupported index type 'HNSW'"):  # refused whatever the table size
        vindex.build_index(store, index_type="HNSW")
    report = vindex.build_index(store)  # 3000 rows << EXACT_THRESHOLD
    assert [t.mode for t in report.tables] == ["exact", "exact"]
    assert "exact" in report.tables[0].note
    assert vindex.query_options(store, store.segments["clip"]) == {}
    assert store.table(store.segments["clip"]).index_stats(vindex.INDEX_NAME) is None


def test_forced_index_recall_and_new_rows(store):
    """IVF_FLAT on tight clusters in 64-d, where fresh queries have dozens of near-tied neighbours.
    (A quantised index in 64-d errs on those ties beyond what stored-vector calibration sees; the
    default IVF_RQ is held to its recall on 512-d hard data below, and on fresh calibration-like
    queries in the next test.)"""
    table = store.segments["clip"]
    report = vindex.build_index(store, force=True, index_type="IVF_FLAT")
    clip = report.tables[0]
    assert clip.mode == "ann" and clip.index_type == "IVF_FLAT"
    assert clip.num_partitions == vindex.index_params(3000, DIM, "IVF_FLAT")["num_partitions"]
    assert clip.calibration == f"{len(PROMPTS)} stored vectors"  # no text tower given: stored-vector queries
    assert clip.indexed_rows == 3000 and clip.unindexed_rows == 0
    assert clip.recall_at_10 >= vindex.TARGET_RECALL
    opts = vindex.query_options(store, table)
    assert opts["nprobes"] == clip.nprobes
    assert store.meta["index"][table]["mode"] == "ann"

    # recall of the recorded options on fresh held-out queries from the same distribution
    rng = np.random.default_rng(1)
    queries = _vectors(40, rng)
    found = [set(_search(store, table, q, opts)) for q in queries]
    truth = [set(_search(store, table, q, {}, exact=True)) for q in queries]
    assert vindex.recall(truth, found) >= vindex.TARGET_RECALL, (clip, vindex.recall(truth, found))

    # rows ingested after the index are searchable at once (flat scan of unindexed fragments)
    new = _vectors(50, np.random.default_rng(2))
    _add(store, new, 100_000)
    for i in range(0, 50, 10):
        assert _search(store, table, new[i], opts, k=1) == [f"v{100_000 + i:06d}"]
    status = vindex.index_status(store).tables[0]
    assert status.unindexed_rows == 50 and not status.needs_reindex  # 50/3050 < 10%
    _add(store, _vectors(400, rng), 200_000)
    assert vindex.index_status(store).tables[0].needs_reindex  # 450/3450 > 10%


def test_cli_index_json(store, capsys):
    from vidclip.cli import index as index_cli

    parser = argparse.ArgumentParser()
    index_cli.add_parsers(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["index", "--db", store.uri, "--json", "--force", "--threshold", "10"])
    assert index_cli.COMMANDS["index"](args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [t["mode"] for t in out["tables"]] == ["ann", "ann"]
    args = parser.parse_args(["index", "--db", store.uri, "--status"])
    assert index_cli.COMMANDS["index"](args) == 0
    assert "IVF" in capsys.readouterr().out


def test_exact_neighbours_match_lancedb_flat_search_across_fragments(store):
    tbl = store.table(store.segments["clip"])
    _add(store, _vectors(500, np.random.default_rng(5)), 50_000)  # a second fragment
    queries = _vectors(12, np.random.default_rng(6))
    truth = vindex.exact_neighbours(tbl, queries, batch=700)  # batches that straddle fragments
    for q, ids in zip(queries, truth):
        flat = tbl.search(q).distance_type("dot").bypass_vector_index().limit(10).with_row_id(True).to_arrow()
        assert ids == set(flat.column("_rowid").to_pylist())


@pytest.mark.parametrize("index_type", vindex.INDEX_TYPES)
def test_every_index_type_builds_calibrates_and_is_searched_with_its_settings(store, index_type):
    table = store.segments["clip"]
    clip = vindex.build_index(store, force=True, index_type=index_type).tables[0]
    assert clip.index_type == index_type and clip.recall_at_10 >= vindex.CALIBRATION_TARGET, clip
    opts = vindex.query_options(store, table)
    assert ("ef" in opts) == (index_type == "IVF_HNSW_SQ")
    if index_type == "IVF_FLAT":
        assert clip.refine_factor is None  # exact vectors: nothing to re-rank
    if index_type == "IVF_RQ":
        assert store.meta["index"][table]["num_bits"] == vindex.RQ_BITS
    assert store.meta["index"][table]["calibrated_limit"] == vindex.CALIBRATION_LIMIT
    # a search asking 4x the rows re-ranks the calibrated candidates, not 4x as many
    if clip.refine_factor:
        wide = vindex.query_options(store, table, 4 * vindex.CALIBRATION_LIMIT)["refine_factor"]
        assert wide == -(-clip.refine_factor // 4) and opts["refine_factor"] == clip.refine_factor
    # the store's own search path applies the recorded settings (ef raised to limit x refine), on
    # fresh queries of the calibration's kind (another seed)
    queries = stored_queries(store.table(table), n=40, seed=1).vectors
    found = [set(store.search_vectors(table, q, 40, **opts).column("video_id").to_pylist()[:10]) for q in queries]
    truth = [set(_search(store, table, q, {}, exact=True)) for q in queries]
    assert vindex.recall(truth, found) >= vindex.TARGET_RECALL
    # and so does a search through the query layer (40 rows fetched, refine scaled to 10 rows' candidates)
    from vidclip.query.search import search_vector

    hits = [set(h.video_id for h in search_vector(store, q, k=10, moments=False)) for q in queries]
    assert vindex.recall(truth, hits) >= vindex.TARGET_RECALL


def test_refine_factor_keeps_the_calibrated_candidate_count():
    # calibrated as a k=10 search asks: CALIBRATION_LIMIT rows
    assert vindex.CALIBRATION_LIMIT == rows_to_fetch(vindex.K)
    assert vindex.refine_for(vindex.CALIBRATION_LIMIT, 2) == 2
    assert vindex.refine_for(vindex.K, 2) == 8  # 10 rows: 80 candidates, as calibrated
    assert vindex.refine_for(160, 5) == 2  # 320 candidates >= the 200 calibrated
    assert vindex.refine_for(1000, 5) == 1
    assert vindex.refine_for(40, None) is None
    # stores indexed before: calibrated at K rows
    assert vindex.refine_for(40, 5, calibrated_limit=vindex.K) == 2
    assert vindex.refine_for(40, 20, calibrated_limit=vindex.K) == 5


@pytest.mark.slow
def test_calibrating_on_out_of_distribution_queries_keeps_their_recall(tmp_path):
    """Text queries don't look like stored clips (benchmarks/query_hard.py).  Settings calibrated on
    such queries hold on fresh ones; settings calibrated on stored vectors need less search, and it is
    recorded which set they came from."""
    from benchmarks.query_hard import HardData

    data = HardData()
    s = Store.open(str(tmp_path / "db"), create=True)
    s.ensure_vector_tables(512)
    vecs = data.rows(0, 30_000)  # (N, 512)
    s.table(s.segments["clip"]).add(pa.table({
        "video_id": [f"v{i:06d}" for i in range(len(vecs))], "clip_id": pa.array(np.zeros(len(vecs)), pa.int32()),
        "start_s": np.zeros(len(vecs)), "end_s": np.ones(len(vecs)), "n_frames": pa.array(np.ones(len(vecs)), pa.int32()),
        "temporal": ["mean"] * len(vecs), "vector": vectors_array(vecs)}, schema=segment_schema(512)))
    table = s.segments["clip"]
    ood = CalibrationSet("text prompts", data.queries(96, seed=1))
    clip = vindex.build_index(s, calibration=ood).tables[0]  # 30k rows: above the threshold
    assert clip.mode == "ann" and clip.calibration == "96 text prompts"
    held_out = data.queries(100, seed=0)
    tbl = s.table(table)
    truth = vindex.exact_neighbours(tbl, held_out)
    chosen = vindex.Setting(clip.nprobes, clip.refine_factor, clip.ef)
    assert vindex.recall(truth, vindex.search_ids(tbl, held_out, chosen)) >= vindex.TARGET_RECALL
    # stored-vector queries are easier: what text-like queries need is enough for them
    from vidclip.store.calibration import stored_queries

    easy = stored_queries(tbl).vectors
    assert vindex.recall(vindex.exact_neighbours(tbl, easy), vindex.search_ids(tbl, easy, chosen)) >= vindex.CALIBRATION_TARGET


def test_text_calibration_encodes_prompts_with_the_stores_model(tmp_path):
    import vidclip
    from conftest import TINY
    from vidclip.errors import QueryError

    lib = vidclip.open(str(tmp_path / "db"), model=TINY)
    lib.encoder  # records the model in the store
    lib.store.ensure_vector_tables(DIM)
    _add(lib.store, _vectors(2000, np.random.default_rng(0)), 0)
    report = lib.build_index(force=True, calibration="text")
    clip = report.tables[0]
    assert clip.calibration == f"{len(PROMPTS)} text prompts"
    assert lib.store.meta["index"][lib.store.segments["clip"]]["calibration"] == clip.calibration
    # measured again on the same prompts, through the same text tower: the recorded setting is the
    # calibrated one (a text calibration that reached its target gets no margin) and keeps its
    # recall (Lance's multi-threaded search may break near-ties differently from run to run)
    tbl = lib.store.table(lib.store.segments["clip"])
    prompts = lib.encoder.encode_text(list(PROMPTS)).numpy()
    chosen = vindex.Setting(clip.nprobes, clip.refine_factor, clip.ef)
    r = vindex.recall(vindex.exact_neighbours(tbl, prompts), vindex.search_ids(tbl, prompts, chosen))
    assert clip.recall_at_10 >= vindex.CALIBRATION_TARGET
    assert r >= vindex.TARGET_RECALL and abs(r - clip.recall_at_10) <= 0.01, (r, clip)
    assert vindex.with_margin(chosen, clip.num_partitions, "text prompts", clip.recall_at_10) == chosen

    # below the threshold nothing is indexed, and the model is not even loaded
    again = vidclip.open(str(tmp_path / "db"))  # the store's own model
    assert [t.mode for t in again.build_index(calibration="text").tables] == ["exact", "exact"]
    assert again._encoder is None

    bare = vidclip.open(str(tmp_path / "bare"), model=TINY)  # no model recorded: nothing to encode with
    bare.store.ensure_vector_tables(DIM)
    with pytest.raises(QueryError, match="no model recorded"):
        bare.build_index(force=True, calibration="text")


def test_lance_uses_every_core_of_a_small_machine(tmp_path):
    """Lance's default is one compute thread on <= 2 cores; vidclip sets LANCE_CPU_THREADS before
    Lance starts (and leaves a value the user set alone)."""
    import os
    import subprocess
    import sys

    code = ("import os; from vidclip.store.store import Store; Store.open(os.environ['DB'], create=True)"
            ".ensure_vector_tables(8); print(os.environ.get('LANCE_CPU_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "LANCE_CPU_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "DB": str(tmp_path / "a")},
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    cores = len(os.sched_getaffinity(0))
    assert out == (str(cores) if cores <= 4 else "None")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "DB": str(tmp_path / "b"), "LANCE_CPU_THREADS": "7"},
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    assert out == "7"


def test_a_margin_only_where_calibration_under_provisions():
    s = vindex.Setting(nprobes=48, refine_factor=5)
    # text prompts that reached the calibration target: recorded as calibrated
    assert vindex.with_margin(s, 512, "text prompts", vindex.CALIBRATION_TARGET) == s
    # text prompts short of it (the ladder's best): twice the search breadth
    assert vindex.with_margin(s, 512, "text prompts", 0.9) == vindex.Setting(96, 5)
    # stored vectors are easier than real queries in both knobs
    assert vindex.with_margin(s, 512, "stored vectors", 0.99) == vindex.Setting(96, 10)
    assert vindex.with_margin(s, 64, "stored vectors", 0.99) == vindex.Setting(64, 10)  # at most every partition
    assert vindex.with_margin(vindex.Setting(1, None, 256), 1, "stored vectors", 0.99).ef == 512


def _walk(table: dict, target: float = 0.97, retimes: dict | None = None):
    """cheapest_reaching over a measured table {(nprobes, refine): (recall, seconds)}."""
    measured = []

    def measure(s):
        measured.append((s.nprobes, s.refine_factor))
        r, sec = table[(s.nprobes, s.refine_factor)]
        return vindex.Trial(s, r, sec)

    groups = [[vindex.Setting(p, r) for r in (None, 2, 5, 10)] for p in sorted({p for p, _ in table})]
    retime = None if retimes is None else (lambda s: retimes[(s.nprobes, s.refine_factor)])
    best, trials = vindex.cheapest_reaching(groups, measure, target, retime)
    assert [(t.setting.nprobes, t.setting.refine_factor) for t in trials] == measured
    return (best.setting.nprobes, best.setting.refine_factor), measured


def test_calibration_picks_the_fastest_setting_reaching_the_target_not_the_first():
    # the shape measured at 1M (benchmarks/ann_hard_1m.json): more partitions with a light re-rank
    # beat fewer partitions with a deep one
    table = {(96, None): (0.90, 5.0), (96, 2): (0.94, 6.0), (96, 5): (0.96, 7.0), (96, 10): (0.971, 8.0),
             (128, None): (0.95, 6.0), (128, 2): (0.975, 6.5), (128, 5): (0.99, 9.0), (128, 10): (0.99, 10.0),
             (192, None): (0.972, 9.0), (192, 2): (0.99, 10.0), (192, 5): (1.0, 11.0), (192, 10): (1.0, 12.0),
             (256, None): (0.99, 12.0), (256, 2): (1.0, 13.0), (256, 5): (1.0, 14.0), (256, 10): (1.0, 15.0)}
    best, measured = _walk(table)
    assert best == (128, 2)
    # stops deepening a group once the target is reached, and stops the walk at a group whose
    # cheapest setting is already slower than the fastest found: 256 probes are never searched
    assert measured == [(96, None), (96, 2), (96, 5), (96, 10), (128, None), (128, 2), (192, None)]

    # a group stops deepening once a deeper re-rank finds nothing more: the breadth is short
    flat = dict(table)
    flat.update({(96, 2): (0.94, 6.0), (96, 5): (0.94, 7.0), (96, 10): (0.94, 8.0)})
    best, measured = _walk(flat)
    assert best == (128, 2) and measured[:4] == [(96, None), (96, 2), (96, 5), (128, None)]

    # a group stops deepening at a depth already slower than the fastest setting found
    table[(128, 2)] = (0.96, 8.5)
    best, measured = _walk(table)
    assert best == (96, 10) and measured[4:] == [(128, None), (128, 2), (192, None)]


def test_calibration_near_ties_are_timed_again_and_a_short_ladder_returns_its_best_recall():
    table = {(96, None): (0.90, 5.0), (96, 2): (0.97, 6.0), (96, 5): (1.0, 7.0), (96, 10): (1.0, 8.0),
             (128, None): (0.975, 5.9), (128, 2): (1.0, 7.0), (128, 5): (1.0, 8.0), (128, 10): (1.0, 9.0)}
    assert _walk(table)[0] == (128, None)  # 5.9 s < 6.0 s on one timing
    assert _walk(table, retimes={(96, 2): 5.5, (128, None): 6.2})[0] == (96, 2)  # 11.5 < 12.1 on two
    # nothing reaches the target: the highest recall found
    short = {(8, None): (0.5, 1.0), (8, 2): (0.6, 1.1), (8, 5): (0.7, 1.2), (8, 10): (0.72, 1.3)}
    assert _walk(short)[0] == (8, 10)
