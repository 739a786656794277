"""vidclip.store.eventloop: vector searches through LanceDB's async API on the caller's own event
loop, and LanceDB's sync API where the caller already runs a loop (a notebook)."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pyarrow as pa
import pytest

from vidclip.store import eventloop
from vidclip.store import index as vindex
from vidclip.store.schema import OK, VIDEO_SCHEMA, segment_schema, vectors_array
from vidclip.store.store import Store

DIM = 32


async def _running_loop():
    return asyncio.get_running_loop()


def _own_loop():
    return eventloop.run_here(_running_loop)


def test_each_thread_awaits_on_its_own_loop_and_a_running_loop_is_left_alone():
    here = _own_loop()
    assert isinstance(here, asyncio.AbstractEventLoop) and not here.is_running()
    assert _own_loop() is here  # kept for the thread's next call
    other = []
    t = threading.Thread(target=lambda: other.append(_own_loop()))
    t.start()
    t.join()
    assert other[0] is not here

    called = []

    async def inside():
        return eventloop.run_here(lambda: called.append(1))  # a notebook cell: a loop already runs here

    assert asyncio.run(inside()) is eventloop.NOT_RUN
    assert called == []


@pytest.mark.skipif(not os.path.exists("/proc/self/fdinfo"), reason="Linux: fork and /proc/self/fdinfo")
@pytest.mark.filterwarnings("ignore:lance is not fork-safe")  # the child touches no Lance object
def test_a_forked_child_makes_its_own_loop():
    parent = _own_loop()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new loop, not the parent's copy (whose self-pipe both would share)
        ok = _own_loop() is not parent and eventloop.run_here(lambda: asyncio.sleep(0, result=7)) == 7
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)

    # The parent's loop still wakes from other threads: its wake-up socket is still in its epoll set
    # (the kernel's list, /proc/self/fdinfo; a child closing its copy of the loop would unregister it there).
    with open(f"/proc/self/fdinfo/{parent._selector.fileno()}") as f:
        watched = {int(line.split()[1]) for line in f if line.startswith("tfd:")}
    assert parent._ssock.fileno() in watched


def _add(store: Store, vecs: np.ndarray, start: int) -> None:
    n = len(vecs)
    ids = [f"v{i:06d}" for i in range(start, start + n)]
    store.table(store.segments["clip"]).add(pa.table({
        "video_id": ids, "clip_id": pa.array(np.zeros(n), pa.int32()), "start_s": np.zeros(n), "end_s": np.ones(n),
        "n_frames": pa.array(np.ones(n), pa.int32()), "temporal": ["mean"] * n, "vector": vectors_array(vecs),
    }, schema=segment_schema(DIM)))
    store.table("videos").add(pa.Table.from_pylist([{"video_id": v, "uri": f"/x/{v}.mp4", "status": OK} for v in ids],
                                                   schema=VIDEO_SCHEMA))


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_async_and_sync_searches_give_the_same_rows_and_see_new_commits(tmp_path):
    store = Store.open(str(tmp_path / "db"), create=True)
    store.ensure_vector_tables(DIM)
    _add(store, _unit(2000, 0), 0)
    vindex.build_index(store, force=True)  # IVF_RQ: searched with its recorded nprobes / refine factor
    table = store.segments["clip"]
    opts = vindex.query_options(store, table)
    assert opts["nprobes"]
    queries = _unit(8, 1)

    def rows(q, **extra):
        t = store.search_vectors(table, q, 10, nprobes=opts["nprobes"], refine_factor=opts["refine_factor"], **extra)
        return list(zip(t.column("video_id").to_pylist(), t.column("clip_id").to_pylist(),
                        np.round(t.column("_distance").to_numpy(), 5).tolist()))

    def sync_rows(q):  # LanceDB's synchronous API, as search_vectors used before
        query = store.table(table).search(q).distance_type("dot").limit(10).nprobes(opts["nprobes"])
        if opts["refine_factor"]:
            query = query.refine_factor(opts["refine_factor"])
        t = query.select(["video_id", "clip_id", "_distance"]).to_arrow()
        return list(zip(t.column("video_id").to_pylist(), t.column("clip_id").to_pylist(),
                        np.round(t.column("_distance").to_numpy(), 5).tolist()))

    async def in_a_running_loop(q):  # a notebook: search_vectors falls back to the sync API
        return rows(q)

    for q in queries:
        expected = sync_rows(q)
        assert len(expected) == 10
        assert rows(q) == expected
        assert asyncio.run(in_a_running_loop(q)) == expected
        allowed = {v for v, _, _ in expected[::2]}
        assert rows(q, video_ids=allowed) == [r for r in expected if r[0] in allowed]  # prefiltered
    assert set(store._async_tables) == {table}  # the async API answered on this thread

    # another handle's commit is seen by the next search (strong consistency on both connections)
    other = Store.open(str(tmp_path / "db"))
    new = _unit(1, 2)
    _add(other, new, 900_000)
    assert rows(new[0])[0][0] == "v900000"
    assert sync_rows(new[0])[0][0] == "v900000"

    # a table the store reopens (replaced) is reopened on the async side too
    data = store.table(table).to_arrow()
    store.replace_table(table, data.schema, [data.slice(0, 100)])
    assert {v for v, _, _ in rows(queries[0])} <= set(data.slice(0, 100).column("video_id").to_pylist())
