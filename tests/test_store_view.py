"""Seeing into a store without loading the model: `vidclip list` (every video, its status, duration,
decoder and note, clips, frames, and the reason of a failure), `status` with failures counted by
reason and settings in words; none of them imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import LIBRARY_SPECS
from test_cli import TINY_ARGS, run


@pytest.fixture
def mixed(tmp_path, videos, cli_env):
    """The library plus three bad files: two unreadable containers and an empty file."""
    (videos / "broken.mp4").write_text("this is not a video")
    (videos / "also-broken.mkv").write_bytes(b"\x00" * 4096)
    (videos / "empty.mp4").write_bytes(b"")
    db = tmp_path / "db"
    report = json.loads(run(["ingest", str(videos), "--db", str(db), *TINY_ARGS, "--fps", "2", "--clip-seconds", "2",
                             "--local", "--json"], cli_env).stdout)
    assert report["ok"] == len(LIBRARY_SPECS) and report["failed"] == 3
    return db, report


def test_status_counts_failures_by_reason_and_prints_settings_in_words(mixed, cli_env):
    db, report = mixed
    status = json.loads(run(["status", "--db", str(db), "--json"], cli_env).stdout)
    by_reason = {r["error"] for r in report["failures"]}
    assert sum(status["failures"].values()) == 3
    assert status["failures"] == {"not a readable video container": 2, "empty file": 1}, (status["failures"], by_reason)
    text = run(["status", "--db", str(db)], cli_env).stdout
    assert "failed: 2 x not a readable video container" in text and "failed: 1 x empty file" in text
    sampling = next(line for line in text.splitlines() if line.startswith("sampling:"))
    assert "{" not in sampling and "'" not in sampling and "fps 2" in sampling and "clip_seconds 2" in sampling


def test_list_shows_every_video_and_filters(mixed, cli_env):
    db, report = mixed
    rows = [json.loads(line) for line in run(["list", "--db", str(db), "--json"], cli_env).stdout.splitlines()]
    assert len(rows) == report["ok"] + report["failed"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["uri"].split("videos/", 1)[1] for r in ok) == sorted(LIBRARY_SPECS)
    assert sum(r["n_frames"] for r in ok) == report["frames"] and sum(r["n_clips"] for r in ok) == report["clips"]
    by_name = {r["uri"].split("videos/", 1)[1]: r for r in rows}
    assert by_name["h264_320x240.mp4"]["duration_s"] == pytest.approx(6.0, abs=0.1)
    assert all(r["decoder"] for r in ok) and all(r["error"] is None for r in ok)

    failed = [json.loads(line) for line in run(["list", "--db", str(db), "--failed", "--json"], cli_env).stdout.splitlines()]
    assert sorted(r["uri"].rsplit("/", 1)[1] for r in failed) == ["also-broken.mkv", "broken.mp4", "empty.mp4"]
    assert all(r["status"] == "failed" and r["error"] for r in failed)

    text = run(["list", "--db", str(db), "--failed"], cli_env).stdout.splitlines()
    assert len(text) == 3 and any("empty.mp4" in l and "-- empty file" in l for l in text), text
    one = run(["list", "--db", str(db), "--filter", f"uri={by_name['sub/h264_640x360.mp4']['uri']}", "--json"], cli_env)
    assert [json.loads(l)["video_id"] for l in one.stdout.splitlines()] == [by_name["sub/h264_640x360.mp4"]["video_id"]]
    assert len(run(["list", "--db", str(db), "--limit", "2"], cli_env).stdout.splitlines()) == 2
    nothing = run(["list", "--db", str(db), "--filter", "uri=/nowhere.mp4"], cli_env).stdout
    assert nothing.strip() == "no videos match the filter"


def test_list_and_status_mistakes_are_one_line(mixed, cli_env, tmp_path):
    db, _ = mixed
    for args, needle in ((["list", "--db", str(db), "--filter", "nope=1"], "unknown filter column 'nope'"),
                         (["list", "--db", str(db), "--filter", "uri"], "COLUMN=VALUE"),
                         (["list", "--db", str(tmp_path / "missing")], "no vidclip store")):
        proc = run(args, cli_env, check=False)
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "missing").exists()  # looking never creates a store


def test_looking_at_a_store_never_imports_torch_or_ray(mixed, cli_env):
    db, _ = mixed
    code = ("import sys; from vidclip.cli.main import main; rc = main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('torch', 'open_clip', 'ray', 'av', 'decord') if m in sys.modules); "
            "print('HEAVY', rc, heavy)")
    for command in (["status"], ["list"], ["list", "--failed"], ["prune"], ["check"]):
        proc = subprocess.run([sys.executable, "-c", code, *command, "--db", str(db)], capture_output=True, text=True,
                              env=cli_env, timeout=300)
        last = proc.stdout.strip().splitlines()[-1]
        assert last == "HEAVY 0 []", (command, last, proc.stderr)
