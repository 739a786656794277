"""Re-aggregation from stored frames into new tables, the atomic switch, and what ingest does after it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import temporal
import vidclip
from conftest import LIBRARY_SPECS, SAMPLING, TINY
from vidclip.learn import reindex as reindex_module
from vidclip.errors import StoreError, StoreMismatchError
from vidclip.learn.reindex import clip_members, reindex
from vidclip.store.store import Store
from vidclip.samples.synth import VideoSpec, write_video


@pytest.fixture(scope="module")
def base_db(tmp_path_factory, video_dir):
    db = tmp_path_factory.mktemp("reindex") / "db"
    report = vidclip.open(db, model=TINY).ingest([video_dir], SAMPLING, progress=False)
    assert report.ok == len(LIBRARY_SPECS)
    return db


@pytest.fixture
def db(tmp_path, base_db):
    """A private copy of an ingested store (built with `mean`)."""
    shutil.copytree(base_db, tmp_path / "db")
    return tmp_path / "db"


def rows(store: Store, level: str) -> dict:
    tbl = store.table(store.segments[level]).to_arrow().to_pylist()
    return {(r["video_id"], r["clip_id"]): r for r in tbl}


def checkpoint(tmp_path, clip_model="vidclip-tiny", seed=0):
    torch.manual_seed(seed)
    module = temporal.build("seq_transformer", 64, layers=1, heads=2)
    out = tmp_path / f"ckpt-{clip_model}"
    temporal.save(module, out, clip_model=clip_model)
    return out


def test_clip_members_partition_by_time():
    t = np.array([0.2, 0.7, 1.2, 1.7, 2.0, 2.2, 3.9, 4.0])
    bounds = np.array([[0.0, 2.0], [2.0, 4.0]])
    assert [m.tolist() for m in clip_members(t, bounds)] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # last clip keeps its end
    # a clip whose window holds no sampled frame gets the frame on screen at its start
    assert [m.tolist() for m in clip_members(np.array([0.5, 3.0]), np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 4.0]]))] == [[0], [0], [1]]


def test_reindex_with_mean_reproduces_ingest_exactly(db):
    store = Store.open(str(db))
    clips_before, videos_before = rows(store, "clip"), rows(store, "video")
    report = reindex(store, "mean", batch_frames=10, progress=False)  # several streaming chunks
    assert report.videos == len(LIBRARY_SPECS) and report.clips == len(clips_before)
    assert report.frames == store.count("frames") and report.boundary_mismatches == 0
    assert store.segments == {"clip": "clips_1", "video": "video_vectors_1"} == report.tables
    assert report.dropped == ["clips", "video_vectors"]
    assert not store.has_table("clips") and not store.has_table("video_vectors")
    for before, after in ((clips_before, rows(store, "clip")), (videos_before, rows(store, "video"))):
        assert before.keys() == after.keys()
        for key, old in before.items():
            new = after[key]
            assert (new["start_s"], new["end_s"], new["n_frames"], new["temporal"]) == (
                old["start_s"], old["end_s"], old["n_frames"], old["temporal"])
            np.testing.assert_allclose(new["vector"], old["vector"], atol=1e-6)
    assert store.meta["temporal"] == {"name": "mean"}


def test_switch_is_one_meta_commit_and_old_tables_serve_until_then(db, monkeypatch):
    store = Store.open(str(db))
    calls = []
    real_set_meta = store.set_meta

    def spy(values):
        # at the moment of the switch the new tables are complete and the old ones still active
        calls.append((dict(values), store.segments, store.count("clips_1")))
        real_set_meta(values)

    monkeypatch.setattr(store, "set_meta", spy)
    reindex(store, "mean", progress=False)
    assert len(calls) == 1
    values, active_before, new_rows = calls[0]
    assert set(values) == {"segments", "temporal"}
    assert active_before == {"clip": "clips", "video": "video_vectors"}
    assert new_rows == store.count("clips_1") > 0


def test_failure_midway_leaves_the_old_tables_in_service(db, monkeypatch):
    store = Store.open(str(db))
    before = rows(store, "clip")
    real = reindex_module._aggregate_chunk
    seen = []

    def flaky(*args, **kwargs):
        seen.append(1)
        if len(seen) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(reindex_module, "_aggregate_chunk", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        reindex(store, "mean", batch_frames=10, progress=False)
    assert store.segments == {"clip": "clips", "video": "video_vectors"}
    assert not store.has_table("clips_1") and not store.has_table("video_vectors_1")
    assert rows(store, "clip").keys() == before.keys()
    hits = vidclip.open(db, create=False).search("anything", k=2)
    assert len(hits) == 2


def test_pending_videos_are_refused(db):
    store = Store.open(str(db))
    vid = next(iter(store.video_status()))
    store.table("videos").update(where=f"video_id = '{vid}'", values={"status": "pending"})
    with pytest.raises(StoreError, match="1 video\\(s\\) are pending"):
        reindex(store, "mean", progress=False)
    assert store.segments == {"clip": "clips", "video": "video_vectors"} and not store.has_table("clips_1")


def test_checkpoint_from_another_clip_model_is_refused(db, tmp_path):
    store = Store.open(str(db))
    with pytest.raises(StoreMismatchError, match="trained on CLIP model 'ViT-B-32'"):
        reindex(store, str(checkpoint(tmp_path, clip_model="ViT-B-32")), progress=False)
    assert store.meta["temporal"] == {"name": "mean"} and not store.has_table("clips_1")


def test_reindexed_store_ingests_and_searches_with_the_new_module(db, tmp_path):
    ckpt = checkpoint(tmp_path)
    store = Store.open(str(db))
    report = reindex(store, str(ckpt), progress=False)
    spec = {"name": "seq_transformer", "checkpoint": str(ckpt.resolve()), "fingerprint": temporal.fingerprint(ckpt)}
    assert report.temporal == spec and store.meta["temporal"] == spec
    clips = rows(store, "clip")
    assert {r["temporal"] for r in clips.values()} == {"seq_transformer"}
    # clip vectors are the checkpoint's output on the clip's frames
    module = temporal.load(ckpt)
    key, row = next(iter(sorted(clips.items())))
    frames = store.table("frames").search().where(f"video_id = '{key[0]}'").limit(None).to_arrow().to_pylist()
    frames = sorted((f for f in frames if row["start_s"] <= f["t"] < row["end_s"]), key=lambda f: f["t"])
    x = torch.tensor(np.stack([f["vector"] for f in frames]), dtype=torch.float32)[None]  # (1, T, D)
    want = module(x, torch.ones(1, x.shape[1], dtype=torch.bool))[0].detach().numpy()
    np.testing.assert_allclose(row["vector"], want, atol=1e-5)

    # a new video ingested later is aggregated by the checkpoint's module, into the new tables
    new = tmp_path / "new" / "extra.mp4"
    new.parent.mkdir()
    write_video(new, VideoSpec(codec="h264", width=160, height=120, duration_s=4.0, seed=9, scene_seconds=2.0))
    lib = vidclip.open(db, create=False)
    assert lib.ingest([new], progress=False).ok == 1
    store = lib.store
    extra = store.table(store.segments["clip"]).search().where(f"video_id IN ({_ids(store, str(new))})").limit(None).to_arrow()
    assert extra.num_rows == 2 and set(extra.column("temporal").to_pylist()) == {"seq_transformer"}
    assert store.count(store.segments["video"]) == len(LIBRARY_SPECS) + 1
    hits = lib.search("anything", k=10)
    assert str(new) in {h.uri for h in hits}

    # a changed checkpoint is noticed on the next open
    temporal.save(temporal.build("seq_transformer", 64, layers=1, heads=2), ckpt, clip_model="vidclip-tiny")
    with pytest.raises(StoreMismatchError, match="changed"):
        vidclip.open(db, create=False).ingest([new], progress=False)

    # and reindexing back to mean works from the generation-1 tables
    report = reindex(Store.open(str(db)), "mean", progress=False)
    assert report.tables == {"clip": "clips_2", "video": "video_vectors_2"}
    assert report.dropped == ["clips_1", "video_vectors_1"] and report.videos == len(LIBRARY_SPECS) + 1


def _ids(store: Store, uri: str) -> str:
    vid = store.sources()[uri]["video_id"]
    return f"'{vid}'"


def test_low_and_variable_frame_rate_clips_are_reproduced_exactly(tmp_path):
    """A frame sampled for a clip can carry a time before the clip's start (the frame on screen at
    the clip's first target began earlier): reindex must still give each clip ingest's frames."""
    folder = tmp_path / "vfr"
    folder.mkdir()
    write_video(folder / "vfr.mp4", VideoSpec(fps=3, duration_s=7.3, vfr=True, seed=1, width=96, height=64))
    write_video(folder / "slow.mp4", VideoSpec(fps=1.3, duration_s=9.0, seed=5, width=96, height=64))
    lib = vidclip.open(tmp_path / "db", model=TINY)
    sampling = vidclip.SamplingConfig(fps=1.0, clip_seconds=1.0)
    assert lib.ingest([folder], sampling, progress=False).ok == 2
    store = lib.store
    before = rows(store, "clip")
    # the time rule alone would not do: some frame sits before the start of the clip it was sampled for
    moved = 0
    for vid in {k[0] for k in before}:
        t = np.array(sorted(f["t"] for f in store.table("frames").search().where(f"video_id = '{vid}'").limit(None).to_arrow().to_pylist()))
        clips = sorted((r for k, r in before.items() if k[0] == vid), key=lambda r: r["start_s"])
        bounds = np.array([[r["start_s"], r["end_s"]] for r in clips])
        by_time = clip_members(t, bounds)
        replayed = reindex_module.replay_members(t, float(store.videos_by_id([vid])[vid]["duration_s"]), sampling,
                                                 [r["clip_id"] for r in clips], bounds)
        assert replayed is not None
        moved += sum(a.tolist() != b.tolist() for a, b in zip(by_time, replayed))
    assert moved > 0
    report = reindex(store, "mean", progress=False)
    assert report.by_time == 0
    after = rows(store, "clip")
    assert after.keys() == before.keys()
    for key in before:
        assert after[key]["n_frames"] == before[key]["n_frames"]
        np.testing.assert_allclose(after[key]["vector"], before[key]["vector"], atol=1e-6)
