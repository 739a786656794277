"""Probe + decode on real encoded files (generated with PyAV at test time)."""

import numpy as np
import pytest

from vidclip.config import SamplingConfig
from vidclip.ingest.decoder import DECORD, PYAV, SampleReader
from vidclip.errors import DecodeError, ProbeError
from vidclip.ingest.probe import probe
from vidclip.ingest.sampling import plan_samples
from vidclip.samples.synth import (
    VideoSpec,
    draw_frame,
    frame_times,
    suffix_for,
    write_audio_only,
    write_no_frames,
    write_not_a_video,
    write_video,
    write_zero_byte,
)

BUDGET = 7680 * 4320


def _write(tmp_path, **kw):
    spec = VideoSpec(**kw)
    path = write_video(tmp_path / f"v_{spec.codec}_{spec.rotation}_{int(spec.vfr)}{suffix_for(spec.codec)}", spec)
    return spec, str(path)


def _read(path, spec_fps=1.0, size=(160, 120), decoders=(DECORD, PYAV)):
    pr = probe(path, BUDGET)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=spec_fps, clip_seconds=2.0))
    reader = SampleReader(path, pr, plan, size, chunk_frames=3, decoders=decoders)
    chunks = list(reader.chunks())
    return pr, plan, reader, chunks


@pytest.mark.parametrize(
    "codec,width,height",
    [("h264", 320, 240), ("vp9", 256, 144), ("hevc", 320, 240), ("mpeg4", 320, 240), ("mjpeg", 320, 240)],
)
def test_probe_reports_facts_and_pts_timeline(tmp_path, codec, width, height):
    spec, path = _write(tmp_path, codec=codec, width=width, height=height, fps=10, duration_s=3.0)
    pr = probe(path, BUDGET)
    info = pr.info
    assert (info.width, info.height) == (width, height)
    assert info.codec == codec
    assert info.rotation == 0
    assert info.fps == pytest.approx(10.0, rel=1e-3)
    assert info.duration_s == pytest.approx(3.0, abs=0.11)
    np.testing.assert_allclose(pr.timeline, frame_times(spec), atol=1e-3)


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_decoded_frames_match_drawn_content_at_their_pts(tmp_path, codec):
    spec, path = _write(tmp_path, codec=codec, duration_s=4.0, fps=10)
    pr, plan, reader, chunks = _read(path, spec_fps=2.0, size=(320, 240))
    assert reader.decoder == DECORD and reader.note == ""
    frames = np.concatenate([c.frames for c in chunks])
    times = np.concatenate([c.times for c in chunks])
    assert len(frames) == 8 and frames.shape[1:] == (240, 320, 3)
    for frame, t in zip(frames, times):
        err = np.abs(frame.astype(int) - draw_frame(spec, t).astype(int)).mean()
        assert err < 12, (t, err)


def test_decode_time_resize_keeps_chunks_small(tmp_path):
    spec, path = _write(tmp_path, width=640, height=360, duration_s=3.0)
    _, _, _, chunks = _read(path, spec_fps=4.0, size=(128, 72))
    assert all(c.frames.shape[1:] == (72, 128, 3) for c in chunks)
    assert max(len(c.position) for c in chunks) <= 3  # chunk_frames bound


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_tag_gives_upright_frames(tmp_path, rotation):
    spec, path = _write(tmp_path, width=320, height=240, rotation=rotation, duration_s=2.0)
    pr = probe(path, BUDGET)
    assert pr.info.rotation == rotation
    assert pr.info.display_size == (320, 240)
    _, _, _, chunks = _read(path, spec_fps=1.0, size=(320, 240))
    for chunk in chunks:
        for frame, t in zip(chunk.frames, chunk.times):
            assert frame.shape == (240, 320, 3)
            assert np.abs(frame.astype(int) - draw_frame(spec, t).astype(int)).mean() < 12


def test_variable_frame_rate_times_are_true_pts(tmp_path):
    spec, path = _write(tmp_path, vfr=True, fps=10, duration_s=4.0)
    truth = frame_times(spec)
    assert np.ptp(np.diff(truth)) > 0.04  # really variable
    pr, plan, reader, chunks = _read(path, spec_fps=3.0, size=(320, 240))
    times = np.concatenate([c.times for c in chunks])
    assert set(np.round(times, 4)) <= set(np.round(truth, 4))
    # each sampled frame is the one on screen at its target time
    targets = np.arange(1 / 6, pr.info.duration_s, 1 / 3)
    expected = truth[np.searchsorted(truth, targets, side="right") - 1]
    np.testing.assert_allclose(times, np.unique(expected), atol=1e-4)
    for chunk in chunks:
        for frame, t in zip(chunk.frames, chunk.times):
            assert np.abs(frame.astype(int) - draw_frame(spec, t).astype(int)).mean() < 12


def test_av1_falls_back_to_pyav_and_records_why(tmp_path):
    spec, path = _write(tmp_path, codec="av1", duration_s=2.0)
    pr, plan, reader, chunks = _read(path, spec_fps=2.0, size=(320, 240))
    assert reader.decoder == PYAV
    assert reader.note.startswith("decord failed:")
    frames = np.concatenate([c.frames for c in chunks])
    assert len(frames) == len(plan.frame_index) == 4
    times = np.concatenate([c.times for c in chunks])
    assert np.abs(frames[0].astype(int) - draw_frame(spec, times[0]).astype(int)).mean() < 12


def test_pyav_and_decord_agree(tmp_path):
    spec, path = _write(tmp_path, duration_s=3.0)
    _, _, r1, c1 = _read(path, spec_fps=2.0, decoders=(DECORD,))
    _, _, r2, c2 = _read(path, spec_fps=2.0, decoders=(PYAV,))
    a = np.concatenate([c.frames for c in c1]).astype(int)
    b = np.concatenate([c.frames for c in c2]).astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 6  # same frames; scalers differ slightly
    np.testing.assert_array_equal(np.concatenate([c.times for c in c1]), np.concatenate([c.times for c in c2]))


def test_probe_refusals_name_the_reason(tmp_path):
    cases = {
        write_zero_byte(tmp_path / "zero.mp4"): "empty file",
        write_not_a_video(tmp_path / "text.mp4", kind="text"): "not a readable video container",
        write_audio_only(tmp_path / "audio.m4a"): "no video stream",
        write_no_frames(tmp_path / "noframes.mp4"): "no frames",
    }
    for path, reason in cases.items():
        with pytest.raises(ProbeError) as err:
            probe(str(path), BUDGET)
        assert reason in err.value.reason, (path, err.value.reason)
        assert str(path) in str(err.value)


def test_pixel_budget_refused_before_decoding(tmp_path):
    spec, path = _write(tmp_path, width=640, height=480, duration_s=1.0)
    with pytest.raises(ProbeError, match="exceeds the pixel budget"):
        probe(path, max_pixels=640 * 480 - 1)


def test_decode_error_when_no_decoder_left(tmp_path):
    spec, path = _write(tmp_path, codec="av1", duration_s=1.0)
    pr = probe(path, BUDGET)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig())
    with pytest.raises(DecodeError):
        list(SampleReader(path, pr, plan, (64, 48), decoders=(DECORD,)).chunks())


def test_png_named_mp4_is_refused_as_still_image(tmp_path):
    path = write_not_a_video(tmp_path / "picture.mp4", kind="png")
    with pytest.raises(ProbeError, match="still image"):
        probe(str(path), BUDGET)


def test_truncated_matroska_is_noted_not_silent(tmp_path):
    from vidclip.samples.synth import write_truncated

    spec = VideoSpec(codec="vp9", duration_s=6.0)
    path = write_truncated(tmp_path / "cut.webm", spec, fraction=0.5)
    pr = probe(str(path), BUDGET)
    assert pr.info.duration_s < 5.0
    assert "truncated" in pr.note
