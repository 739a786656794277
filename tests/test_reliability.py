"""Nothing hangs and no stop is a traceback: special files, a stopped decode child, a closed pipe,
Ctrl-C.  Real files, real child processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import vidclip
from conftest import SAMPLING, TINY
from test_cli import TINY_ARGS, run
from vidclip.config import DecodeConfig
from vidclip.samples.synth import VideoSpec, write_video


def test_fifo_inputs_are_refused_before_opening(tmp_path, videos, cli_env):
    """A FIFO blocks whoever opens it until a writer comes; it must be recorded as failed, not read."""
    fifo_in_folder = videos / "pipe.mp4"
    os.mkfifo(fifo_in_folder)
    named = tmp_path / "named_fifo.mp4"
    os.mkfifo(named)
    proc = subprocess.run(
        [sys.executable, "-m", "vidclip", "ingest", str(videos), str(named), "--db", str(tmp_path / "db"), *TINY_ARGS, "--local", "--json"],
        capture_output=True, text=True, env=cli_env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    errors = {os.path.basename(f["uri"]): f["error"] for f in report["failures"]}
    assert set(errors) == {"pipe.mp4", "named_fifo.mp4"}
    assert all("a FIFO, not a regular file" in e for e in errors.values()), errors
    assert report["ok"] == 4


def test_probe_refuses_a_fifo(tmp_path):
    from vidclip.errors import ProbeError
    from vidclip.ingest.probe import probe

    fifo = tmp_path / "x.mp4"
    os.mkfifo(fifo)
    with pytest.raises(ProbeError, match="a FIFO, not a regular file"):
        probe(str(fifo), 10**8)


def test_a_stopped_decode_child_is_caught_by_the_watchdog(tmp_path, videos):
    """kill -STOP on the decode child mid-video: the job goes on, the video is one recorded failure."""
    shutil.copy(videos / "h264_320x240.mp4", videos / "sigstop.mp4")
    with open(videos / "sigstop.mp4", "ab") as fh:
        fh.write(b"distinct")
    lib = vidclip.open(tmp_path / "db", model=TINY)
    t0 = time.monotonic()
    report = lib.ingest([videos], SAMPLING, decode=DecodeConfig(job="faults:decode_job", timeout_s=3.0), progress=False)
    assert time.monotonic() - t0 < 200  # a generous bound that only catches a hang, not a speed check
    errors = {os.path.basename(f["uri"]): f["error"] for f in report.failures}
    assert list(errors) == ["sigstop.mp4"]
    assert "timed out" in errors["sigstop.mp4"] and "killed" in errors["sigstop.mp4"]
    assert report.ok == 4


def test_status_into_a_closed_pipe_is_quiet(tmp_path, videos, cli_env):
    db = tmp_path / "db"
    run(["ingest", str(videos), "--db", str(db), *TINY_ARGS, "--local", "--json"], cli_env)
    proc = subprocess.Popen([sys.executable, "-m", "vidclip", "status", "--db", str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env)
    proc.stdout.close()  # the reader is gone before anything is written: `status | head -0`
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


N_SLOW = 8


def _decode_children(pid: int) -> list[int]:
    """The ingest's decode sandboxes (vidclip.ingest.sandbox), started by any of its threads."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            kids = open(f"/proc/{pid}/task/{task}/children").read().split()
        except OSError:
            continue
        for kid in kids:
            try:
                if b"vidclip.ingest.sandbox" in open(f"/proc/{kid}/cmdline", "rb").read():
                    found.append(int(kid))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("moment", ["starting", "decoding"])
def test_ctrl_c_during_a_local_ingest_is_one_line(tmp_path, cli_env, moment):
    """SIGINT to the whole process group (what a terminal sends), while the command is still starting
    (importing torch: CPython can swallow a KeyboardInterrupt there, or flag it for a signal exit) or
    once decode children run: the last line says interrupted, nothing else is a traceback or an
    "Exception ignored", the process dies of SIGINT (a shell shows 130), and the rerun completes."""
    src = tmp_path / "slow"
    src.mkdir()
    for i in range(N_SLOW):
        write_video(src / f"v{i}.mp4", VideoSpec(width=1280, height=720, fps=30, duration_s=4.0, seed=40 + i))
    env = cli_env
    args = [sys.executable, "-m", "vidclip", "ingest", str(src), "--db", str(tmp_path / "db"), *TINY_ARGS, "--local",
            "--json", "--fps", "30"]  # 960 frames of 720p: seconds of decoding, even on a fast machine
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    if moment == "starting":
        time.sleep(1.0)  # the interpreter is up; vidclip, torch and open_clip are being imported
    else:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _decode_children(proc.pid) and proc.poll() is None:
            time.sleep(0.1)
        assert _decode_children(proc.pid), "the ingest never started a decode child"
        time.sleep(0.3)  # the child is importing PyAV; then it decodes
    assert proc.poll() is None, "the ingest ended before it was interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = err.decode()
    lines = [l for l in err.splitlines() if l.strip()]
    assert proc.returncode == -signal.SIGINT, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Exception ignored" not in err, err
    assert lines[-1] == "vidclip: interrupted" and all(l.startswith("vidclip: ") for l in lines), err
    assert out == b"", out
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["ok"] + report["skipped"] == N_SLOW and report["failed"] == 0
