"""Which Ray cluster a job joins, and a dead address said in one line within seconds (no cluster is
started here: these are the failures that happen before one is)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import TINY_CONFIG
from pipelines.cluster import ClusterError, check_reachable, cluster_address, describe_init_failure

TINY_ARGS = ["--model", "vidclip-tiny", "--pretrained", "none", "--model-config", TINY_CONFIG]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def ingest(videos, db, env, *extra):
    # The subprocess timeout is a hang guard, far above "seconds": Ray's own retry of a dead
    # address lasts minutes.
    return subprocess.run([sys.executable, "-m", "vidclip", "ingest", str(videos), "--db", str(db), *TINY_ARGS, *extra],
                          capture_output=True, text=True, env=env, timeout=120)


def one_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_the_flag_wins_over_ray_address_which_wins_over_a_local_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) == (None, "")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster_address(None) == ("10.0.0.5:6379", "RAY_ADDRESS")
    assert cluster_address("auto") == ("auto", "--ray-address")


def test_ray_address_pointing_nowhere_is_one_line_and_leaves_no_store(tmp_path, video_dir, cli_env):
    port = closed_port()
    env = dict(cli_env, RAY_ADDRESS=f"127.0.0.1:{port}")
    line = one_line(ingest(video_dir, tmp_path / "db", env))
    assert f"RAY_ADDRESS 127.0.0.1:{port}" in line and "nothing answers" in line, line
    assert not (tmp_path / "db").exists()


def test_auto_with_a_stale_record_is_one_line(tmp_path, video_dir, cli_env):
    """A `ray start` cluster that stopped leaves its address recorded; auto must not retry it."""
    port = closed_port()
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    env = dict(cli_env, RAY_TMPDIR=str(tmp_path))
    env.pop("RAY_ADDRESS", None)
    line = one_line(ingest(video_dir, tmp_path / "db", env, "--ray-address", "auto"))
    assert f"auto found 127.0.0.1:{port}" in line and "nothing answers" in line, line


def test_auto_with_no_cluster_started_here_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(ClusterError, match="ray start --head"):
        check_reachable("auto", "--ray-address")


def test_a_live_address_is_accepted_and_a_malformed_one_refused():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert check_reachable(f"127.0.0.1:{port}", "--ray-address") == f"127.0.0.1:{port}"
        assert check_reachable(f"ray://127.0.0.1:{port}", "--ray-address") == f"127.0.0.1:{port}"
    with pytest.raises(ClusterError, match="expected HOST:PORT"):
        check_reachable("no-port-here", "--ray-address")


def test_an_authentication_failure_names_the_token():
    line = describe_init_failure(RuntimeError("Token authentication is enabled but no authentication token was found"),
                                 "10.0.0.5:6379")
    assert "RAY_AUTH_TOKEN" in line and "RAY_AUTH_MODE=token" in line and "10.0.0.5:6379" in line
    assert "RAY_AUTH_TOKEN" not in describe_init_failure(RuntimeError("GCS did not start"), "a local cluster")
    # What Ray 2.x actually does: ray.init says only "Failed to connect", its core logs the cause.
    native = ("[2026-11-30 23:31:49,875 W 3586 3586] gcs_client.cc:210: Failed to get cluster ID from GCS server: "
              "Unauthenticated: RPC error: InvalidAuthToken: Authentication token is missing or incorrect\n")
    line = describe_init_failure(ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6391"), "192.0.2.2:6391", native)
    assert "token authentication" in line and "RAY_AUTH_TOKEN" in line
