"""Bad and hostile input: every file ends either ingested correctly or recorded as failed with a
specific reason.  Real generated files; the same corpus on the in-process path and on Ray."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import vidclip
from conftest import SAMPLING, TINY
from vidclip.config import DecodeConfig
from vidclip.samples.synth import (
    VideoSpec,
    draw_frame,
    frame_times,
    write_audio_only,
    write_no_frames,
    write_not_a_video,
    write_truncated,
    write_video,
    write_zero_byte,
)

BUDGET = DecodeConfig(max_pixels=1280 * 720)

# file name -> expected outcome: ("ok", extra check) or ("failed", reason substring)
EXPECTED = {
    "zero.mp4": ("failed", "empty file"),
    "text.mp4": ("failed", "not a readable video container"),
    "picture.mp4": ("failed", "still image"),
    "audio_only.mp4": ("failed", "no video stream"),
    "no_frames.mp4": ("failed", "no frames"),
    "huge_1920x1080.mp4": ("failed", "exceeds the pixel budget"),
    "av1.mp4": ("ok", None),
    "vfr.mp4": ("ok", None),
    "rotated 90°.mp4": ("ok", None),
    "truncated.mp4": ("either", None),
    "truncated.webm": ("either", None),
    "名前 with spaces.webm": ("ok", None),
    "dup_a.mp4": ("ok", None),
    "dup_b.mp4": ("skipped", None),
}

SPECS = {
    "av1.mp4": VideoSpec(codec="av1", duration_s=3.0, seed=11, scene_seconds=2.0),
    "vfr.mp4": VideoSpec(vfr=True, fps=10, duration_s=4.0, seed=12, scene_seconds=2.0),
    "rotated 90°.mp4": VideoSpec(width=240, height=320, rotation=90, duration_s=3.0, seed=13, scene_seconds=2.0),
    "名前 with spaces.webm": VideoSpec(codec="vp9", duration_s=2.0, seed=14),
    "dup_a.mp4": VideoSpec(duration_s=2.0, seed=15),
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    write_zero_byte(d / "zero.mp4")
    write_not_a_video(d / "text.mp4", kind="text")
    write_not_a_video(d / "picture.mp4", kind="png")
    write_audio_only(d / "audio_only.mp4")
    write_no_frames(d / "no_frames.mp4")
    write_video(d / "huge_1920x1080.mp4", VideoSpec(width=1920, height=1080, duration_s=0.5, fps=2))
    for name, spec in SPECS.items():
        write_video(d / name, spec)
    shutil.copy(d / "dup_a.mp4", d / "dup_b.mp4")
    write_truncated(d / "truncated.mp4", VideoSpec(duration_s=4.0, seed=16))
    write_truncated(d / "truncated.webm", VideoSpec(codec="vp9", duration_s=4.0, seed=17))
    return d


def _outcomes(lib, report, root):
    rows = {os.path.basename(r["uri"]): r for r in lib.store.table("videos").to_arrow().to_pylist()}
    failures = {os.path.basename(f["uri"]): f["error"] for f in report.failures}
    return rows, failures


def _check(lib, report, root):
    rows, failures = _outcomes(lib, report, root)
    for name, (kind, reason) in EXPECTED.items():
        if kind == "failed":
            assert name in failures, name
            assert reason in failures[name], (name, failures[name])
            assert rows[name]["status"] == "failed" and rows[name]["error"] == failures[name]
        elif kind == "ok":
            assert rows[name]["status"] == "ok", (name, rows[name])
        elif kind == "either":
            row = rows[name]
            assert (row["status"] == "ok" and row["n_frames"] > 0) or (row["status"] == "failed" and row["error"]), row
        elif kind == "skipped":
            assert name not in rows  # the duplicate is ingested once ...
    # ... and both uris are known
    sources = lib.store.sources()
    assert sources[str(root / "dup_a.mp4")]["video_id"] == sources[str(root / "dup_b.mp4")]["video_id"]
    assert report.ok + report.failed + report.skipped == len(EXPECTED)
    # AV1: decord cannot read it; PyAV took over and the reason is recorded
    av1 = rows["av1.mp4"]
    assert av1["decoder"] == "pyav" and av1["decoder_note"].startswith("decord failed")
    # VFR: stored timestamps are the true pts
    vid = rows["vfr.mp4"]["video_id"]
    stored = np.array(sorted(lib.store.table("frames").search().where(f"video_id = '{vid}'").limit(None).to_arrow().column("t").to_pylist()))
    truth = frame_times(SPECS["vfr.mp4"])
    assert np.all(np.min(np.abs(stored[:, None] - truth[None, :]), axis=1) < 1e-3)
    # rotation: stored upright size, and an upright frame finds its clip
    rot = rows["rotated 90°.mp4"]
    assert (rot["width"], rot["height"], rot["rotation"]) == (240, 320, 90)
    hit = lib.search(image=draw_frame(SPECS["rotated 90°.mp4"], 1.0), k=1)[0]
    assert hit.uri.endswith("rotated 90°.mp4") and hit.start_s <= 1.0 < hit.end_s
    # nothing failed is searchable
    visible = {os.path.basename(h.uri) for h in lib.search("x", k=100)}
    assert visible == {n for n, (k, _) in EXPECTED.items() if k == "ok"} | {
        n for n, (k, _) in EXPECTED.items() if k == "either" and rows[n]["status"] == "ok"
    }


def test_hostile_inputs_in_process(tmp_path, hostile_dir):
    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([hostile_dir], SAMPLING, decode=BUDGET, progress=False)
    _check(lib, report, hostile_dir)
    # a rerun adds nothing; --retry-failed re-attempts the failures (they fail again, same reasons)
    again = lib.ingest([hostile_dir], progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, len(EXPECTED))
    retry = lib.ingest([hostile_dir], decode=BUDGET, progress=False, retry_failed=True)
    assert retry.failed == report.failed and retry.ok == 0


@pytest.mark.ray
@pytest.mark.slow
def test_hostile_inputs_on_ray(tmp_path, hostile_dir):
    from pipelines.options import JobOptions

    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([hostile_dir], SAMPLING, decode=BUDGET, progress=False, ray=JobOptions(decode_workers=2))
    _check(lib, report, hostile_dir)


def test_path_that_disappears_between_listing_and_decoding(tmp_path, videos):
    from vidclip.ingest.manifest import list_inputs
    from vidclip.ingest.runner import run_in_process

    import temporal

    lib = vidclip.open(tmp_path / "db", model=TINY)
    entries = list(list_inputs([str(videos)]))
    victim = videos / "vp9_256x144.webm"
    os.remove(victim)
    report = run_in_process(lib.store, entries, lib.encoder, temporal.build("mean", lib.encoder.dim), "mean", SAMPLING, progress=False)
    assert report.failed == 1 and report.ok == len(entries) - 1
    assert report.failures[0]["uri"] == str(victim) and "No such file" in report.failures[0]["error"]


def test_manifest_with_metadata(tmp_path, videos):
    import json

    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"uri": str(videos / "h264_320x240.mp4"), "title": "first", "tags": ["a", "b"]},
                {"uri": os.path.relpath(videos / "vp9_256x144.webm", tmp_path), "title": "second"},
                {"uri": str(tmp_path / "missing.mp4"), "title": "gone"},
            ]
        )
    )
    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([str(manifest)], SAMPLING, progress=False)
    assert (report.ok, report.failed) == (2, 1)
    rows = {os.path.basename(r["uri"]): r for r in lib.store.table("videos").to_arrow().to_pylist()}
    assert json.loads(rows["h264_320x240.mp4"]["metadata"]) == {"tags": ["a", "b"], "title": "first"}
    assert json.loads(rows["vp9_256x144.webm"]["metadata"]) == {"title": "second"}
    assert "No such file" in rows["missing.mp4"]["error"]


def test_prune_removes_videos_whose_files_are_gone(tmp_path, videos):
    lib = vidclip.open(tmp_path / "db", model=TINY)
    first = lib.ingest([videos], SAMPLING, progress=False)
    shutil.copy(videos / "h264_320x240.mp4", videos / "copy.mp4")
    lib.ingest([videos], progress=False)
    os.remove(videos / "vp9_256x144.webm")
    os.remove(videos / "h264_320x240.mp4")  # its copy remains: the video stays, relinked to the copy
    result = lib.store.prune()
    assert result == {"removed_uris": 2, "removed_videos": 1}
    assert lib.store.count("videos") == first.ok - 1
    uris = {h.uri for h in lib.search("x", k=100)}
    assert str(videos / "copy.mp4") in uris and str(videos / "vp9_256x144.webm") not in uris
    assert str(videos / "h264_320x240.mp4") not in uris


def test_an_extreme_aspect_ratio_is_refused_before_it_is_decoded(tmp_path):
    """A 16384x16 stripe would be resized to 229376x224 frames (147 MB each) for the model: refused
    with its reason before decoding, while a 16:1 panorama is ingested."""
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "stripe.mp4", VideoSpec(codec="h264", width=16384, height=16, duration_s=2.0, fps=4))
    write_video(src / "tall.mp4", VideoSpec(codec="vp9", width=16, height=2048, duration_s=2.0, fps=4))
    write_video(src / "panorama.mp4", VideoSpec(codec="h264", width=1024, height=64, duration_s=2.0, fps=4))
    lib = vidclip.open(tmp_path / "db", model=TINY)
    report = lib.ingest([src], SAMPLING, progress=False)
    reasons = {f["uri"].rsplit("/", 1)[-1]: f["error"] for f in report.failures}
    assert report.ok == 1 and set(reasons) == {"stripe.mp4", "tall.mp4"}, reasons
    assert "aspect ratio 16384x16 is over 16:1" in reasons["stripe.mp4"] and "MB each" in reasons["stripe.mp4"]
    assert "aspect ratio 16x2048 is over 16:1" in reasons["tall.mp4"]
