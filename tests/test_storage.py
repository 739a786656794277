"""Storage failures are one line with exit 2, and the store stays readable: a full disk and a
read-only file system, made for real with small tmpfs mounts (root only; skipped elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_cli import TINY_ARGS, run
from vidclip.samples.synth import VideoSpec, write_video


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()[:100]})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def assert_one_error_line(proc, *needles):
    """Exactly one error line (the random-weights notice of the test model aside), no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "random weights" not in l]
    assert len(lines) == 1 and lines[0].startswith("vidclip: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _fill(mnt, leave_bytes: int) -> None:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))


def _ingest(src, db, env, extra=()):
    return subprocess.run([sys.executable, "-m", "vidclip", "ingest", str(src), "--db", str(db), *TINY_ARGS, "--local",
                           "--fps", "30", "--json", *extra], capture_output=True, text=True, env=env, timeout=600)


def test_full_disk_is_one_line_and_the_store_stays_readable(tmp_path, small_fs, cli_env, videos):
    db = small_fs / "db"
    first = _ingest(videos, db, cli_env)  # a few videos fit in 4 MB
    assert first.returncode == 0, first.stderr
    more = tmp_path / "more"
    more.mkdir()
    for i in range(3):
        write_video(more / f"m{i}.mp4", VideoSpec(width=160, height=120, fps=30, duration_s=4.0, seed=80 + i))
    _fill(small_fs, 48 * 1024)  # the disk is all but full
    proc = _ingest(more, db, cli_env, ["--commit-videos", "1"])
    assert_one_error_line(proc, str(db), "disk holding the store is full")
    status = json.loads(run(["status", "--db", str(db), "--json"], cli_env).stdout)
    assert status["videos"]["ok"] >= 4
    os.remove(small_fs / "filler")  # space freed: the same command resumes and completes
    again = _ingest(more, db, cli_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(run(["status", "--db", str(db), "--json"], cli_env).stdout)["videos"]["ok"] == 7


def test_read_only_store_is_one_line(tmp_path, small_fs, cli_env, videos):
    db = small_fs / "db"
    manifest = tmp_path / "titled.jsonl"  # titles give the store a text column for hybrid search
    manifest.write_text("".join(json.dumps({"uri": str(p), "title": f"clip {p.stem}"}) + "\n"
                                for p in sorted(videos.rglob("*.mp4"))))
    assert _ingest(manifest, db, cli_env).returncode == 0
    extra = tmp_path / "extra"
    extra.mkdir()
    write_video(extra / "x.mp4", VideoSpec(duration_s=1.0, seed=90))
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    proc = _ingest(extra, db, cli_env)
    assert_one_error_line(proc, str(db), "read-only file system")
    hits = run(["search", "a red ball", "--db", str(db), "--json"], cli_env)  # reading still works
    assert hits.returncode == 0
    # the first hybrid search builds the store's full-text index: a write, refused in one line
    hybrid = subprocess.run([sys.executable, "-m", "vidclip", "search", "a red ball", "--hybrid", "--db", str(db)],
                            capture_output=True, text=True, env=cli_env, timeout=300)
    assert_one_error_line(hybrid, str(db), "read-only file system", "full-text index", "without --hybrid")


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_table_is_one_line(tmp_path, cli_env, videos, damage):
    """A data file of `clips` deleted or cut in half, in a real store: search says so in one line,
    found from the manifest before any row is read."""
    import glob

    db = tmp_path / "db"
    assert _ingest(videos, db, cli_env).returncode == 0
    victim = sorted(glob.glob(str(db / "clips.lance" / "data" / "*.lance")))[0]
    if damage == "delete":
        os.remove(victim)
    else:
        with open(victim, "r+b") as fh:
            fh.truncate(os.path.getsize(victim) // 2)
    proc = subprocess.run([sys.executable, "-m", "vidclip", "search", "a red ball", "--db", str(db)],
                          capture_output=True, text=True, env=cli_env, timeout=300)
    name = f"data/{os.path.basename(victim)}"
    what = f"{name} is missing" if damage == "delete" else f"{name} is cut short"
    assert_one_error_line(proc, str(db), f"table 'clips' cannot be read: {what}", "--repair")
