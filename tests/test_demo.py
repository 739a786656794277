"""The README's first set-up command ends in `vidclip demo`: sample videos, a local Ray ingest into a
LanceDB folder, searches that print hits.  Run it as a user would, twice."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.ray
def test_demo_ingests_on_local_ray_and_searches_then_a_rerun_skips(tmp_path, cli_env):
    folder = tmp_path / "demo"
    run = lambda: subprocess.run([sys.executable, "-m", "vidclip", "demo", str(folder), "--json"],  # noqa: E731
                                 env=cli_env, capture_output=True, text=True, timeout=1200)
    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    out = json.loads(first.stdout.strip().splitlines()[-1])
    videos = sorted(p.name for p in (folder / "videos").iterdir())
    assert out["ingest"]["ok"] == len(videos) >= 4 and out["ingest"]["failed"] == 0
    assert set(out["searches"]) == {"a red ball", "ocean waves", "a city at night"}
    for hits in out["searches"].values():
        assert len(hits) == 3
        assert all(h["uri"].startswith(str(folder / "videos")) and h["end_s"] > h["start_s"] for h in hits)
    # offline, it says plainly that the weights are random (with them available, it does not)
    assert ("RANDOM" in first.stderr) == ("random weights" in first.stderr)

    second = run()
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["ingest"]["skipped"] == len(videos) and again["ingest"]["ok"] == 0
    assert again["searches"] == out["searches"]  # the same store answers the same
