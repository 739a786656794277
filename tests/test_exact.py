"""vidclip.store.exact: the in-memory exact search returns what LanceDB's flat scan returns, follows new
commits, respects a video_id restriction and its memory budget; lookup indexes are kept up to date."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from vidclip.store.store import Store

from vidclip.store.schema import OK, SEARCH_COLUMNS, VIDEO_SCHEMA, segment_schema, vectors_array

DIM = 32


def _add(store: Store, vecs: np.ndarray, start: int) -> list[str]:
    n = len(vecs)
    ids = [f"v{i:05d}" for i in range(start, start + n)]
    store.table(store.segments["clip"]).add(pa.table({
        "video_id": ids, "clip_id": pa.array(np.arange(n) % 3, pa.int32()), "start_s": np.arange(n, dtype=float),
        "end_s": np.arange(n, dtype=float) + 2, "n_frames": pa.array(np.full(n, 4), pa.int32()),
        "temporal": ["mean"] * n, "vector": vectors_array(vecs),
    }, schema=segment_schema(DIM)))
    store.table("videos").add(pa.Table.from_pylist([{"video_id": v, "uri": f"/x/{v}.mp4", "status": OK} for v in ids],
                                                   schema=VIDEO_SCHEMA))
    return ids


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "db"), create=True)
    s.ensure_vector_tables(DIM)
    _add(s, _unit(500, 0), 0)
    return s


def _lance_flat(store, q, limit, ids=None):
    query = store.table("clips").search(q).distance_type("dot").limit(limit).bypass_vector_index()
    if ids is not None:
        query = query.where("video_id IN (" + ", ".join(f"'{i}'" for i in sorted(ids)) + ")", prefilter=True)
    return query.select([*SEARCH_COLUMNS, "_distance"]).to_arrow()


def test_matches_lancedb_flat_search(store):
    for seed in range(5):
        q = _unit(1, 100 + seed)[0]
        ours = store.search_vectors("clips", q, 20)
        ref = _lance_flat(store, q, 20)
        assert ours.column_names == ref.column_names
        assert ours.column("video_id").to_pylist() == ref.column("video_id").to_pylist()
        assert ours.column("start_s").to_pylist() == ref.column("start_s").to_pylist()
        np.testing.assert_allclose(ours.column("_distance").to_numpy(), ref.column("_distance").to_numpy(), atol=1e-5)
    assert "clips" in store.exact._loaded  # served from memory, not by LanceDB


def test_video_id_restriction_and_short_results(store):
    q = _unit(1, 7)[0]
    allowed = {"v00003", "v00077", "v00420", "v99999"}
    ours = store.search_vectors("clips", q, 10, video_ids=allowed)
    ref = _lance_flat(store, q, 10, allowed)
    assert ours.num_rows == 3  # only the three existing allowed videos
    assert ours.column("video_id").to_pylist() == ref.column("video_id").to_pylist()
    assert store.search_vectors("clips", q, 10, video_ids=set()).num_rows == 0
    assert store.search_vectors("clips", q, 10_000).num_rows == 500


def test_new_commit_is_seen(store):
    q = _unit(1, 3)[0]
    before = store.search_vectors("clips", q, 1).column("video_id")[0].as_py()
    # a row identical to the query, committed through another handle (another process's ingest)
    other = Store.open(store.uri)
    _add(other, q[None, :], 9000)
    hit = store.search_vectors("clips", q, 1)
    assert hit.column("video_id")[0].as_py() == "v09000" != before
    assert hit.column("_distance")[0].as_py() == pytest.approx(0.0, abs=1e-5)


def test_over_budget_falls_back_to_lancedb(store):
    store.exact.max_bytes = 100 * DIM * 4  # room for 100 rows, the table has 500
    q = _unit(1, 11)[0]
    ours = store.search_vectors("clips", q, 10)
    assert ours.column("video_id").to_pylist() == _lance_flat(store, q, 10).column("video_id").to_pylist()
    assert "clips" not in store.exact._loaded


def test_lookup_indexes_created_and_kept_current(store):
    store.ensure_lookup_indexes()
    for name, column in (("videos", "video_id"), ("sources", "uri"), ("frames", "video_id"), ("clips", "video_id")):
        assert [column] in [ix.columns for ix in store.table(name).list_indices()], name
    store.optimize()
    assert store.table("clips").index_stats("video_id_idx").num_unindexed_rows == 0
    _add(store, _unit(10, 5), 600)
    assert store.table("clips").index_stats("video_id_idx").num_unindexed_rows == 10
    assert store.table("clips").search().where("video_id = 'v00605'").to_arrow().num_rows == 1  # scanned
    store.optimize()
    stats = store.table("clips").index_stats("video_id_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (510, 0)
    rows = store.table("clips").search().where("video_id = 'v00605'").to_arrow()
    assert rows.num_rows == 1


def test_memory_budget_is_set_from_the_api(store):
    import vidclip
    from conftest import TINY
    from vidclip.errors import QueryError

    lib = vidclip.open(store.uri, model=TINY, exact_memory_mb=0)
    assert lib.store.exact.max_bytes == 0 and not lib.store.exact.fits(lib.store.table("clips"))
    q = _unit(1, 13)[0]
    assert lib.store.search_vectors("clips", q, 5).column("video_id").to_pylist() == \
        _lance_flat(store, q, 5).column("video_id").to_pylist()
    assert vidclip.open(store.uri, model=TINY, exact_memory_mb=0.5).store.exact.max_bytes == 2**19
    for bad in (-1, "1", True):
        with pytest.raises(QueryError, match="exact_memory_mb"):
            vidclip.open(store.uri, model=TINY, exact_memory_mb=bad)


def test_video_directory_follows_status_and_budget(store):
    ids = {"v00001", "v00002", "v00003", "nope"}
    assert store.video_uris(ids) == {v: {"video_id": v, "uri": f"/x/{v}.mp4"} for v in ids - {"nope"}}
    # another process marks one video pending (a re-ingest in flight): it disappears at once
    other = Store.open(store.uri)
    other.table("videos").update(where="video_id = 'v00002'", values={"status": "pending"})
    assert set(store.video_uris(ids)) == {"v00001", "v00003"}
    assert set(store.videos_by_id(ids)) == {"v00001", "v00003"}  # the LanceDB path agrees
    # a filter goes to LanceDB; over budget, lookups go to LanceDB too, with the same answer
    assert set(store.video_uris(ids, where="uri = '/x/v00003.mp4'")) == {"v00003"}
    store.directory.max_bytes = 10
    store.directory.clear()
    assert store.directory.lookup(store.table("videos"), ids, OK) is None
    assert set(store.video_uris(ids)) == {"v00001", "v00003"}


def test_search_is_the_same_from_memory_and_from_lancedb(store):
    from vidclip.query.search import search_vector

    q = _unit(1, 21)[0]
    fast = search_vector(store, q, k=10, moments=False)
    store.exact.max_bytes = store.directory.max_bytes = 0
    slow = search_vector(store, q, k=10, moments=False)
    assert [(h.video_id, h.uri, h.clip_start_s) for h in fast] == [(h.video_id, h.uri, h.clip_start_s) for h in slow]
    np.testing.assert_allclose([h.score for h in fast], [h.score for h in slow], atol=1e-5)
    assert len(fast) == 10


def test_moments_when_a_speculated_video_drops_out(store):
    """Frames for the top groups are fetched beside the videos lookup; a top video that turns out
    not to be ok is replaced, and its replacement still gets a moment from its own frames."""
    from vidclip.query.search import search_vector
    from vidclip.store.schema import frame_schema

    clips = store.table("clips").to_arrow()
    n = clips.num_rows
    vecs = np.stack(clips.column("vector").to_numpy(zero_copy_only=False))
    start = clips.column("start_s").to_numpy()
    store.table("frames").add(pa.table({  # two frames inside each clip, both equal to the clip vector
        "video_id": pa.array(np.repeat(clips.column("video_id").to_numpy(zero_copy_only=False), 2)),
        "t": pa.array(np.repeat(start, 2) + np.tile([0.5, 1.5], n)),
        "vector": vectors_array(np.repeat(vecs, 2, axis=0)),
        "norm": pa.array(np.ones(2 * n, np.float32)),
    }, schema=frame_schema(DIM)))
    q = _unit(1, 33)[0]
    before = search_vector(store, q, k=5)
    assert all(h.best_t is not None for h in before)
    store.table("videos").update(where=f"video_id = '{before[0].video_id}'", values={"status": "pending"})
    after = search_vector(store, q, k=5)
    assert [h.video_id for h in after[:4]] == [h.video_id for h in before[1:]]
    assert after[4].video_id not in {h.video_id for h in before}
    assert all(h.best_t is not None and h.clip_start_s <= h.best_t <= h.clip_end_s for h in after)


def test_at_most_two_tables_are_held(store):
    """After a reindex switches tables, searching the new ones drops the oldest copy."""
    q = _unit(1, 41)[0]
    for name in ("clips_b", "clips_c"):
        store.create_table(name, segment_schema(DIM), store.table("clips").to_arrow())
    store.search_vectors("clips", q, 3)
    store.search_vectors("clips_b", q, 3)
    assert list(store.exact._loaded) == ["clips", "clips_b"]
    store.search_vectors("clips", q, 3)  # used again: now the most recent
    hits = store.search_vectors("clips_c", q, 3)
    assert list(store.exact._loaded) == ["clips", "clips_c"]  # clips_b, least recently used, dropped
    assert hits.column("video_id").to_pylist() == store.search_vectors("clips_b", q, 3).column("video_id").to_pylist()


def test_fts_matches_rows_added_after_the_index_without_rebuilding_it(store):
    def add(video_id, text):
        store.table("videos").add(pa.Table.from_pylist(
            [{"video_id": video_id, "uri": f"/x/{video_id}.mp4", "status": OK, "search_text": text}], schema=VIDEO_SCHEMA))

    add("t1", "forest trail at dawn")
    assert store.fts_search("forest", 10).column("video_id").to_pylist() == ["t1"]  # builds the index
    add("t2", "a forest river")
    assert sorted(store.fts_search("forest", 10).column("video_id").to_pylist()) == ["t1", "t2"]
    assert store.table("videos").index_stats("search_text_idx").num_unindexed_rows == 1  # scanned, not rebuilt
    store.optimize()
    assert store.table("videos").index_stats("search_text_idx").num_unindexed_rows == 0
