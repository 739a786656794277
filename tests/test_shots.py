"""vidclip.ingest.shots: cut and dissolve detection on generated videos with known boundaries,
and clip windows from cuts."""

import av
import numpy as np
import pytest

from vidclip.ingest.shots import cuts_from_thumbnails, cuts_from_vectors, dissolves_from_thumbnails, shot_windows
from vidclip.samples.shots import Shot, ShotScript, Transition, score_boundaries, standard_script, write_shot_video

FPS = 25.0


def _thumbnails(path, drop_every_other=False):
    times, thumbs = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for k, f in enumerate(c.decode(s)):
            if drop_every_other and k % 2:
                continue
            times.append(float(f.pts * s.time_base))
            thumbs.append(f.to_ndarray(format="gray", width=32, height=18))
    order = np.argsort(times)
    return np.asarray(times)[order], np.stack(thumbs)[order]


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    script = standard_script()
    path = write_shot_video(tmp_path_factory.mktemp("shots") / "s.mp4", script, width=320, height=180, fps=FPS)
    return script, path


@pytest.mark.parametrize("sparse", [False, True])
def test_every_hard_cut_is_found_at_its_frame_and_nothing_else_is_a_cut(standard, sparse):
    """Hard cuts exactly, from every frame or from every other one (as when B-frames are dropped);
    no cut inside the static, fast, flash or long shots."""
    script, path = standard
    times, thumbs = _thumbnails(path, drop_every_other=sparse)
    truth = script.boundaries(FPS)
    cuts = cuts_from_thumbnails(times, thumbs)
    expected = [b.t for b in truth if b.kind == "cut"]
    assert len(cuts) == len(expected)
    assert np.abs(np.array(cuts) - np.array(expected)).max() <= (2 if sparse else 1) / FPS + 1e-6
    dissolves = dissolves_from_thumbnails(times, thumbs, cuts)
    score = score_boundaries(sorted(cuts + dissolves), truth, tolerance_s=0.5)
    assert score["precision"] == 1.0  # no flash, pan or fast motion taken for a transition
    assert score["recall_by_kind"]["cut"] == 1.0  # dissolves: reported by `vidclip bench shots`, not promised


def test_a_flash_and_fast_motion_alone_give_no_cut(tmp_path):
    script = ShotScript((Shot(3.0, "flash", 1), Shot(3.0, "fast", 2)), (Transition("dissolve", 1.0),))
    times, thumbs = _thumbnails(write_shot_video(tmp_path / "f.mp4", script, 160, 90, FPS))
    assert cuts_from_thumbnails(times, thumbs) == []


def test_cuts_from_sampled_vectors_fall_between_the_samples():
    times = np.arange(0.5, 12.0, 1.0)  # 1 frame/s
    rng = np.random.default_rng(0)
    shots = [rng.normal(size=16) for _ in range(3)]
    which = np.searchsorted([4.2, 8.7], times)  # shots change at 4.2 s and 8.7 s
    v = np.stack([shots[w] + 0.05 * rng.normal(size=16) for w in which])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert cuts_from_vectors(times, v) == [4.0, 9.0]  # the midpoints of the samples around each cut


def test_shot_windows_split_long_shots_and_merge_short_ones():
    w = shot_windows([3.4, 3.9, 20.0], duration_s=30.0, max_seconds=10.0, min_seconds=1.0)
    # 3.9 is 0.5 s after 3.4: dropped; 3.4-20.0 (16.6 s) is split in two; 20-30 stays one
    np.testing.assert_allclose(w, [[0.0, 3.4], [3.4, 11.7], [11.7, 20.0], [20.0, 30.0]])
    assert np.all(w[1:, 0] == w[:-1, 1]) and w[0, 0] == 0.0 and w[-1, 1] == 30.0
    np.testing.assert_allclose(shot_windows([29.5], 30.0, 10.0), [[0.0, 10.0], [10.0, 20.0], [20.0, 30.0]])
    np.testing.assert_allclose(shot_windows([], 4.0, 10.0), [[0.0, 4.0]])
