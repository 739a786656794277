"""Seek-based sparse decoding and keyframes-only sampling give the same frames and times as
decoding every frame (the benchmarks in benchmarks/decode.py measure their speed)."""

import numpy as np
import pytest

from vidclip.config import SamplingConfig
from vidclip.ingest.decoder import DECORD, PYAV, SampleReader, preferred_decoders
from vidclip.errors import DecodeError, InputError
from vidclip.ingest.probe import probe
from vidclip.ingest.sampling import plan_samples
from vidclip.samples.synth import VideoSpec, write_video

BUDGET = 7680 * 4320
SIZE = (160, 120)


@pytest.fixture(scope="module", params=[("h264", ".mp4"), ("vp9", ".webm")])
def gop_video(request, tmp_path_factory):
    codec, suffix = request.param
    spec = VideoSpec(codec=codec, width=320, height=240, fps=10.0, duration_s=12.0, gop=20, scene_seconds=2.0)
    return str(write_video(tmp_path_factory.mktemp("gop") / f"g{suffix}", spec))


def _collect(reader):
    chunks = list(reader.chunks())
    pos = np.concatenate([c.position for c in chunks])
    times = np.concatenate([c.times for c in chunks])
    frames = np.concatenate([c.frames for c in chunks])
    return pos, times, frames


def _assert_same(a, b, tol=2.0):
    pos_a, times_a, frames_a = a
    pos_b, times_b, frames_b = b
    np.testing.assert_array_equal(pos_a, pos_b)
    np.testing.assert_array_equal(times_a, times_b)
    diff = np.abs(frames_a.astype(np.int16) - frames_b.astype(np.int16))
    assert diff.mean() < tol, diff.mean()


@pytest.mark.parametrize("cfg", [
    SamplingConfig(mode="uniform", clip_seconds=100.0, max_frames=5),
    SamplingConfig(fps=0.5, clip_seconds=4.0),
    SamplingConfig(fps=3.0, clip_seconds=4.0),
])
def test_seek_equals_decode_through(gop_video, cfg):
    pr = probe(gop_video, BUDGET)
    assert pr.keyframes is not None and pr.keyframes.sum() >= 5
    plan = plan_samples(pr.timeline, pr.info.duration_s, cfg)
    through = SampleReader(gop_video, pr, plan, SIZE, chunk_frames=4, decoders=(PYAV,), seek="never")
    seeking = SampleReader(gop_video, pr, plan, SIZE, chunk_frames=4, decoders=(PYAV,), seek="auto")
    a, b = _collect(through), _collect(seeking)
    assert through.seeks == 0
    _assert_same(a, b, tol=0.01)  # the same decoded pictures
    assert seeking.missing == 0
    if cfg.mode == "uniform":
        assert seeking.seeks > 0  # far-apart frames were reached by seeking
    # decord's sparse reads give the same frames too (its own scaler: pixels close, not equal)
    _assert_same(a, _collect(SampleReader(gop_video, pr, plan, SIZE, decoders=(DECORD,))), tol=4.0)


def test_keyframes_mode(gop_video):
    pr = probe(gop_video, BUDGET)
    cfg = SamplingConfig(mode="keyframes", fps=1.0, clip_seconds=4.0)
    plan = plan_samples(pr.timeline, pr.info.duration_s, cfg, keyframes=pr.keyframes)
    assert plan.keyframes_only
    assert pr.keyframes[plan.frame_index].all()
    kf_times = pr.timeline[pr.keyframes]
    np.testing.assert_allclose(pr.timeline[plan.frame_index], kf_times)  # gop 2 s > 1/fps: every keyframe
    # clip assignment by the keyframe's own time
    expected_clip = np.searchsorted(plan.clip_bounds[:, 0], pr.timeline[plan.frame_index], side="right") - 1
    np.testing.assert_array_equal(plan.clip_of, expected_clip)
    full = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0, clip_seconds=4.0))
    ref_plan = type(plan)(plan.frame_index, plan.clip_of, plan.clip_bounds, keyframes_only=False)
    for seek in ("never", "auto"):
        r = SampleReader(gop_video, pr, plan, SIZE, decoders=(PYAV,), seek=seek)
        ref = SampleReader(gop_video, pr, ref_plan, SIZE, decoders=(PYAV,), seek="never")
        _assert_same(_collect(ref), _collect(r), tol=0.01)
        assert r.missing == 0
    assert len(plan.frame_index) < len(full.frame_index)
    # H.264 goes to PyAV first (its codec skips non-key frames fast), VP9 to decord (keyframe seeks);
    # decord's keyframes read gives the same pictures (its own scaler: pixels close, not equal)
    assert preferred_decoders(plan, pr)[0] == (PYAV if pr.info.codec == "h264" else DECORD)
    _assert_same(_collect(ref), _collect(SampleReader(gop_video, pr, plan, SIZE, decoders=(DECORD,))), tol=4.0)
    # re-planning over the stored keyframe times (reindex) replays the same selection and clips
    t = pr.timeline[plan.frame_index]
    again = plan_samples(t, pr.info.duration_s, cfg)
    np.testing.assert_array_equal(again.frame_index, np.arange(len(t)))
    np.testing.assert_array_equal(again.clip_of, plan.clip_of)


def test_keyframes_mode_without_flagged_keyframes_samples_the_fps_grid():
    """A probe that flagged no keyframe at all knows nothing about them: the plan falls back to
    the frames nearest the 1/fps grid (not a single frame marked keyframe-only)."""
    timeline = np.arange(100) / 10.0  # 10 s at 10 fps
    cfg = SamplingConfig(mode="keyframes", fps=1.0, clip_seconds=5.0)
    plan = plan_samples(timeline, 10.0, cfg, keyframes=np.zeros(100, bool))
    assert not plan.keyframes_only and len(plan.frame_index) == 10
    with pytest.raises(InputError):
        SamplingConfig(mode="every-other")


def test_a_long_video_goes_to_the_streaming_decoder_first(tmp_path, monkeypatch):
    """decord's per-frame index grows the decode child's memory with a video's length; past
    LONG_VIDEO_FRAMES PyAV (streaming) decodes first, and gives the same frames."""
    from vidclip.ingest import decoder

    path = str(tmp_path / "long.mp4")
    write_video(path, VideoSpec(codec="h264", width=160, height=120, fps=25, duration_s=8.0, seed=5))
    pr = probe(path, 1 << 40)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=10.0))  # not sparse: 80 of 200
    assert preferred_decoders(plan, pr) == (DECORD, PYAV)  # 200 frames: decord first
    monkeypatch.setattr(decoder, "LONG_VIDEO_FRAMES", pr.info.n_frames - 1)  # this file now counts as long
    assert preferred_decoders(plan, pr) == (PYAV, DECORD)
    reader = SampleReader(path, pr, plan, (160, 120))
    frames = _collect(reader)
    assert reader.decoder == PYAV and reader.missing == 0
    _assert_same(_collect(SampleReader(path, pr, plan, (160, 120), decoders=(DECORD,))), frames, tol=4.0)


def test_a_chunk_holds_at_most_chunk_bytes_of_frames(tmp_path):
    """Frames decoded at twice the model's size are 4x the bytes: a chunk is capped in bytes
    (decoder.CHUNK_BYTES), so the child and the pipe hold no more than before."""
    from vidclip.ingest import decoder

    path = write_video(tmp_path / "a.mp4", VideoSpec(codec="h264", width=640, height=360, duration_s=4.0, fps=10))
    pr = probe(str(path), 8192 * 8192)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=10.0))
    small = SampleReader(str(path), pr, plan, (64, 36))
    assert small.chunk_frames == 32  # the frame cap binds
    big_size = (640, 360)
    big = SampleReader(str(path), pr, plan, big_size, decoders=(PYAV,))
    assert big.chunk_frames == decoder.CHUNK_BYTES // (3 * 640 * 360) < 32
    chunks = list(big.chunks())
    assert sum(len(c.position) for c in chunks) == len(plan.frame_index)
    assert max(c.frames.nbytes for c in chunks) <= decoder.CHUNK_BYTES


@pytest.fixture(scope="module", params=["h264", "hevc", "vp9", "av1", "mpeg4", "mjpeg"])
def any_codec_video(request, tmp_path_factory):
    from vidclip.samples.synth import suffix_for

    spec = VideoSpec(codec=request.param, width=320, height=240, fps=10.0, duration_s=6.0, gop=30, scene_seconds=2.0)
    return request.param, str(write_video(tmp_path_factory.mktemp("skip") / f"v{suffix_for(request.param)}", spec))


@pytest.mark.parametrize("seek", ["never", "auto"])
def test_dropping_unplanned_frames_leaves_planned_frames_bit_identical(any_codec_video, seek):
    """The codec drops unplanned non-reference frames (per packet); the planned frames come out
    bit-identical, with the same times, and for codecs with B-frames fewer frames are decoded."""
    codec, path = any_codec_video
    pr = probe(path, BUDGET)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0, clip_seconds=3.0))
    plain = SampleReader(path, pr, plan, SIZE, chunk_frames=4, decoders=(PYAV,), seek=seek, skip=False)
    skipping = SampleReader(path, pr, plan, SIZE, chunk_frames=4, decoders=(PYAV,), seek=seek)  # by codec
    a, b = _collect(plain), _collect(skipping)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert len(a[0]) == len(plan.frame_index) and skipping.missing == 0
    assert 0 < skipping.decoded <= plain.decoded
    assert skipping.skip == (codec in ("h264", "hevc"))
    if skipping.skip:  # written with B-frames that nothing references
        assert skipping.decoded < 0.8 * plain.decoded, (skipping.decoded, plain.decoded)


def test_av1_is_not_asked_to_drop_frames(tmp_path):
    """dav1d given skip_frame NONREF drops the planned frames as well: the reason AV1 is not in
    DROPS_NONREF.  If a future dav1d stops doing that, this test says the list can grow."""
    spec = VideoSpec(codec="av1", width=320, height=240, fps=10.0, duration_s=6.0, gop=30, scene_seconds=2.0)
    path = str(write_video(tmp_path / "v.mp4", spec))
    pr = probe(path, BUDGET)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0, clip_seconds=3.0))
    forced = SampleReader(path, pr, plan, SIZE, decoders=(PYAV,), seek="never", skip=True)
    with pytest.raises(DecodeError):
        _collect(forced)


def test_a_sparse_plan_over_b_frames_goes_to_the_decoder_that_drops_them(any_codec_video):
    """PyAV first where it can drop the unplanned B-frames (H.264/HEVC that reorder, a plan keeping
    at most 1 frame in decoder.SPARSE); decord first otherwise (benchmarks/decode_structure.json)."""
    from vidclip.ingest.decoder import SPARSE

    codec, path = any_codec_video
    pr = probe(path, BUDGET)
    assert pr.reordered == (codec in ("h264", "hevc"))  # as synth writes them: B-frames only there
    sparse = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0, clip_seconds=3.0))
    dense = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=10.0, clip_seconds=3.0))
    assert SPARSE * len(sparse.frame_index) <= pr.info.n_frames < SPARSE * len(dense.frame_index)
    expected = (PYAV, DECORD) if codec in ("h264", "hevc") else (DECORD, PYAV)
    assert preferred_decoders(sparse, pr) == expected
    assert preferred_decoders(dense, pr) == (DECORD, PYAV)


def test_a_sparse_h264_plan_goes_to_pyav_even_without_b_frames(tmp_path):
    """H.264 decodes with slice threading (container.SLICE_THREADED), which made PyAV cheaper and
    faster than decord on sparse plans with or without B-frames; a dense plan stays with decord."""
    spec = VideoSpec(codec="h264", width=320, height=240, fps=10.0, duration_s=6.0, gop=1)  # every frame a keyframe
    path = str(write_video(tmp_path / "intra.mp4", spec))
    pr = probe(path, BUDGET)
    assert not pr.reordered
    sparse = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=1.0, clip_seconds=3.0))
    dense = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=10.0, clip_seconds=3.0))
    assert preferred_decoders(sparse, pr) == (PYAV, DECORD)
    assert preferred_decoders(dense, pr) == (DECORD, PYAV)
