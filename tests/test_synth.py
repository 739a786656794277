"""vidclip.samples.synth writes real files: decode them back with PyAV and compare with the spec."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vidclip.samples import synth
from vidclip.samples.synth import VideoSpec

SMALL = dict(width=160, height=120, fps=10.0, duration_s=2.0)


def decode(path):
    """[(t seconds from pts, upright rgb frame, frame.rotation)] for every decoded video frame."""
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            rgb = f.to_ndarray(format="rgb24")
            out.append((float(f.pts * f.time_base), np.rot90(rgb, k=f.rotation // 90), f.rotation))
        return out


def mae(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_matches_spec(path, spec, max_err=12.0):
    frames = decode(path)
    times = np.array([t for t, _, _ in frames])
    expected = synth.frame_times(spec)
    assert len(frames) == len(expected)
    np.testing.assert_allclose(times, expected, atol=1e-3)
    for t, img, _ in frames:
        assert img.shape == (spec.height, spec.width, 3)
        assert mae(img, synth.draw_frame(spec, t)) < max_err, t
    return frames


# ---------------------------------------------------------------- codecs and containers


@pytest.mark.parametrize("codec", sorted(synth.CODECS))
def test_each_codec_round_trips(tmp_path, codec):
    codec_id = codec  # the friendly names are libavcodec's codec ids
    spec = VideoSpec(codec=codec, **SMALL)
    path = synth.write_video(tmp_path / f"v{synth.suffix_for(codec)}", spec)
    assert path.stat().st_size < 200_000
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.codec.canonical_name == codec_id
        assert not c.streams.audio
    assert_matches_spec(path, spec)


@pytest.mark.parametrize("codec,suffix", [("h264", ".mkv"), ("vp9", ".mp4"), ("mpeg4", ".avi"), ("mjpeg", ".mov")])
def test_other_containers(tmp_path, codec, suffix):
    spec = VideoSpec(codec=codec, **SMALL)
    assert_matches_spec(synth.write_video(tmp_path / f"v{suffix}", spec), spec)


def test_missing_suffix_gets_default_and_wrong_suffix_is_refused(tmp_path):
    assert synth.write_video(tmp_path / "v", VideoSpec(codec="vp9", **SMALL)).suffix == ".webm"
    with pytest.raises(ValueError, match="cannot go in"):
        synth.write_video(tmp_path / "v.avi", VideoSpec(codec="vp9", **SMALL))


@pytest.mark.parametrize(
    "kwargs",
    [dict(codec="xvid"), dict(width=161), dict(rotation=45), dict(gop=0), dict(fps=0), dict(seed=-1)],
)
def test_bad_spec_is_refused(kwargs):
    with pytest.raises(ValueError):
        VideoSpec(**kwargs)


# ---------------------------------------------------------------- rotation


@pytest.mark.parametrize("codec,rotation", [("h264", 90), ("h264", 270), ("vp9", 90), ("hevc", 180)])
def test_rotation_round_trips(tmp_path, codec, rotation):
    spec = VideoSpec(codec=codec, rotation=rotation, width=160, height=96, duration_s=1.0)
    path = synth.write_video(tmp_path / f"r{synth.suffix_for(codec)}", spec)
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == spec.coded_size
    assert spec.coded_size == ((96, 160) if rotation in (90, 270) else (160, 96))
    frames = assert_matches_spec(path, spec)
    assert {r % 360 for _, _, r in frames} == {rotation}
    # Turning the wrong way must not match: the test above can fail.
    t, upright, _ = frames[0]
    assert mae(np.rot90(upright, k=2), synth.draw_frame(spec, t)) > 20


def test_rotation_refused_for_avi(tmp_path):
    with pytest.raises(ValueError, match="rotation"):
        synth.write_video(tmp_path / "r.avi", VideoSpec(codec="mjpeg", rotation=90, **SMALL))


# ---------------------------------------------------------------- timing


def test_constant_rate_times():
    spec = VideoSpec(fps=10.0, duration_s=2.0)
    np.testing.assert_array_equal(synth.frame_times(spec), np.arange(20) / 10.0)
    assert len(synth.frame_times(VideoSpec(fps=30.0, duration_s=1.0))) == 30
    assert len(synth.frame_times(VideoSpec(fps=3.0, duration_s=1.1))) == 4  # frames while t < duration


def test_vfr_times_are_irregular_and_seeded():
    spec = VideoSpec(vfr=True, fps=10.0, duration_s=3.0)
    times = synth.frame_times(spec)
    steps = np.round(np.diff(times), 6)
    assert times[0] == 0.0 and times[-1] < spec.duration_s
    assert set(steps) == {0.05, 0.1, 0.15}
    np.testing.assert_array_equal(times, synth.frame_times(spec))
    assert not np.array_equal(times[:10], synth.frame_times(VideoSpec(vfr=True, fps=10.0, duration_s=3.0, seed=1))[:10])


@pytest.mark.parametrize("codec,suffix", [("h264", ".mp4"), ("vp9", ".webm"), ("av1", ".mkv"), ("mjpeg", ".avi")])
def test_vfr_decoded_pts_match(tmp_path, codec, suffix):
    spec = VideoSpec(codec=codec, vfr=True, **SMALL)
    assert_matches_spec(synth.write_video(tmp_path / f"v{suffix}", spec), spec)


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "av1", "mpeg4"])
def test_gop_sets_keyframe_interval(tmp_path, codec):
    # gop 7 is not a multiple of the 10-frame scenes, so scene-cut keyframes would show.
    spec = VideoSpec(codec=codec, gop=7, width=96, height=64, fps=10.0, duration_s=3.0)
    path = synth.write_video(tmp_path / f"g{synth.suffix_for(codec)}", spec)
    times = synth.frame_times(spec)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        keys = sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.size and p.is_keyframe)
    assert [int(np.argmin(np.abs(times - k))) for k in keys] == [0, 7, 14, 21, 28]


def test_mjpeg_is_intra_only(tmp_path):
    path = synth.write_video(tmp_path / "m.avi", VideoSpec(codec="mjpeg", gop=7, **SMALL))
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    assert len(packets) == 20 and all(p.is_keyframe for p in packets)


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("codec,suffix,audio_codec", [("h264", ".mp4", "aac"), ("vp9", ".webm", "opus"), ("mjpeg", ".avi", "mp2")])
def test_audio_stream_spans_the_video(tmp_path, codec, suffix, audio_codec):
    spec = VideoSpec(codec=codec, audio=True, **SMALL)
    path = synth.write_video(tmp_path / f"a{suffix}", spec)
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == audio_codec
        n = sum(f.samples for f in c.decode(audio=0))
        rate = c.streams.audio[0].sample_rate
    assert abs(n / rate - spec.duration_s) < 0.1
    assert_matches_spec(path, spec)


@pytest.mark.parametrize("suffix", [".m4a", ".webm", ".wav"])
def test_audio_only_has_no_video(tmp_path, suffix):
    path = synth.write_audio_only(tmp_path / f"a{suffix}", duration_s=1.5)
    with av.open(str(path)) as c:
        assert not c.streams.video and len(c.streams.audio) == 1
        n = sum(f.samples for f in c.decode(audio=0))
        assert abs(n / c.streams.audio[0].sample_rate - 1.5) < 0.05


# ---------------------------------------------------------------- hostile files


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".avi"])
def test_no_frames_has_a_stream_but_no_frames(tmp_path, suffix):
    path = synth.write_no_frames(tmp_path / f"n{suffix}", width=64, height=48)
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1
        assert c.streams.video[0].codec_context.width == 64
        assert list(c.decode(video=0)) == []


def test_no_frames_refuses_matroska(tmp_path):
    with pytest.raises(ValueError):
        synth.write_no_frames(tmp_path / "n.mkv")


def _decode_until_error(path):
    n = 0
    try:
        with av.open(str(path)) as c:
            for _ in c.decode(video=0):
                n += 1
    except av.error.FFmpegError:
        return n, True
    return n, False


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_truncated_mp4_opens_then_runs_out(tmp_path, codec):
    spec = VideoSpec(codec=codec, **SMALL)
    full = synth.write_video(tmp_path / "full.mp4", spec).stat().st_size
    path = synth.write_truncated(tmp_path / "cut.mp4", spec)
    assert 0.4 * full < path.stat().st_size < 0.8 * full
    with av.open(str(path)) as c:  # the index survived
        assert c.streams.video[0].frames == 20
    n, _ = _decode_until_error(path)
    assert 0 < n < 20


def test_truncated_mp4_without_faststart_cannot_open(tmp_path):
    spec = VideoSpec(**SMALL)
    path = synth.write_truncated(tmp_path / "cut.mp4", spec, faststart=False)
    full = synth.write_video(tmp_path / "full.mp4", spec).stat().st_size
    assert abs(path.stat().st_size - full / 2) <= 1
    with pytest.raises(av.error.InvalidDataError):
        av.open(str(path))


def test_truncated_webm_decodes_fewer_frames_silently(tmp_path):
    path = synth.write_truncated(tmp_path / "cut.webm", VideoSpec(codec="vp9", **SMALL))
    assert _decode_until_error(path)[0] < 20


def test_zero_byte(tmp_path):
    path = synth.write_zero_byte(tmp_path / "z.mp4")
    assert path.stat().st_size == 0
    with pytest.raises(av.error.FFmpegError):
        av.open(str(path))


def test_not_a_video(tmp_path):
    text = synth.write_not_a_video(tmp_path / "t.mp4", "text")
    with pytest.raises(av.error.InvalidDataError):
        av.open(str(text))
    png = synth.write_not_a_video(tmp_path / "p.mp4", "png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Quirk worth knowing for ingestion: libavformat sniffs content, not names, so a PNG
    # called .mp4 opens as a one-frame "video" (png_pipe).  Rejecting it is the caller's job.
    with av.open(str(png)) as c:
        assert "png" in c.format.name
    with pytest.raises(ValueError):
        synth.write_not_a_video(tmp_path / "x.mp4", "pdf")


# ---------------------------------------------------------------- content


def test_scenes_are_distinct_and_frames_within_a_scene_are_close():
    spec = VideoSpec(duration_s=6.0)
    frames = [synth.draw_frame(spec, s + 0.05) for s in range(6)]
    for i in range(6):
        for j in range(i + 1, 6):
            assert mae(frames[i], frames[j]) > 40, (i, j)
    for s in range(6):
        a, b, c = (synth.draw_frame(spec, s + dt) for dt in (0.0, 0.1, 0.9))
        assert 0 < mae(a, b) < 3, s  # it moves, a little per frame
        assert mae(a, c) < 15, s


def test_draw_frame_is_deterministic_and_seeded():
    spec = VideoSpec(width=96, height=64)
    a = synth.draw_frame(spec, 1.3)
    assert a.shape == (64, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synth.draw_frame(VideoSpec(width=96, height=64), 1.3))
    assert mae(a, synth.draw_frame(VideoSpec(width=96, height=64, seed=1), 1.3)) > 40
    with pytest.raises(ValueError):
        synth.draw_frame(spec, -0.1)


def test_sample_library(tmp_path):
    paths = synth.write_sample_library(tmp_path, n=4)
    assert [p.name for p in paths] == [s.name for s in synth.SAMPLE_LIBRARY[:4]]
    assert {p.suffix for p in paths} == {".mp4", ".webm"}
    for path, sample in zip(paths, synth.SAMPLE_LIBRARY):
        frames = decode(path)
        assert len(frames) == round(sample.duration_s * 8)
        assert frames[0][1].shape == (240, 320, 3)
        assert path.stat().st_size < 150_000
    two = synth.SAMPLE_LIBRARY[1]
    assert two.caption_at(0.5) == "ocean waves" and two.caption_at(4.0) == "a city at night"
    # The two halves of a two-scene video really look different.
    frames = decode(paths[1])
    assert mae(frames[4][1], frames[-4][1]) > 40
    with pytest.raises(ValueError):
        synth.write_sample_library(tmp_path, n=0)


def test_writing_av1_leaves_the_scheduling_policy_alone(tmp_path):
    """SVT-AV1 run as root switches its caller to SCHED_FIFO; every later child would inherit it."""
    import os

    before = (os.sched_getscheduler(0), os.sched_getparam(0))
    synth.write_video(tmp_path / "a.mp4", VideoSpec(codec="av1", width=64, height=64, duration_s=0.5))
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
