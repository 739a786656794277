"""--clips shots: clips follow the video's own cuts (ingest, in process)."""

import numpy as np
import pytest

import vidclip
from conftest import TINY
from vidclip.config import SamplingConfig
from vidclip.errors import StoreMismatchError
from vidclip.ingest.shots import MIN_SHOT_S
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
