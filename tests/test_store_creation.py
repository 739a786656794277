"""A store becomes a store in one final commit, its schema row.  A creation cut short (a kill, a
full disk) is an unfinished store: read commands say so in one line, and the next ingest finishes
it.  It is never bricked.  The interruptions are made for real: LanceDB tables created the way
Store.open creates them, stopped after each step, and a SIGKILL of a real first ingest."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import lancedb
import pytest

import vidclip
from conftest import SAMPLING, TINY
from test_cli import TINY_ARGS, run
from vidclip.errors import StoreError
from vidclip.store.store import Store
from vidclip.store.schema import META_SCHEMA, SOURCE_SCHEMA, VIDEO_SCHEMA


def _cut_short(db_dir, steps: int) -> None:
    """Store creation stopped after `steps` of its commits (meta, videos, sources), before the schema row."""
    db = lancedb.connect(str(db_dir))
    for name, schema in [("meta", META_SCHEMA), ("videos", VIDEO_SCHEMA), ("sources", SOURCE_SCHEMA)][:steps]:
        db.create_table(name, schema=schema)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_an_unfinished_store_is_finished_by_the_next_ingest(tmp_path, videos, steps, caplog):
    db = tmp_path / "db"
    _cut_short(db, steps)
    with pytest.raises(StoreError, match="an unfinished store .*the next 'vidclip ingest"):
        Store.open(str(db))  # a read (status, search) says so, and changes nothing
    with caplog.at_level(logging.WARNING, logger="vidclip"):
        lib = vidclip.open(db, model=TINY)
    assert any("finishing a store whose creation was interrupted" in r.getMessage() for r in caplog.records)
    report = lib.ingest([videos / "sub"], SAMPLING, progress=False)
    assert report.ok >= 1 and report.failed == 0
    assert Store.open(str(db)).meta["schema_version"] == 1


def test_a_meta_table_cut_short_mid_write_is_finished_too(tmp_path, videos):
    db = tmp_path / "db"
    _cut_short(db, 1)
    for f in (db / "meta.lance").rglob("*.manifest"):
        f.write_bytes(f.read_bytes()[:10])  # the table's only version, half written
    lib = vidclip.open(db, model=TINY)
    assert lib.ingest([videos / "sub"], SAMPLING, progress=False).failed == 0


def test_a_store_with_rows_is_never_taken_for_unfinished(tmp_path, videos):
    db = tmp_path / "db"
    vidclip.open(db, model=TINY).ingest([videos / "sub"], SAMPLING, progress=False)
    tbl = lancedb.connect(str(db)).open_table("meta")
    tbl.delete("key = 'schema_version'")  # damage, not an interrupted creation: refused, rows kept
    with pytest.raises(StoreError, match="schema version None"):
        vidclip.open(db, model=TINY)
    assert lancedb.connect(str(db)).open_table("videos").count_rows() > 0


def test_status_on_an_unfinished_store_is_one_line(tmp_path, cli_env):
    db = tmp_path / "db"
    _cut_short(db, 2)
    proc = run(["status", "--db", str(db)], cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "unfinished store" in lines[0], proc.stderr


@pytest.mark.slow
def test_sigkill_of_the_first_ingest_at_creation_then_the_rerun_works(tmp_path, videos, cli_env):
    """Kill -9 the first ingest as soon as its store directory appears, several times at different
    moments; every rerun ends with a working store."""
    for attempt, delay in enumerate((0.0, 0.3, 1.0)):
        db = tmp_path / f"db{attempt}"
        args = [sys.executable, "-m", "vidclip", "ingest", str(videos / "sub"), "--db", str(db), *TINY_ARGS,
                "--local", "--json"]
        proc = subprocess.Popen(args, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not db.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        again = run(["ingest", str(videos / "sub"), "--db", str(db), *TINY_ARGS, "--local", "--json"], cli_env, check=False)
        assert again.returncode == 0, again.stderr
        status = run(["status", "--db", str(db), "--json"], cli_env, check=False)
        assert status.returncode == 0, status.stderr


def test_a_command_that_stores_nothing_leaves_no_store(tmp_path, videos, cli_env):
    """Nothing is created before the first commit: not by a bad input path (listed before anything
    is written), and not by a job that fails before committing (here: weights that cannot be found)."""
    db = tmp_path / "db"
    proc = run(["ingest", str(tmp_path / "no-such-folder"), "--db", str(db), *TINY_ARGS, "--local"], cli_env, check=False)
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr
    assert not db.exists()

    proc = run(["ingest", str(videos), "--db", str(db), "--model", "ViT-B-32", "--pretrained",
                str(tmp_path / "missing-checkpoint.safetensors"), "--local"], cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not db.exists(), sorted(p.name for p in db.iterdir())

    # and the API: a pending store is created by its first writer, not by vidclip.open
    lib = vidclip.open(db, TINY)
    assert lib.store.pending and not db.exists()
    report = lib.ingest([videos], SAMPLING, progress=False)
    assert report.ok > 0 and Store.open(str(db)).count("videos") == report.ok
