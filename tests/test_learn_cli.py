"""`vidclip train / eval / reindex` through `python3 -m vidclip`: JSON contracts, one-line errors, and the
whole loop on generated videos (ingest -> train -> reindex -> eval -> ingest more -> search)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import temporal
import vidclip
from conftest import LIBRARY_SPECS, SAMPLING, TINY, TINY_CONFIG
from vidclip.store.store import Store
from vidclip.samples.synth import VideoSpec, write_video
from test_training import expected_best_epoch

TINY_ARGS = ["--model", "vidclip-tiny", "--pretrained", "none", "--model-config", TINY_CONFIG]
EVAL_KEYS = {"t2v", "v2t", "dsl", "dsl_note", "ties", "temporal", "captions", "videos", "skipped", "max_frames"}
METRIC_KEYS = {"R1", "R5", "R10", "MdR", "MnR"}


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + e.get("PYTHONPATH", "")
    e["TQDM_DISABLE"] = "1"
    e["OMP_NUM_THREADS"] = "1"  # tiny models: one thread is faster, above all on a busy machine
    return e


def run(args, check=True):
    proc = subprocess.run([sys.executable, "-m", "vidclip", *map(str, args)], capture_output=True, text=True, env=env(), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"vidclip {' '.join(map(str, args))}: exit {proc.returncode}: {proc.stderr}")
    return proc


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidclip: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def write_captions(path: Path, names) -> Path:
    """One whole-video caption per video, and one for its first 2 s, named by file name."""
    rows = []
    for name in names:
        base = name.rsplit("/", 1)[-1]
        rows.append({"video": base, "caption": f"everything in {base}"})
        rows.append({"video": base, "caption": f"the opening of {base}", "start_s": 0, "end_s": 2})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, video_dir):
    """A tiny-model store of the shared test library (ingested in-process, which is faster), and its captions."""
    root = tmp_path_factory.mktemp("learn_cli")
    assert vidclip.open(root / "db", model=TINY).ingest([video_dir], SAMPLING, progress=False).ok == len(LIBRARY_SPECS)
    return root / "db", write_captions(root / "captions.jsonl", LIBRARY_SPECS)


def test_eval_json_contract(built):
    db, caps = built
    result = json.loads(run(["eval", "--db", db, "--captions", caps, "--temporal", "mean", "--json"]).stdout)
    assert set(result) == EVAL_KEYS
    assert set(result["t2v"]) == set(result["v2t"]) == METRIC_KEYS
    assert set(result["dsl"]) == {"t2v", "v2t"} and set(result["dsl"]["t2v"]) == METRIC_KEYS
    assert "offline" in result["dsl_note"] and "serving" in result["dsl_note"]
    assert result["ties"] == "pessimistic"
    assert result["captions"] == 2 * len(LIBRARY_SPECS) and result["videos"] == 2 * len(LIBRARY_SPECS)
    assert result["temporal"] == {"name": "mean"} and result["skipped"] == 0


def test_user_mistakes_are_one_line_errors(built, tmp_path):
    db, caps = built
    bad = tmp_path / "bad.jsonl"
    bad.write_text(caps.read_text() + json.dumps({"video": "nosuch.mp4", "caption": "a ghost"}) + "\n")
    proc = run(["train", "--db", db, "--captions", bad, "--out", tmp_path / "ckpt", "--epochs", "1"], check=False)
    assert_one_line_error(proc, "nosuch.mp4", "bad.jsonl:9", "--skip-missing")
    assert not (tmp_path / "ckpt").exists()
    # --skip-missing counts what it left out
    result = json.loads(run(["eval", "--db", db, "--captions", bad, "--temporal", "mean", "--skip-missing", "--json"]).stdout)
    assert result["skipped"] == 1 and result["captions"] == 2 * len(LIBRARY_SPECS)
    # a checkpoint made for another CLIP model is refused, and the store is left as it was
    temporal.save(temporal.build("seq_transformer", 64), tmp_path / "other", clip_model="ViT-B-32")
    proc = run(["reindex", "--db", db, "--temporal", tmp_path / "other"], check=False)
    assert_one_line_error(proc, "ViT-B-32")
    assert Store.open(str(db)).segments == {"clip": "clips", "video": "video_vectors"}
    assert_one_line_error(run(["reindex", "--db", db, "--temporal", "attention"], check=False), "attention")


@pytest.mark.slow
def test_ingest_train_reindex_eval_then_ingest_more(tmp_path, videos):
    db = tmp_path / "db"
    ingest = json.loads(run(["ingest", videos, "--db", db, *TINY_ARGS, "--fps", "2", "--clip-seconds", "2", "--local", "--json"]).stdout)
    assert ingest["ok"] == len(LIBRARY_SPECS)
    caps = write_captions(tmp_path / "captions.jsonl", LIBRARY_SPECS)
    ckpt = tmp_path / "ckpt"

    report = json.loads(run(["train", "--db", db, "--captions", caps, "--out", ckpt, "--epochs", "2", "--lr", "1e-3",
                             "--batch-size", "4", "--val-fraction", "0.25", "--seed", "3", "--json"]).stdout)
    assert {p.name for p in ckpt.iterdir()} == {"config.json", "weights.safetensors", "metrics.json"}
    assert report["seed"] == 3 and len(report["epochs"]) == 3
    assert report["best_epoch"] == expected_best_epoch(report)
    assert report["data"]["val"]["videos"] == 1 and report["clip"]["name"] == "vidclip-tiny"
    assert temporal.load(ckpt, expect_clip_model="vidclip-tiny").name == "seq_transformer"

    with_ckpt = json.loads(run(["eval", "--db", db, "--captions", caps, "--temporal", ckpt, "--json"]).stdout)
    assert with_ckpt["temporal"]["checkpoint"] == str(ckpt.resolve())

    reindexed = json.loads(run(["reindex", "--db", db, "--temporal", ckpt, "--json"]).stdout)
    assert reindexed["videos"] == len(LIBRARY_SPECS) and reindexed["clips"] == ingest["clips"]
    assert reindexed["tables"] == {"clip": "clips_1", "video": "video_vectors_1"}
    status = json.loads(run(["status", "--db", db, "--json"]).stdout)
    assert status["temporal"]["checkpoint"] == str(ckpt.resolve()) and status["clips"] == ingest["clips"]

    # eval without --temporal uses the store's module: now the checkpoint
    default = json.loads(run(["eval", "--db", db, "--captions", caps, "--json"]).stdout)
    assert default["temporal"] == with_ckpt["temporal"] and default["t2v"] == with_ckpt["t2v"]

    # one more video: its clips are made by the checkpoint's module
    extra = tmp_path / "more" / "extra.mp4"
    extra.parent.mkdir()
    write_video(extra, VideoSpec(codec="h264", width=160, height=120, duration_s=4.0, seed=11, scene_seconds=2.0))
    assert json.loads(run(["ingest", extra, "--db", db, "--local", "--json"]).stdout)["ok"] == 1
    store = Store.open(str(db))
    vid = store.sources()[str(extra)]["video_id"]
    clips = store.table(store.segments["clip"]).search().where(f"video_id = '{vid}'").limit(None).to_arrow()
    assert clips.num_rows == 2 and set(clips.column("temporal").to_pylist()) == {"seq_transformer"}
    hits = json.loads(run(["search", "anything", "--db", db, "-k", "10", "--json"]).stdout)
    assert str(extra) in {h["uri"] for h in hits} and len(hits) == len(LIBRARY_SPECS) + 1

    back = json.loads(run(["reindex", "--db", db, "--temporal", "mean", "--json"]).stdout)
    assert back["temporal"] == {"name": "mean"} and back["dropped"] == ["clips_1", "video_vectors_1"]
