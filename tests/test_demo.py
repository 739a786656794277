"""The README's first set-up command ends in `vidclip demo`: sample videos, a local Ray ingest into a
LanceDB folder, searches that print hits.  Run it as a user would, twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest


@pytest.mark.slow
@pytest.mark.ray
def test_demo_ingests_on_local_ray_and_searches_then_a_rerun_skips(tmp_path, cli_env):
    folder = tmp_path / "demo"
    ray_tmp = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(cli_env, RAY_TMPDIR=ray_tmp)
    run = lambda *extra: subprocess.run([sys.executable, "-m", "vidclip", "demo", str(folder), "--json", *extra],  # noqa: E731
                                        env=env, capture_output=True, text=True, timeout=1200)

    def ray_sessions() -> int:
        root = os.path.join(ray_tmp, "ray")
        return len([p for p in os.listdir(root) if p.startswith("session_2")]) if os.path.isdir(root) else 0

    try:
        _demo_twice(run, folder, ray_sessions)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _demo_twice(run, folder, ray_sessions):
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
    assert ray_sessions() == 1  # the ingest ran on a local Ray

    second = run()
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["ingest"]["skipped"] == len(videos) and again["ingest"]["ok"] == 0
    assert again["searches"] == out["searches"]  # the same store answers the same
    assert ray_sessions() == 1  # every file known unchanged: nothing to hash or decode, no Ray started

    # --clips shots: a store of its own, whose clips start where the sample videos change scene
    shots = run("--clips", "shots")
    assert shots.returncode == 0, shots.stderr[-3000:]
    result = json.loads(shots.stdout.strip().splitlines()[-1])
    assert result["ingest"]["ok"] == len(videos)
    import vidclip

    from vidclip.samples.synth import SAMPLE_LIBRARY

    store = vidclip.open(folder / "db-shots", create=False).store
    assert store.meta["sampling"]["clips"] == "shots"
    ids = {r["uri"].rsplit("/", 1)[-1]: r["video_id"] for r in store.table("videos").to_arrow().to_pylist()}
    clips = store.table("clips").to_arrow().to_pylist()
    changes = 0
    for sample in SAMPLE_LIBRARY:
        if sample.name not in ids:
            continue
        starts = [c["start_s"] for c in clips if c["video_id"] == ids[sample.name]]
        t = 0.0
        for _, seconds in sample.scenes[:-1]:
            t += seconds
            changes += 1
            assert min(abs(s - t) for s in starts) <= 1 / 8 + 1e-6, (sample.name, t, starts)  # a clip starts at the cut
    assert changes >= 2
