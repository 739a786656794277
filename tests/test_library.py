"""End to end through the Python API: real videos, a real tiny open_clip model, a real LanceDB dir."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import vidclip
from conftest import LIBRARY_SPECS, SAMPLING, TINY
from vidclip.config import ModelConfig, SamplingConfig
from vidclip.errors import QueryError, StoreMismatchError
from vidclip.samples.synth import draw_frame


@pytest.fixture
def ingested(tmp_path, videos):
    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([videos], SAMPLING, progress=False)
    return lib, report, videos


def test_ingest_reports_and_stores_every_table(ingested):
    lib, report, _ = ingested
    assert report.ok == len(LIBRARY_SPECS) and report.failed == 0 and report.skipped == 0
    # fps=2 -> one frame per 0.5 s of each video
    expected_frames = sum(int(s.duration_s * 2) for s in LIBRARY_SPECS.values())
    assert report.frames == expected_frames
    assert report.clips == sum(int(s.duration_s / 2 + 0.5) for s in LIBRARY_SPECS.values())
    store = lib.store
    assert store.count("videos", "status = 'ok'") == report.ok
    assert store.count("frames") == report.frames
    assert store.count("clips") == report.clips
    assert store.count("video_vectors") == report.ok
    rows = store.table("videos").to_arrow().to_pylist()
    by_name = {r["uri"].rsplit("/", 1)[-1]: r for r in rows}
    rot = by_name["h264_rot90.mp4"]
    assert (rot["width"], rot["height"], rot["rotation"]) == (240, 320, 90)
    assert by_name["vp9_256x144.webm"]["codec"] == "vp9"
    # 1 frame in 5: PyAV, which drops unplanned B-frames, serves H.264 and HEVC; decord the rest
    assert {n: r["decoder"] for n, r in by_name.items()} == {
        n: "pyav" if r["codec"] in ("h264", "hevc") else "decord" for n, r in by_name.items()}
    assert all(r["decoder_note"] == "" for r in rows)
    # vectors are normalised
    vecs = np.stack(store.table("clips").to_arrow().column("vector").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", ["h264_320x240.mp4", "vp9_256x144.webm", "sub/h264_640x360.mp4", "h264_rot90.mp4"])
def test_image_query_finds_the_video_and_the_moment(ingested, name):
    lib, _, videos = ingested
    spec = LIBRARY_SPECS[name]
    for t in (0.6, spec.duration_s - 1.4):
        frame = draw_frame(spec, t)
        hits = lib.search(image=frame, k=3)
        top = hits[0]
        assert top.uri == str(videos / name)
        assert top.start_s <= t < top.end_s, (t, top)
        assert top.score > hits[1].score


def test_text_query_returns_ranked_hits_one_per_video(ingested):
    lib, report, _ = ingested
    hits = lib.search("a red ball bouncing", k=10)
    assert len(hits) == report.ok  # every video once, no more
    assert len({h.video_id for h in hits}) == len(hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.end_s > h.start_s for h in hits)


def test_per_video_and_video_level(ingested):
    lib, report, _ = ingested
    hits = lib.search("anything", k=50, per_video=2)
    counts = {}
    for h in hits:
        counts[h.video_id] = counts.get(h.video_id, 0) + 1
    assert max(counts.values()) == 2 and len(hits) == sum(min(2, n) for n in _clips_per_video(lib).values())
    whole = lib.search("anything", k=10, level="video")
    # start_s/end_s are now the refined moment; the whole-video span is clip_start_s/clip_end_s
    assert len(whole) == report.ok and all(h.clip_id is None and h.clip_start_s == 0.0 <= h.start_s for h in whole)
    assert {h.video_id for h in whole} == set(_clips_per_video(lib))
    table = whole.to_arrow()
    assert table.column_names[:6] == ["video_id", "uri", "start_s", "end_s", "score", "clip_id"]
    assert {"clip_start_s", "clip_end_s", "best_t"} <= set(table.column_names)


def _clips_per_video(lib):
    ids = lib.store.table("clips").to_arrow().column("video_id").to_pylist()
    return {v: ids.count(v) for v in set(ids)}


def test_rerun_adds_nothing_and_renamed_file_is_recognised(ingested, tmp_path):
    lib, first, videos = ingested
    before = {t: lib.store.count(t) for t in ("videos", "frames", "clips", "video_vectors")}
    again = lib.ingest([videos], progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, first.ok)
    shutil.move(videos / "h264_320x240.mp4", videos / "renamed.mp4")
    shutil.copy(videos / "vp9_256x144.webm", videos / "copy_of_vp9.webm")
    third = vidclip.open(lib.uri).ingest([videos], progress=False)
    assert (third.ok, third.failed, third.skipped) == (0, 0, first.ok + 1)
    assert before == {t: lib.store.count(t) for t in ("videos", "frames", "clips", "video_vectors")}
    sources = lib.store.sources()
    assert sources[str(videos / "renamed.mp4")]["video_id"] == sources[str(videos / "h264_320x240.mp4")]["video_id"]
    assert sources[str(videos / "copy_of_vp9.webm")]["video_id"] == sources[str(videos / "vp9_256x144.webm")]["video_id"]


def test_store_refuses_another_model_or_sampling(ingested):
    lib, _, videos = ingested
    other_seed = ModelConfig(name=TINY.name, pretrained="none", config_path=TINY.config_path, seed=7)
    with pytest.raises(StoreMismatchError, match="model"):
        vidclip.open(lib.uri, model=other_seed).search("x")
    with pytest.raises(StoreMismatchError, match="model"):
        vidclip.open(lib.uri, model="ViT-B-32")
    with pytest.raises(StoreMismatchError, match="sampling"):
        vidclip.open(lib.uri).ingest([videos], SamplingConfig(fps=5.0), progress=False)


def test_reopened_store_uses_its_recorded_model(ingested):
    lib, _, videos = ingested
    q = draw_frame(LIBRARY_SPECS["vp9_256x144.webm"], 1.2)
    again = vidclip.open(lib.uri)  # no model given: the store's own, rebuilt from its seed
    assert again.model_config.name == TINY.name
    assert again.search(image=q, k=1)[0].uri == str(videos / "vp9_256x144.webm")


def test_interrupted_commit_is_invisible_then_repaired(ingested):
    lib, report, videos = ingested
    store = lib.store
    vid = store.table("videos").to_arrow().column("video_id").to_pylist()[0]
    # Simulate a crash between the data append and the 'ok' commit of one video.
    store.table("videos").update(where=f"video_id = '{vid}'", values={"status": "pending"})
    hits = lib.search("anything", k=50, per_video=100)
    assert vid not in {h.video_id for h in hits}
    assert store.repair() == 1
    assert store.count("clips", f"video_id = '{vid}'") == 0 and store.count("frames", f"video_id = '{vid}'") == 0
    redo = vidclip.open(lib.uri).ingest([videos], progress=False)
    assert redo.ok == 1 and redo.skipped == report.ok - 1
    assert store.count("clips") == report.clips and store.count("frames") == report.frames


def test_query_errors_are_clear(ingested, tmp_path):
    lib, _, _ = ingested
    with pytest.raises(QueryError):
        lib.search("   ")
    with pytest.raises(QueryError):
        lib.search("x", k=0)
    with pytest.raises(QueryError):
        lib.search("x", level="scene")
    empty = vidclip.open(tmp_path / "empty", model=TINY)
    with pytest.raises(QueryError, match="empty"):
        empty.search("x")


def test_changed_content_at_same_path_replaces_old_rows(ingested):
    from vidclip.samples.synth import VideoSpec, write_video

    lib, first, videos = ingested
    path = videos / "vp9_256x144.webm"
    old_id = lib.store.sources()[str(path)]["video_id"]
    write_video(path, VideoSpec(codec="vp9", width=256, height=144, duration_s=2.0, seed=99, scene_seconds=2.0))
    report = lib.ingest([videos], progress=False)
    assert (report.ok, report.skipped) == (1, first.ok - 1)
    new_id = lib.store.sources()[str(path)]["video_id"]
    assert new_id != old_id
    for table in ("videos", "frames", "clips", "video_vectors"):
        assert lib.store.count(table, f"video_id = '{old_id}'") == 0, table
    assert lib.store.count("videos") == first.ok
    assert lib.store.count("clips", f"video_id = '{new_id}'") == 1
    # the file now holds garbage: it is recorded failed, and the old rows stay gone
    path.write_bytes(b"garbage" * 100)
    report = lib.ingest([videos], progress=False)
    assert report.failed == 1 and lib.store.count("clips", f"video_id = '{new_id}'") == 0


def test_keyframes_mode_end_to_end(tmp_path):
    """mode="keyframes" samples only keyframes (here one every 1.5 s) and records the mode in the store."""
    from vidclip.samples.synth import VideoSpec, write_video

    spec = VideoSpec(fps=10, duration_s=6.0, gop=15, seed=21, scene_seconds=2.0)
    path = write_video(tmp_path / "gop.mp4", spec)
    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([path], SamplingConfig(mode="keyframes", fps=1.0, clip_seconds=3.0), progress=False)
    assert report.ok == 1
    times = sorted(lib.store.table("frames").to_arrow().column("t").to_pylist())
    assert times == [0.0, 1.5, 3.0, 4.5]  # every keyframe once, nothing else
    assert lib.store.meta["sampling"]["mode"] == "keyframes"
    assert lib.search(image=draw_frame(spec, 4.6), k=1)[0].clip_start_s == 3.0
