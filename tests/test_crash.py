"""Crash safety, killing for real: SIGKILL a Ray worker, SIGKILL the driver, run twice.
After each, the store holds exactly the expected rows: no duplicate video, no orphan frame or clip,
no lost video."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import SAMPLING, TINY
from vidclip.samples.synth import VideoSpec, write_video

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N_VIDEOS = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash_corpus")
    for i in range(N_VIDEOS):
        write_video(d / f"slow_{i:02d}.mp4", VideoSpec(duration_s=3.0, seed=100 + i, scene_seconds=1.5))
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus):
    """The expected row set, from the in-process path."""
    import vidclip

    lib = vidclip.open(tmp_path_factory.mktemp("ref") / "db", model=TINY)
    lib.ingest([corpus], SAMPLING, progress=False)
    return row_set(lib.store)


def row_set(store) -> dict:
    """Keys of every row, per table; asserts there is no duplicate and no orphan."""
    videos = store.table("videos").to_arrow().to_pylist()
    ids = [v["video_id"] for v in videos]
    assert len(ids) == len(set(ids)), "duplicate video_id"
    ok = {v["video_id"] for v in videos if v["status"] == "ok"}
    assert {v["status"] for v in videos} <= {"ok", "failed"}, "pending rows left behind"
    frames = store.table("frames").to_arrow()
    clips = store.table(store.segments["clip"]).to_arrow()
    whole = store.table(store.segments["video"]).to_arrow()
    frame_keys = list(zip(frames.column("video_id").to_pylist(), [round(t, 6) for t in frames.column("t").to_pylist()]))
    clip_keys = list(zip(clips.column("video_id").to_pylist(), clips.column("clip_id").to_pylist()))
    clip_spans = sorted(zip(clips.column("video_id").to_pylist(), clips.column("clip_id").to_pylist(),
                            [round(t, 6) for t in clips.column("start_s").to_pylist()],
                            [round(t, 6) for t in clips.column("end_s").to_pylist()]))
    whole_keys = whole.column("video_id").to_pylist()
    for keys, name in ((frame_keys, "frames"), (clip_keys, "clips"), (whole_keys, "video_vectors")):
        assert len(keys) == len(set(keys)), f"duplicate rows in {name}"
        assert {k[0] if isinstance(k, tuple) else k for k in keys} <= ok, f"orphan rows in {name}"
    return {
        "videos": sorted((v["uri"], v["video_id"], v["status"]) for v in videos),
        "frames": sorted(frame_keys),
        "clips": sorted(clip_keys),
        "clip_spans": clip_spans,
        "video_vectors": sorted(whole_keys),
    }


JOB = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import vidclip
    from conftest import SAMPLING, TINY
    from pipelines.options import JobOptions
    from vidclip.ingest.committer import CommitPolicy
    from vidclip.config import DecodeConfig

    lib = vidclip.open({db!r}, model=TINY)
    report = lib.ingest([{corpus!r}], SAMPLING, decode=DecodeConfig(job="faults:decode_job"), progress=False,
                        ray=JobOptions(decode_workers=1, batch_size=8), commit=CommitPolicy(max_videos=1))
    print("REPORT", report.ok, report.failed, report.skipped, flush=True)
    """
)


def start_job(db, corpus, env=None):
    tests = os.path.dirname(os.path.abspath(__file__))
    code = JOB.format(tests=tests, db=str(db), corpus=str(corpus))
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(tests), tests, env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("PPid:"))
    except (OSError, StopIteration):
        return 0


def pids_matching(text: str, root: int) -> list[int]:
    """Ray worker processes whose title contains `text`, descended from process `root` (this job's
    own workers: never those of another Ray job on the machine)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") and text in cmd:
            ancestor = int(pid)
            while ancestor > 1 and ancestor != root:
                ancestor = _parent(ancestor)
            if ancestor == root:
                found.append(int(pid))
    return found


def committed(db) -> int:
    import vidclip

    try:
        return vidclip.open(db, create=False).store.count("videos", "status = 'ok'")
    except Exception:  # the store may not exist yet while the job starts
        return 0


def wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the job left behind
    except ProcessLookupError:
        pass
    return out, err


def test_sigkill_a_worker_mid_job(tmp_path, corpus, reference):
    db = tmp_path / "db"
    proc = start_job(db, corpus, env={"VIDCLIP_TEST_SLOW_S": "1.0"})
    # kill a decode task's worker once it is running, then an encoder actor's
    for title in ("FlatMap(decode_rows)", "MapBatches(EncodeActor)"):
        assert wait(lambda: pids_matching(title, proc.pid), 120), f"no {title} worker appeared"
        os.kill(pids_matching(title, proc.pid)[0], signal.SIGKILL)
    out, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    assert f"REPORT {N_VIDEOS} 0 0" in out, (out, err[-2000:])
    import vidclip

    assert row_set(vidclip.open(db).store) == reference


def test_sigkill_the_driver_then_rerun(tmp_path, corpus, reference, busy_cores):
    """On a loaded machine (both cores spinning), as the determinism check must hold there."""
    db = tmp_path / "db"
    proc = start_job(db, corpus, env={"VIDCLIP_TEST_SLOW_S": "1.0"})
    assert wait(lambda: committed(db) >= 2, 180), "the job never committed"
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    partial = committed(db)
    assert 2 <= partial < N_VIDEOS, partial
    rerun = start_job(db, corpus, env={"VIDCLIP_TEST_SLOW_S": "0"})
    out, err = finish(rerun)
    assert rerun.returncode == 0, err[-3000:]
    assert f"REPORT {N_VIDEOS - partial} 0 {partial}" in out, out
    import vidclip

    assert row_set(vidclip.open(db).store) == reference
    # (c) a second run adds nothing
    again = start_job(db, corpus, env={"VIDCLIP_TEST_SLOW_S": "0"})
    out, err = finish(again)
    assert f"REPORT 0 0 {N_VIDEOS}" in out, (out, err[-2000:])
    assert row_set(vidclip.open(db).store) == reference
