"""The shot-detection ground truth: generated videos really cut where their script says, and the
boundary score matches detections one to one within the tolerance."""

import numpy as np
import pytest

from vidclip.samples.shots import Boundary, Shot, ShotScript, Transition, score_boundaries, standard_script, write_shot_video

FPS = 25.0


@pytest.fixture(scope="module")
def shot_video(tmp_path_factory):
    script = standard_script()
    path = write_shot_video(tmp_path_factory.mktemp("shots") / "s.mp4", script, width=160, height=90, fps=FPS)
    return script, str(path)


def _frame_differences(path):
    """(N,) pts seconds and (N,) mean absolute difference of each frame to the one before (gray 40x24)."""
    import av

    times, diffs, last = [], [], None
    with av.open(path) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            g = f.to_ndarray(format="gray", width=40, height=24).astype(np.float32)
            times.append(float(f.pts * s.time_base))
            diffs.append(0.0 if last is None else float(np.abs(g - last).mean()))
            last = g
    return np.array(times), np.array(diffs)


def test_the_video_cuts_where_the_script_says(shot_video):
    script, path = shot_video
    truth = script.boundaries(FPS)
    assert [b.kind for b in truth] == ["cut", "cut", "dissolve", "cut", "cut", "dissolve", "cut", "cut", "dissolve"]
    times, diffs = _frame_differences(path)
    assert times[-1] == pytest.approx(script.duration_s - 1 / FPS, abs=1 / FPS)
    cuts = [b.t for b in truth if b.kind == "cut"]
    inside = np.ones(len(times), bool)  # frames inside shots, away from every transition and the flash
    for b in truth:
        inside &= (times < b.start_s - 0.1) | (times > b.end_s + 0.1)
    flash_start = script.starts()[4] + script.shots[4].seconds / 2
    inside &= np.abs(times - flash_start) > 0.2
    for t in cuts:
        i = int(np.argmin(np.abs(times - t)))
        assert times[i] == pytest.approx(t, abs=1e-3)  # a cut falls on a frame
        assert diffs[i] > 2 * diffs[inside].max(), (t, diffs[i], diffs[inside].max())  # fast motion included
    # a dissolve changes the picture gradually: no single step inside it is as large as a cut's
    smallest_cut = min(diffs[int(np.argmin(np.abs(times - t)))] for t in cuts)
    for b in truth:
        if b.kind == "dissolve":
            span = (times >= b.start_s) & (times <= b.end_s)
            assert span.sum() >= 0.5 * FPS * (b.end_s - b.start_s) and diffs[span].max() < smallest_cut
    # the false-cut baits are there: the flash is a large change inside a shot, the fast shot moves
    assert diffs[np.abs(times - flash_start) < 0.1].max() > diffs[inside].max()
    fast = (times > script.starts()[2] + 0.3) & (times < script.starts()[3] - 0.6)
    static = (times > script.starts()[1] + 0.2) & (times < script.starts()[2] - 0.2)
    assert diffs[fast].mean() > 3 * diffs[static].mean()


def test_cuts_are_off_the_one_second_grid():
    for b in standard_script().boundaries(FPS):
        assert min(b.t % 0.5, 0.5 - b.t % 0.5) > 0.05  # off the 1 s grid and its midpoints (1 fps sampling targets)


def test_score_matches_one_to_one_within_the_tolerance():
    truth = [Boundary("cut", 3.4, 3.4), Boundary("dissolve", 10.0, 11.0), Boundary("cut", 20.0, 20.0)]
    assert score_boundaries([3.4, 10.5, 20.0], truth)["f1"] == 1.0
    r = score_boundaries([3.0, 3.5, 11.4, 25.0], truth)  # two near the first cut: one counts
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1)
    assert r["recall_by_kind"] == {"cut": 0.5, "dissolve": 1.0}
    assert score_boundaries([3.95], truth)["tp"] == 0  # 0.55 s off a cut
    assert score_boundaries([9.6], truth)["tp"] == 1  # within 0.5 s of the dissolve's span
    assert score_boundaries([], truth) == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 3,
                                           "recall_by_kind": {"cut": 0.0, "dissolve": 0.0}}


def test_a_script_refuses_what_cannot_be_drawn():
    with pytest.raises(ValueError):
        Shot(0.0)
    with pytest.raises(ValueError):
        Shot(2.0, "zoom")
    with pytest.raises(ValueError):
        Transition("dissolve", 0.0)
    with pytest.raises(ValueError):
        ShotScript((Shot(2.0), Shot(0.5)), (Transition("dissolve", 1.0),))
    with pytest.raises(ValueError):
        ShotScript((Shot(2.0), Shot(2.0)), ())


def test_random_scripts_are_drawable_and_the_same_for_a_seed():
    from vidclip.samples.shots import random_script

    a, b, c = random_script(10), random_script(10), random_script(11)
    assert a == b and a != c
    assert len(a.shots) == 9 and all(1.6 <= s.seconds <= 8.0 for s in a.shots)
    kinds = {t.kind for seed in range(10, 16) for t in random_script(seed).transitions}
    assert kinds == {"cut", "dissolve"}
