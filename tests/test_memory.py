"""Memory stays bounded whatever the video length: a long low-resolution video is ingested with
the same peak memory as a short one, and with the right number of samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from vidclip.samples.synth import VideoSpec, write_video

pytestmark = pytest.mark.slow

MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import vidclip
    from conftest import TINY
    from vidclip.config import SamplingConfig

    lib = vidclip.open({db!r}, model=TINY)
    report = lib.ingest([{video!r}], SamplingConfig(fps=1.0, clip_seconds=10.0), progress=False)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({{"ok": report.ok, "frames": report.frames, "clips": report.clips, "own_kb": own, "child_kb": child}}))
    """
)


def measure(tmp_path, video, name):
    tests = os.path.dirname(os.path.abspath(__file__))
    code = MEASURE.format(tests=tests, db=str(tmp_path / f"db_{name}"), video=str(video))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_peak_memory_is_independent_of_duration(tmp_path):
    short = write_video(tmp_path / "short.mp4", VideoSpec(width=96, height=64, fps=5, duration_s=60, scene_seconds=10))
    long = write_video(tmp_path / "long.mp4", VideoSpec(width=96, height=64, fps=5, duration_s=900, scene_seconds=10))
    a = measure(tmp_path, short, "short")
    b = measure(tmp_path, long, "long")
    # correct sample count: one frame per second, clips of 10 s
    assert (a["frames"], a["clips"]) == (60, 6)
    assert (b["frames"], b["clips"]) == (900, 90)
    # 15x the duration, the same peak memory (driver and decode child) within a small margin
    for key in ("own_kb", "child_kb"):
        growth_mb = (b[key] - a[key]) / 1024
        assert growth_mb < 40, (key, a[key], b[key])
