"""The CLI contract: exact JSON keys, exit codes, one-line errors, searches from another process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import LIBRARY_SPECS, TINY_CONFIG
from vidclip.samples.synth import draw_frame

TINY_ARGS = ["--model", "vidclip-tiny", "--pretrained", "none", "--model-config", TINY_CONFIG]


def run(args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "vidclip", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vidclip: error:"), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def db(tmp_path, videos, cli_env):
    db = tmp_path / "db"
    proc = run(["ingest", str(videos), "--db", str(db), *TINY_ARGS, "--fps", "2", "--clip-seconds", "2", "--local", "--json"], cli_env)
    return db, json.loads(proc.stdout), videos


def test_ingest_json_contract(db):
    _, report, _ = db
    assert set(report) == {"ok", "failed", "skipped", "failures", "frames", "clips", "seconds"}
    assert report["ok"] == len(LIBRARY_SPECS) and report["failed"] == 0 and report["failures"] == []
    assert all(isinstance(report[k], int) for k in ("ok", "failed", "skipped", "frames", "clips"))
    assert isinstance(report["seconds"], float)


def test_ingest_says_which_runner_it_chose_once(tmp_path, cli_env, videos):
    import os

    from pipelines.options import choose_runner

    proc = run(["ingest", str(videos / "sub"), "--db", str(tmp_path / "db"), *TINY_ARGS, "--json"], cli_env)
    choice = choose_runner(len(os.sched_getaffinity(0)), 0)  # CI machines have no GPU
    said = [l for l in proc.stderr.splitlines() if l.startswith("vidclip: runner:")]
    assert said == [f"vidclip: runner: {choice.reason}; --runner local|ray overrides"], proc.stderr
    assert json.loads(proc.stdout)["ok"] == 1
    for args, needle in ((["--local", "--runner", "ray"], "contradict"), (["--local", "--ray-address", "auto"], "drop --local")):
        bad = run(["ingest", str(videos), "--db", str(tmp_path / "db2"), *args], cli_env, check=False)
        assert_one_line_error(bad, needle)


def test_ingest_records_bad_files_and_still_exits_zero(tmp_path, cli_env, videos):
    (videos / "broken.mp4").write_text("this is not a video")
    proc = run(["ingest", str(videos), "--db", str(tmp_path / "db2"), *TINY_ARGS, "--local", "--json"], cli_env)
    report = json.loads(proc.stdout)
    assert report["failed"] == 1 and report["ok"] == len(LIBRARY_SPECS)
    assert report["failures"][0]["uri"].endswith("broken.mp4")
    assert "not a readable video container" in report["failures"][0]["error"]


def test_search_and_status_from_other_processes(db, cli_env, tmp_path):
    db, report, videos = db
    # the second ingest (another process) adds nothing
    again = json.loads(run(["ingest", str(videos), "--db", str(db), "--local", "--json"], cli_env).stdout)
    assert (again["ok"], again["skipped"]) == (0, len(LIBRARY_SPECS))
    # image query: a frame from second 3 of the 320x240 video (another process rebuilds the seeded model)
    from PIL import Image

    query = tmp_path / "q.png"
    Image.fromarray(draw_frame(LIBRARY_SPECS["h264_320x240.mp4"], 3.2)).save(query)
    hits = json.loads(run(["search", "--image", str(query), "--db", str(db), "-k", "2", "--json"], cli_env).stdout)
    core = {"video_id", "uri", "start_s", "end_s", "score"}  # the contract scripts rely on
    moment = {"clip_id", "clip_start_s", "clip_end_s", "best_t", "clip_score"}  # the refined moment's clip
    assert [set(h) for h in hits] == [core | moment] * 2
    assert all(h["clip_start_s"] <= h["start_s"] <= h["best_t"] < h["end_s"] <= h["clip_end_s"] for h in hits)
    assert hits[0]["uri"] == str(videos / "h264_320x240.mp4") and hits[0]["clip_start_s"] <= 3.2 < hits[0]["clip_end_s"]
    assert abs(hits[0]["best_t"] - 3.2) <= 0.5  # the best frame is the query's own (frames every 0.5 s)
    per = json.loads(run(["search", "a red ball", "--db", str(db), "-k", "20", "--per-video", "3", "--json"], cli_env).stdout)
    assert len(per) == report["clips"]  # no video has more than 3 clips
    assert len({h["video_id"] for h in per}) == len(LIBRARY_SPECS)
    vids = json.loads(run(["search", "x", "--db", str(db), "--level", "video", "--json"], cli_env).stdout)
    assert len(vids) == len(LIBRARY_SPECS) and all(h["clip_id"] is None for h in vids)
    status = json.loads(run(["status", "--db", str(db), "--json"], cli_env).stdout)
    assert status["videos"] == {"ok": len(LIBRARY_SPECS), "failed": 0}
    assert status["frames"] == report["frames"] and status["clips"] == report["clips"]
    assert status["model"] == {"name": "vidclip-tiny", "pretrained": "none"}
    assert [(t["table"], t["mode"], t["needs_reindex"]) for t in status["index"]] == [
        ("clips", "exact", False), ("video_vectors", "exact", False)]


def test_model_mismatch_is_refused(db, cli_env):
    db, _, videos = db
    proc = run(["ingest", str(videos), "--db", str(db), "--model", "ViT-B-32", "--local"], cli_env, check=False)
    assert_one_line_error(proc, "different model")
    proc = run(["ingest", str(videos), "--db", str(db), "--fps", "4", "--local"], cli_env, check=False)
    assert_one_line_error(proc, "different sampling")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["ingest", "/no/such/path", "--db", "{tmp}/db"], "no such file or directory"),
        (["ingest", "{tmp}/emptydir", "--db", "{tmp}/db"], "contains no video files"),
        (["search", "x", "--db", "{tmp}/nostore"], "no vidclip store"),
        (["status", "--db", "{tmp}/notastore"], "not a vidclip store"),
        (["status", "--db", "{tmp}/afile"], "not a directory"),
        (["search", "--db", "{tmp}/db"], "give a text QUERY, --image PATH or --video PATH"),
        (["search", "x", "--db", "{tmp}/db", "-k", "0"], "argument -k"),
        (["search", "x", "--db", "{tmp}/nostore", "-k", "5000"], "argument -k: expected at most 1000"),  # before the store
        (["search", "x", "--db", "{tmp}/nostore", "--image", "{tmp}/nope.jpg"], "nope.jpg"),
        (["ingest", "{tmp}/emptydir", "--db", "{tmp}/db", "--fps", "-1"], "argument --fps"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_mistakes_get_one_line_and_nonzero_exit(tmp_path, cli_env, args, needle):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "x.lance").mkdir()
    (tmp_path / "afile").write_text("x")
    proc = run([a.replace("{tmp}", str(tmp_path)) for a in args], cli_env, check=False)
    assert_one_line_error(proc, needle)
    assert proc.stdout == ""


def test_offline_pretrained_tag_fails_with_hint(tmp_path, cli_env, videos):
    env = dict(cli_env, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"))
    proc = run(["ingest", str(videos), "--db", str(tmp_path / "db"), "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k", "--local"], env, check=False)
    assert_one_line_error(proc, "--pretrained")
    assert not (tmp_path / "db" / "clips.lance").exists()
