"""Decoders that hang, segfault or abort cost one recorded failure each, never the job."""

import shutil

import pytest

import vidclip
from conftest import SAMPLING, TINY
from vidclip.config import DecodeConfig
from vidclip.errors import DecodeError
from vidclip.ingest.sandbox import DecodeSandbox


def test_hang_crash_and_abort_are_recorded_failures(tmp_path, videos):
    good = sorted(p for p in videos.rglob("*") if p.is_file())
    src = videos / "h264_320x240.mp4"
    for name in ("hang.mp4", "segv.mp4", "abort.mp4", "midway_segv.mp4"):
        shutil.copy(src, videos / name)
        with open(videos / name, "ab") as fh:  # distinct content -> distinct video ids
            fh.write(name.encode())
    lib = vidclip.open(tmp_path / "db", model=TINY)
    decode = DecodeConfig(job="faults:decode_job", timeout_s=3.0)
    report = lib.ingest([videos], SAMPLING, decode=decode, progress=False)
    assert report.ok == len(good) and report.failed == 4
    errors = {f["uri"].rsplit("/", 1)[-1]: f["error"] for f in report.failures}
    assert "timed out" in errors["hang.mp4"] and "killed" in errors["hang.mp4"]
    assert "SIGSEGV" in errors["segv.mp4"]
    assert "SIGABRT" in errors["abort.mp4"]
    assert "SIGSEGV" in errors["midway_segv.mp4"]
    # nothing of the failed videos is visible; the good ones are all there
    store = lib.store
    assert store.count("videos", "status = 'failed'") == 4
    assert {r["uri"] for r in store.failures()} == {str(videos / n) for n in errors}
    hits = lib.search("anything", k=100, per_video=100)
    assert {h.uri for h in hits} == {str(p) for p in good}


def test_sandbox_survives_and_restarts(tmp_path, videos):
    from vidclip.config import SamplingConfig
    from vidclip.model.geometry import FrameGeometry

    geometry = FrameGeometry(size=(64, 64))
    crash = tmp_path / "segv.mp4"
    shutil.copy(videos / "h264_320x240.mp4", crash)
    with DecodeSandbox("faults:decode_job", timeout_s=10) as box:
        with pytest.raises(DecodeError, match="crashed"):
            list(box.run(str(crash), SamplingConfig(), DecodeConfig(), geometry))
        messages = list(box.run(str(videos / "h264_320x240.mp4"), SamplingConfig(), DecodeConfig(), geometry))
    kinds = [m[0] for m in messages]
    assert kinds[0] == "facts" and kinds[-1] == "done" and "chunk" in kinds


def test_stopping_midway_does_not_leak_into_the_next_job(tmp_path, videos):
    from vidclip.config import SamplingConfig
    from vidclip.model.geometry import FrameGeometry

    geometry = FrameGeometry(size=(64, 64))
    args = (SamplingConfig(fps=4.0), DecodeConfig(chunk_frames=2), geometry)
    first, second = str(videos / "h264_320x240.mp4"), str(videos / "vp9_256x144.webm")
    with DecodeSandbox("vidclip.ingest.video:decode_job", timeout_s=30) as box:
        stream = box.run(first, *args)
        assert next(stream)[0] == "facts"
        stream.close()  # stop after the first message, mid-video
        messages = list(box.run(second, *args))
    facts = messages[0][1]
    assert messages[0][0] == "facts" and messages[-1][0] == "done"
    assert facts.info.codec == "vp9"  # the second job's own messages, none left over from the first
    n = sum(len(m[1].position) for m in messages if m[0] == "chunk")
    assert n == len(facts.plan.frame_index)
