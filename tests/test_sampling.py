import numpy as np
import pytest

from vidclip.config import SamplingConfig
from vidclip.errors import InputError
from vidclip.ingest.sampling import cut_clips, plan_samples, select_for_clip


def test_cut_clips_bounds_cover_video_and_absorb_short_tail():
    assert cut_clips(3.0, 10.0).tolist() == [[0.0, 3.0]]  # shorter video: one clip
    assert cut_clips(14.9, 10.0).tolist() == [[0.0, 14.9]]  # tail < half a clip joins the last clip
    assert cut_clips(15.1, 10.0).tolist() == [[0.0, 10.0], [10.0, 15.1]]
    b = cut_clips(95.0, 10.0)
    assert b[0, 0] == 0.0 and b[-1, 1] == 95.0
    assert np.all(b[1:, 0] == b[:-1, 1])  # contiguous


def test_fps_sampling_picks_frame_on_screen_at_each_target():
    timeline = np.arange(300) / 30.0  # 10 s at 30 fps
    plan = plan_samples(timeline, 10.0, SamplingConfig(fps=2.0, clip_seconds=4.0))
    times = timeline[plan.frame_index]
    targets = np.arange(0.25, 10.0, 0.5)
    assert len(times) == len(targets)
    assert np.all(times <= targets + 1e-9) and np.all(targets - times < 1 / 30.0)
    # clips: [0,4) [4,8) [8,10): frames land in the window holding their target time
    assert plan.clip_bounds.tolist() == [[0, 4], [4, 8], [8, 10]]
    assert np.all(plan.clip_bounds[plan.clip_of, 0] <= times + 1 / 30.0)


def test_vfr_timeline_uses_true_pts():
    # frames every 0.1 s for 2 s, then one frame held for 3 s, then 0.1 s again
    timeline = np.concatenate([np.arange(0, 2, 0.1), [2.0], np.arange(5.0, 6.0, 0.1)])
    plan = plan_samples(timeline, 6.0, SamplingConfig(fps=1.0))
    times = timeline[plan.frame_index]
    # targets 0.5..5.5: 2.5, 3.5 and 4.5 all show the frame at 2.0 -> it is sampled once
    assert list(np.round(times, 6)) == [0.5, 1.5, 2.0, 5.5]


def test_uniform_mode_gives_n_frames_per_clip():
    timeline = np.arange(0, 20, 0.04)  # 25 fps, 20 s
    plan = plan_samples(timeline, 20.0, SamplingConfig(mode="uniform", clip_seconds=10.0, max_frames=8))
    assert plan.n_clips == 2
    assert np.bincount(plan.clip_of).tolist() == [8, 8]
    assert np.all(np.diff(plan.frame_index) > 0)


def test_video_shorter_than_one_sample_interval_still_gets_a_frame():
    plan = plan_samples(np.array([0.0, 0.04]), 0.08, SamplingConfig(fps=1.0))
    assert len(plan.frame_index) == 1 and plan.n_clips == 1


def test_select_for_clip_is_uniform_and_capped():
    assert select_for_clip(5, 12).tolist() == [0, 1, 2, 3, 4]
    sel = select_for_clip(100, 12)
    assert len(sel) == 12 and sel[0] == 0 and sel[-1] == 99


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"clip_seconds": -1}, {"max_frames": 0}, {"mode": "bogus"}])
def test_bad_sampling_settings_are_refused(kwargs):
    with pytest.raises(InputError):
        SamplingConfig(**kwargs)
