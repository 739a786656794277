"""`vidclip check [--repair]` and the quick check in ingest, search and status, on real stores
damaged the way a lost or cut-short file damages them: Lance data files deleted or truncated, and
a whole table directory deleted, in a copy of a clean store.  After a repair, the next ingest
gives exactly the clean store's row set."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

import vidclip
from conftest import SAMPLING, TINY
from test_crash import row_set
from vidclip.ingest.committer import CommitPolicy
from vidclip.errors import StoreError
from vidclip.store.integrity import check_store, quick_check
from vidclip.store.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean(tmp_path_factory, video_dir):
    db = tmp_path_factory.mktemp("clean") / "db"
    lib = vidclip.open(db, model=TINY)
    report = lib.ingest([video_dir], SAMPLING, progress=False, commit=CommitPolicy(max_videos=2))
    assert report.ok >= 4
    return db, row_set(lib.store)


def _copy(clean, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(clean[0], db)
    return db


def _readable(db, table) -> bool:
    import lancedb

    try:
        lancedb.connect(str(db)).open_table(table).to_arrow()
        return True
    except Exception:  # noqa: BLE001 - any failure: the table is damaged
        return False


def _damage(db, table, how: str) -> str:
    """Delete or cut in half a data file the table's current version uses (optimize leaves older,
    unreferenced files behind: damaging one of those changes nothing)."""
    for path in sorted(glob.glob(str(db / f"{table}.lance" / "data" / "*.lance"))):
        data = open(path, "rb").read()
        if how == "delete":
            os.remove(path)
        else:
            with open(path, "r+b") as fh:
                fh.truncate(len(data) // 2)
        if not _readable(db, table):
            return path
        with open(path, "wb") as fh:  # not in use: put it back, try the next
            fh.write(data)
    raise AssertionError(f"no data file of {table} is in use")


def _check(db, cli_env, *extra):
    return subprocess.run([sys.executable, "-m", "vidclip", "check", "--db", str(db), *extra],
                          capture_output=True, text=True, env=cli_env, timeout=600)


def _reingest(db, video_dir):
    lib = vidclip.open(db, model=TINY)
    lib.ingest([video_dir], SAMPLING, progress=False)
    return row_set(Store.open(str(db)))


def test_a_clean_store_checks_clean(clean, cli_env):
    proc = _check(clean[0], cli_env, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["check"]
    assert report["damaged"] is False and report["ok_videos"] == len([v for v in clean[1]["videos"] if v[2] == "ok"])


@pytest.mark.parametrize("table,damage", [("frames", "delete"), ("clips", "truncate"), ("video_vectors", "delete")])
def test_a_lost_data_file_is_found_repaired_and_reingested(clean, tmp_path, cli_env, video_dir, table, damage):
    db = _copy(clean, tmp_path)
    _damage(db, table, damage)
    proc = _check(db, cli_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"damaged: table '{table}': cannot be read" in proc.stdout, proc.stdout
    assert f"vidclip check --db {db} --repair" in proc.stdout

    fixed = _check(db, cli_env, "--repair", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    out = json.loads(fixed.stdout)
    assert out["repair"]["rebuilt_tables"] == [table] and out["repair"]["videos_to_reingest"] >= 1
    assert out["after"]["damaged"] is False
    assert _reingest(db, video_dir) == clean[1]  # the next ingest decodes the lost videos again: exact


def test_a_deleted_table_is_refused_by_search_and_status_then_repaired(clean, tmp_path, cli_env, video_dir):
    db = _copy(clean, tmp_path)
    shutil.rmtree(db / "clips.lance")  # before: status said "clips 0" and search found nothing, exit 0
    for args in (["status", "--db", str(db)], ["search", "a red ball", "--db", str(db)]):
        proc = subprocess.run([sys.executable, "-m", "vidclip", *args], capture_output=True, text=True, env=cli_env,
                              timeout=300)
        lines = [l for l in proc.stderr.splitlines() if l.strip() and "random weights" not in l]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "table 'clips' is missing" in lines[0] and "--repair" in lines[0], lines
    with pytest.raises(StoreError, match="table 'clips' is missing"):
        vidclip.open(db, model=TINY).ingest([video_dir], SAMPLING, progress=False)  # never skips them as ok
    assert _check(db, cli_env, "--repair").returncode == 0
    assert _reingest(db, video_dir) == clean[1]


@pytest.mark.parametrize("table,damage", [("frames", "delete"), ("clips", "truncate")])
def test_a_lost_data_file_is_refused_in_one_line_before_any_row_is_read(clean, tmp_path, cli_env, video_dir, table,
                                                                        damage):
    """Row counts come from the manifest, so they stay right when a data file goes: before, status
    showed the old counts, ingest skipped every video as ok, and search ended in a Lance traceback."""
    db = _copy(clean, tmp_path)
    path = _damage(db, table, damage)
    name = f"data/{os.path.basename(path)}"
    for args in (["status", "--db", str(db)], ["search", "a red ball", "--db", str(db)]):
        proc = subprocess.run([sys.executable, "-m", "vidclip", *args], capture_output=True, text=True, env=cli_env,
                              timeout=300)
        lines = [l for l in proc.stderr.splitlines() if l.strip() and "random weights" not in l]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert f"table {table!r} cannot be read: {name} is " in lines[0] and "--repair" in lines[0], lines
    with pytest.raises(StoreError, match=f"table {table!r} cannot be read"):
        vidclip.open(db, model=TINY).ingest([video_dir], SAMPLING, progress=False)
    assert _check(db, cli_env, "--repair").returncode == 0
    assert _reingest(db, video_dir) == clean[1]


def test_missing_rows_of_one_video_are_found_per_video(clean, tmp_path, video_dir):
    db = _copy(clean, tmp_path)
    store = Store.open(str(db))
    vid = clean[1]["frames"][0][0]
    store.table("frames").delete(f"video_id = '{vid}'")  # rows gone, the table itself readable
    with pytest.raises(StoreError, match="table 'frames' holds .* the ok videos say"):
        quick_check(Store.open(str(db)))
    report = check_store(Store.open(str(db)))
    assert [(f.table, f.video_id) for f in report.findings] == [("frames", vid)]
    assert "row(s)" in report.findings[0].problem and "expected" in report.findings[0].problem


def test_a_damaged_videos_table_is_not_repaired_blindly(clean, tmp_path, cli_env):
    db = _copy(clean, tmp_path)
    _damage(db, "videos", "delete")
    proc = _check(db, cli_env, "--repair")
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "cannot be re-derived" in lines[0], proc.stderr
    assert "damaged: table 'videos'" in proc.stdout


def test_a_store_cut_short_before_its_first_rows_is_not_damaged(tmp_path, video_dir):
    """The model is recorded before the first ingest creates the vector tables: a kill in between
    leaves no table that any ok video needs, so nothing is refused."""
    db = tmp_path / "db"
    lib = vidclip.open(db, model=TINY)
    lib.encoder  # records the model in the store
    store = Store.open(str(db))
    assert store.expects_vectors and not store.has_table("frames")
    quick_check(store)
    assert not check_store(store).damaged
    assert vidclip.open(db, model=TINY).ingest([video_dir], SAMPLING, progress=False).ok >= 4
