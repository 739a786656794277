"""One writer at a time (vidclip/store/lease.py): a lease in the store, two real processes racing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import lancedb
import pytest

from conftest import LIBRARY_SPECS
from test_cli import TINY_ARGS
from test_crash import row_set
from vidclip.errors import StoreBusyError
from vidclip.store.lease import WriterLease


def test_second_writer_is_refused_until_the_first_releases(tmp_path):
    db = lancedb.connect(tmp_path / "db")
    first = WriterLease(db, "db", "ingest").acquire()
    with pytest.raises(StoreBusyError, match=r"another process \(.+:\d+, ingest\) is writing"):
        WriterLease(db, "db", "prune").acquire()
    first.confirm()
    first.release()
    second = WriterLease(db, "db", "prune").acquire()
    second.release()


def test_a_dead_writers_lease_expires_and_it_cannot_commit_after(tmp_path):
    db = lancedb.connect(tmp_path / "db")
    dead = WriterLease(db, "db", "ingest", ttl_s=1.5).acquire()
    dead._stop.set()  # the process "died": no more renewals, nothing released
    dead._thread.join()
    with pytest.raises(StoreBusyError):
        WriterLease(db, "db", "ingest", ttl_s=1.5).acquire()
    time.sleep(1.6)
    taker = WriterLease(db, "db", "ingest", ttl_s=30).acquire()
    with pytest.raises(StoreBusyError, match="lease expired"):
        dead.confirm()
    taker.confirm()
    taker.release()


def test_a_live_writer_renews_its_lease(tmp_path):
    db = lancedb.connect(tmp_path / "db")
    holder = WriterLease(db, "db", "ingest", ttl_s=1.2).acquire()
    time.sleep(2.5)  # two ttl's: only renewals keep it
    holder.confirm()
    with pytest.raises(StoreBusyError):
        WriterLease(db, "db", "ingest").acquire()
    holder.release()


def test_waiting_writer_gets_the_store_when_it_is_released(tmp_path):
    db = lancedb.connect(tmp_path / "db")
    holder = WriterLease(db, "db", "ingest").acquire()
    import threading

    threading.Timer(1.0, holder.release).start()
    waiter = WriterLease(db, "db", "ingest").acquire(wait_s=30)
    waiter.release()


@pytest.mark.slow
def test_two_concurrent_ingests_never_duplicate_rows(tmp_path, videos, cli_env):
    """Two `vidclip ingest` runs at once on one store with overlapping inputs (both take the whole
    library, one also an extra copy): one writes, the other is refused with one line; after the
    refused one is rerun the rows equal a single clean run's."""
    import shutil

    import vidclip
    from conftest import SAMPLING, TINY

    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(videos / "h264_320x240.mp4", extra / "copy.mp4")
    with open(extra / "copy.mp4", "ab") as fh:
        fh.write(b"other content")
    db = tmp_path / "db"
    common = ["--db", str(db), *TINY_ARGS, "--fps", "2", "--clip-seconds", "2", "--max-frames", "12", "--local", "--json"]
    cmds = [
        [sys.executable, "-m", "vidclip", "ingest", str(videos), *common],
        [sys.executable, "-m", "vidclip", "ingest", str(videos), str(extra), *common],
    ]
    # The store exists first (as it does for every second ingest), so both race for the lease.
    vidclip.open(db, model=TINY).ingest([extra], SAMPLING, progress=False)
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env) for c in cmds]
    results = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert 0 in codes, results
    for (out, err), code, cmd in zip(results, codes, cmds):
        if code != 0:
            lines = [l for l in err.splitlines() if l.strip()]
            assert len(lines) == 1 and "one writer at a time" in lines[0], err
            again = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=600)
            assert again.returncode == 0, again.stderr
    ref = tmp_path / "ref"
    vidclip.open(ref, model=TINY).ingest([videos, extra], SAMPLING, progress=False)
    got = row_set(vidclip.open(db, model=TINY).store)
    want = row_set(vidclip.open(ref, model=TINY).store)
    assert got["frames"] == want["frames"]
    assert got["clips"] == want["clips"]
    assert len(got["frames"]) > 0 and len({v for v, _ in got["frames"]}) == len(LIBRARY_SPECS) + 1


def test_a_crashed_writer_on_this_machine_is_seen_at_once(tmp_path, cli_env):
    """A writer SIGKILLed while holding the lease: a rerun on the same machine goes on at once."""
    import signal

    code = (
        "import lancedb, sys, time\n"
        "from vidclip.store.lease import WriterLease\n"
        f"WriterLease(lancedb.connect({str(tmp_path / 'db')!r}), 'db', 'ingest', ttl_s=3600).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=cli_env)
    assert proc.stdout.readline().strip() == "held"
    db = lancedb.connect(tmp_path / "db")
    with pytest.raises(StoreBusyError):
        WriterLease(db, "db", "ingest").acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    WriterLease(db, "db", "ingest").acquire().release()  # its hour-long claim does not block
