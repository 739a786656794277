"""--clips shots: clips follow the video's own cuts (ingest, in process)."""

import numpy as np
import pytest

import vidclip
from conftest import TINY
from vidclip.config import SamplingConfig
from vidclip.errors import StoreMismatchError
from vidclip.ingest.shots import MIN_SHOT_S, cuts_from_vectors, shot_windows
from vidclip.samples.shots import standard_script, write_shot_video

FPS = 25.0


def test_shot_clips_follow_the_cuts_and_are_recorded(tmp_path):
    script = standard_script()
    src = tmp_path / "videos"
    write_shot_video(src / "s.mp4", script, width=320, height=180, fps=FPS)
    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([src], SamplingConfig(fps=2.0, clip_seconds=5.0, clips="shots"), progress=False)
    assert report.ok == 1
    clips = lib.store.table("clips").to_arrow().sort_by("start_s").to_pylist()
    starts = np.array([c["start_s"] for c in clips])
    ends = np.array([c["end_s"] for c in clips])
    assert np.all(ends - starts <= 5.0 + 1e-6) and np.all(starts[1:] == ends[:-1])
    for b in script.boundaries(FPS):
        if b.kind == "cut":  # a clip starts at every hard cut (to the frame), none spans one
            assert np.abs(starts - b.t).min() <= 1 / FPS + 1e-6, b
    assert lib.store.meta["sampling"]["clips"] == "shots"
    with pytest.raises(StoreMismatchError):  # the store was cut at shots: fixed windows are refused
        lib.ingest([src], SamplingConfig(fps=2.0, clip_seconds=5.0), progress=False)


def test_fixed_clips_record_what_they_always_did():
    assert "clips" not in SamplingConfig().to_dict()  # stores written before --clips keep matching
    assert SamplingConfig(clips="shots").to_dict()["clips"] == "shots"
    assert MIN_SHOT_S > 0


def test_reindex_switches_between_fixed_and_shots_from_stored_frames(tmp_path):
    """A fixed store becomes a shot store (cuts from the stored frame vectors, to within one
    sampling interval) and back (the fixed windows ingest gives), without decoding; too sparse
    frames are refused with what to re-decode."""
    from vidclip.errors import StoreError
    from vidclip.learn.reindex import reindex

    script = standard_script()
    src = tmp_path / "videos"
    write_shot_video(src / "s.mp4", script, width=320, height=180, fps=FPS)
    lib = vidclip.open(tmp_path / "db", model=TINY)
    lib.ingest([src], SamplingConfig(fps=2.0, clip_seconds=5.0), progress=False)
    fixed_rows = sorted((c["start_s"], c["end_s"]) for c in lib.store.table("clips").to_arrow().to_pylist())

    frames = lib.store.table("frames").to_arrow().sort_by("t")
    t = np.array(frames.column("t").to_pylist())
    unit = np.stack(frames.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    cuts = cuts_from_vectors(t, unit)
    assert cuts  # even random weights tell some of these shots apart
    expected = shot_windows(cuts, float(lib.store.table("videos").to_arrow().column("duration_s")[0].as_py()), 5.0)
    expected = [(a, b) for a, b in expected if ((t >= a) & (t < b)).any() or b == expected[-1][1]]

    report = reindex(lib.store, "mean", clips="shots", progress=False)
    assert report.clip_mode == "shots" and lib.store.meta["sampling"]["clips"] == "shots"
    shots = sorted((c["start_s"], c["end_s"]) for c in lib.store.table(lib.store.segments["clip"]).to_arrow().to_pylist())
    np.testing.assert_allclose(shots, expected)  # the windows of the cuts in the stored frame vectors
    assert shots != fixed_rows and all(b - a <= 5.0 + 1e-6 for a, b in shots)
    assert lib.search("anything", k=1)  # the switched store answers

    back = reindex(lib.store, "mean", clips="fixed", progress=False)
    assert back.clip_mode == "fixed" and "clips" not in lib.store.meta["sampling"]
    again = sorted((c["start_s"], c["end_s"]) for c in lib.store.table(lib.store.segments["clip"]).to_arrow().to_pylist())
    assert again == fixed_rows  # exactly the windows ingest gave

    sparse = vidclip.open(tmp_path / "sparse", model=TINY)
    sparse.ingest([src], SamplingConfig(fps=0.5, clip_seconds=5.0), progress=False)
    with pytest.raises(StoreError, match="--clips shots"):
        reindex(sparse.store, "mean", clips="shots", progress=False)


def test_search_can_return_the_shot_as_the_moment(tmp_path):
    """With --clips shots the refined moment stays inside its shot; moment='clip' returns the shot."""
    script = standard_script()
    src = tmp_path / "videos"
    write_shot_video(src / "s.mp4", script, width=320, height=180, fps=FPS)
    lib = vidclip.open(tmp_path / "db", model=TINY)
    lib.ingest([src], SamplingConfig(fps=2.0, clip_seconds=5.0, clips="shots"), progress=False)
    cuts = [b.t for b in script.boundaries(FPS) if b.kind == "cut"]
    for rerank in (None, "max"):
        refined = lib.search("a shot", k=5, per_video=5, rerank=rerank)
        whole = lib.search("a shot", k=5, per_video=5, rerank=rerank, moment="clip")
        assert len(refined) == len(whole) == 5
        for h in refined:
            assert h.clip_start_s <= h.start_s < h.end_s <= h.clip_end_s
            assert not any(h.start_s < c < h.end_s for c in cuts)  # a moment never crosses a cut
        assert all((h.start_s, h.end_s) == (h.clip_start_s, h.clip_end_s) for h in whole)
    with pytest.raises(vidclip.QueryError):
        lib.search("a shot", moment="scene")


@pytest.mark.ray
@pytest.mark.slow
def test_shot_clips_are_the_same_on_ray(tmp_path):
    """The Ray job regroups frames into the decode stage's shots exactly as the in-process loop."""
    from pipelines.options import JobOptions
    from test_crash import row_set

    src = tmp_path / "videos"
    write_shot_video(src / "s.mp4", standard_script(), width=320, height=180, fps=FPS)
    sampling = SamplingConfig(fps=2.0, clip_seconds=5.0, clips="shots")
    local = vidclip.open(tmp_path / "local", model=TINY)
    local.ingest([src], sampling, progress=False)
    on_ray = vidclip.open(tmp_path / "ray", model=TINY)
    on_ray.ingest([src], sampling, progress=False, ray=JobOptions(decode_workers=1, batch_size=8))
    a, b = row_set(local.store), row_set(on_ray.store)
    assert a["clip_spans"] == b["clip_spans"] and a["frames"] == b["frames"]
    fixed_starts = {round(5.0 * i, 6) for i in range(12)}
    assert {s for _, _, s, _ in a["clip_spans"]} - fixed_starts  # shot starts, not the fixed grid
