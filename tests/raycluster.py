"""A two-raylet Ray cluster on this machine, for tests: a head and a second node on loopback, token
authentication on, killed (never `ray stop`, which would end every Ray cluster on the machine)
after the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], env=env, capture_output=True, text=True,
                          timeout=180, **kw)


@pytest.fixture
def two_nodes(tmp_path, cli_env):
    port = free_port()
    import secrets

    # Token authentication on, as a real cluster should run: the head, the second node and the
    # driver share one token.
    env = dict(cli_env, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    # Workers at the test's own priority: Ray's default niceness of 15 starves them on a busy
    # machine (pipelines/cluster.py local_system_config), and these tests are about rows and stalls.
    env["RAY_worker_niceness"] = "0"
    # vidclip's local clusters set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in os.environ (it keeps a private
    # cluster on loopback, pipelines/cluster.py); inherited by `ray start --address`, it refuses to
    # join ("Multi-node Ray clusters are not supported on Windows and OSX").  This is a real cluster.
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    tmp = f"/tmp/vc{os.getpid()}"  # short: Ray's socket paths have a length limit
    head = ray_cli(["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                 "--include-dashboard", "false", "--temp-dir", tmp, "--disable-usage-stats"], env)
    if head.returncode != 0:
        pytest.skip(f"cannot start a Ray head here: {head.stderr.strip()[-300:]}")
    log_path = tmp_path / "second-raylet.log"  # what the second node said: wait_for_nodes shows it on failure
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--address", f"127.0.0.1:{port}", "--node-ip-address",
             "127.0.0.1", "--num-cpus", "1", "--block", "--disable-usage-stats"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    worker.log_path = log_path
    yield f"127.0.0.1:{port}", worker, env
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    kill_cluster(env["RAY_AUTH_TOKEN"], tmp)  # never `ray stop`: it would end every Ray cluster on the machine
    shutil.rmtree(tmp, ignore_errors=True)


def kill_cluster(token: str, tmp: str) -> None:
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


def node_count(address, env) -> int:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.split() else 0


def wait_for_nodes(address: str, env: dict, n: int = 2, timeout_s: float = 300.0, worker=None) -> None:
    """Until `n` nodes are alive.  A second raylet that exited fails at once, with what it said; the
    deadline is long because on a loaded 2-core machine one `node_count` probe (a fresh Python
    importing Ray and joining) takes tens of seconds, and the raylet's own start as long."""
    deadline = time.monotonic() + timeout_s

    def said() -> str:
        path = getattr(worker, "log_path", None)
        return path.read_text(errors="replace")[-1500:] if path is not None and path.exists() else "(no log)"

    while node_count(address, env) < n:
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"the second raylet exited ({worker.returncode}) before joining {address}:\n{said()}")
        assert time.monotonic() < deadline, f"the cluster at {address} never reached {n} nodes; second raylet:\n{said()}"
        time.sleep(2)
