"""The Ray job: loopback-only local cluster, same results as the in-process path, clean --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import LIBRARY_SPECS, SAMPLING, TINY, TINY_CONFIG

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def listening_sockets() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by this process or one it started
    (a local Ray's GCS, raylet and workers descend from the driver), from /proc.  Sockets of other
    programs on the machine (another test run's servers) are not this job's."""
    ours = _socket_inodes(_descendants(os.getpid()))
    out = set()
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in ours:  # LISTEN, and ours
                continue
            addr, port = fields[1].split(":")
            out.add((_addr(addr, v6), int(port, 16)))
    return out


def ray_worker_niceness() -> dict[int, int]:
    """{pid: niceness} of this process's descendants that are Ray workers ("ray::..." titles)."""
    out = {}
    for pid in _descendants(os.getpid()) - {os.getpid()}:
        try:
            title = open(f"/proc/{pid}/cmdline", "rb").read()
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        if title.startswith(b"ray::"):
            out[pid] = int(stat.rsplit(")", 1)[1].split()[16])  # nice: field 19 of stat
    return out


def _descendants(root: int) -> set[int]:
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def _addr(hexaddr: str, v6: bool) -> str:
    import ipaddress
    import socket
    import struct

    raw = bytes.fromhex(hexaddr)
    if not v6:
        return socket.inet_ntoa(struct.pack("<I", int(hexaddr, 16)))
    words = struct.unpack("<4I", raw)
    return str(ipaddress.IPv6Address(struct.pack(">4I", *words)))


def _is_loopback(addr: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_local_ray_listens_on_loopback_only_and_matches_in_process(tmp_path, videos):
    import vidclip
    from pipelines.options import JobOptions

    import os

    before = listening_sockets()
    env_before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    seen: set = set()
    niceness: dict[int, int] = {}  # Ray worker pid -> its niceness
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(listening_sockets())
            niceness.update(ray_worker_niceness())
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        lib = vidclip.open(tmp_path / "ray_db", model=TINY)
        report = lib.ingest([videos], SAMPLING, progress=False, ray=JobOptions(batch_size=8))
    finally:
        stop.set()
        watcher.join()
    new = seen - before
    assert new, "saw no Ray listener at all: the watcher is broken"
    public = sorted(s for s in new if not _is_loopback(s[0]))
    assert not public, f"Ray listened on non-loopback addresses: {public}"
    # The workers run at the driver's priority (Ray's default of 15 starved them on a busy machine).
    assert niceness, "saw no Ray worker at all: the watcher is broken"
    assert set(niceness.values()) == {os.nice(0)}, niceness
    # The loopback switch was for that session only: a later join to a real cluster from this
    # process (or a `ray start --address` it runs) must use the machine's address again.
    from ray._private import ray_constants

    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == env_before
    assert ray_constants.ENABLE_RAY_CLUSTER is (env_before is None or env_before.lower() in ("1", "true"))

    local = vidclip.open(tmp_path / "local_db", model=TINY)
    expected = local.ingest([videos], SAMPLING, progress=False)
    assert expected.ok == len(LIBRARY_SPECS)
    assert (report.ok, report.frames, report.clips) == (expected.ok, expected.frames, expected.clips)
    import numpy as np

    def clip_vectors(store):
        t = store.table("clips").to_arrow().sort_by([("video_id", "ascending"), ("clip_id", "ascending")])
        return np.stack(t.column("vector").to_numpy(zero_copy_only=False))

    np.testing.assert_allclose(clip_vectors(lib.store), clip_vectors(local.store), atol=1e-5)


def test_cli_runner_ray_runs_on_ray_with_clean_json(tmp_path, videos, cli_env):
    args = ["--model", "vidclip-tiny", "--pretrained", "none", "--model-config", TINY_CONFIG, "--fps", "2", "--clip-seconds", "2",
            "--runner", "ray"]
    import shutil
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(cli_env, RAY_TMPDIR=ray_tmp)
    try:
        proc = subprocess.run([sys.executable, "-m", "vidclip", "ingest", str(videos), "--db", str(tmp_path / "db"), *args,
                               "--json"], capture_output=True, text=True, env=env, timeout=600)
        sessions = [p for p in os.listdir(os.path.join(ray_tmp, "ray")) if p.startswith("session_2")] \
            if os.path.isdir(os.path.join(ray_tmp, "ray")) else []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sessions, "no Ray session was started: the job did not run on Ray"
    assert "runner:" not in proc.stderr  # chosen by the flag: nothing to announce
    report = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else
    assert report["ok"] == len(LIBRARY_SPECS) and report["failed"] == 0
    # stderr holds vidclip's own lines only: Ray's C++ core (core_worker.cc ...) and its Python
    # prints go to a log file unless -v.
    foreign = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("vidclip:")]
    assert not foreign, foreign

