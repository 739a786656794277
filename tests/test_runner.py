"""vidclip.ingest.runner: decode overlaps encode without changing results.  The model encodes what is
ready when the decoder falls behind (partial batches), runs full batches when it keeps up, and the
prefetch queue never holds more than its byte budget."""

from __future__ import annotations

import numpy as np
import pytest

import vidclip
from conftest import SAMPLING, TINY
from vidclip.ingest import runner
from vidclip.config import DecodeConfig
from vidclip.samples.synth import VideoSpec, write_video

DEFAULT_PREFETCH = runner.PREFETCH_BATCHES


@pytest.fixture(scope="module")
def slow_videos(tmp_path_factory):
    """Four 2 s videos (4 sampled frames each) whose decode job first sleeps (tests/faults.py)."""
    root = tmp_path_factory.mktemp("slow")
    for i in range(4):
        write_video(root / f"v{i}_slow.mp4", VideoSpec(codec="h264", width=160, height=120, duration_s=2.0, seed=20 + i))
    return root


def _ingest(tmp_path, name, videos, monkeypatch, prefetch_batches):
    monkeypatch.setattr(runner, "PREFETCH_BATCHES", prefetch_batches)
    monkeypatch.setenv("VIDCLIP_TEST_SLOW_S", "1.0")  # far longer than encoding 8 tiny-model frames
    lib = vidclip.open(tmp_path / name, model=TINY)
    lib.encoder.batch_size = 64
    calls = []
    encode = lib.encoder.encode_frames
    monkeypatch.setattr(lib.encoder, "encode_frames", lambda frames, **kw: calls.append(len(frames)) or encode(frames, **kw))
    report = lib.ingest([videos], SAMPLING, decode=DecodeConfig(job="faults:decode_job"), progress=False)
    assert (report.ok, report.failed, report.frames) == (4, 0, 16)
    frames = lib.store.table("frames").to_arrow().sort_by([("video_id", "ascending"), ("t", "ascending")])
    return calls, frames


def test_slow_decoder_gets_partial_batches_with_identical_vectors(tmp_path, slow_videos, monkeypatch):
    inline_calls, ref = _ingest(tmp_path, "inline", slow_videos, monkeypatch, 0)
    assert inline_calls == [16]  # no background thread: one full batch at the end
    calls, got = _ingest(tmp_path, "overlap", slow_videos, monkeypatch, DEFAULT_PREFETCH)
    assert sum(calls) == 16 and len(calls) >= 2  # the model did not wait for all 16 frames
    assert all(n >= runner.EAGER_MIN_FRAMES or i == len(calls) - 1 for i, n in enumerate(calls))
    assert got.column("video_id").to_pylist() == ref.column("video_id").to_pylist()
    a = np.stack(got.column("vector").to_numpy(zero_copy_only=False))
    b = np.stack(ref.column("vector").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("width,height,most_frames", [(640, 360, 10), (4096, 256, 1)])
def test_prefetch_queue_respects_its_byte_budget(tmp_path, width, height, most_frames):
    """Decoding runs ahead of a stalled consumer by at most max_bytes of decoded frames, counted by
    each frame's own bytes: a 16:9 video fills a budget of 10 nominal frames with 10 frames, a 16:1
    stripe (frames 9x larger at the model's decode size) with one.  Counted in frames, the stripe
    would have held 10 frames, 7.9 MB instead of 0.79."""
    from vidclip.model.encoder import Encoder
    from vidclip.model.geometry import FrameGeometry
    from vidclip.ingest.video import triage
    from vidclip.ingest.manifest import list_inputs
    from vidclip.ingest.sandbox import make_decoder
    from vidclip.store.store import Store

    video = write_video(tmp_path / "v.mp4", VideoSpec(codec="h264", width=width, height=height, duration_s=10.0, fps=4))
    store = Store.open(str(tmp_path / "db"), create=True)
    geometry = FrameGeometry.of_model(Encoder.load(TINY).model)
    budget = 10 * geometry.frame_bytes()
    items = triage(list_inputs([str(video)]), store.sources(), store.video_status(), False)
    decode = DecodeConfig(chunk_frames=1)
    with make_decoder(decode.job, decode.timeout_s, decode.isolate) as decoder:
        with runner._Prefetch(items, [decoder], SAMPLING, decode, geometry, max_bytes=budget) as prefetch:
            seen, frame_bytes = _drain_stalling_once(prefetch, lambda fb: prefetch._bytes + fb > budget)
    assert seen == 20  # every sampled frame came through (fps=2, 10 s)
    assert prefetch.peak_bytes <= budget  # never past the budget ...
    assert prefetch.peak_bytes // frame_bytes == most_frames  # ... and it did run ahead to fill it


def _drain_stalling_once(prefetch, full) -> tuple[int, int]:
    """Consume the prefetch queue like a model that stalls on the first chunk of frames: it holds
    that chunk until `full(frame_bytes)` says the queue can take no more (the deadline only guards
    against a hang), then waits 0.5 s more, room to overshoot a limit that were not enforced.  The
    stall is keyed to the first chunk itself, not to a queue reading taken earlier: under load the
    decoder may queue frames before this thread has looked.  -> (frames seen, bytes of one frame)."""
    import time

    seen, frame_bytes = 0, 0
    for tag, _, payload in prefetch:
        if tag != "msg" or payload[0] != runner.CHUNK:
            continue
        if seen == 0:
            frame_bytes = payload[1].frames[0].nbytes
            deadline = time.monotonic() + 120
            while not full(frame_bytes) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        seen += len(payload[1].position)
    return seen, frame_bytes


def test_prefetch_queue_holds_small_frames_by_their_number(tmp_path):
    """160x120 frames are 58 KB: the byte budget of 10 nominal frames would hold 15 of them, the
    frame cap holds 6 (small frames buy nothing by queueing further ahead of the model)."""
    from vidclip.model.encoder import Encoder
    from vidclip.model.geometry import FrameGeometry
    from vidclip.ingest.video import triage
    from vidclip.ingest.manifest import list_inputs
    from vidclip.ingest.sandbox import make_decoder
    from vidclip.store.store import Store

    video = write_video(tmp_path / "v.mp4", VideoSpec(codec="h264", width=160, height=120, duration_s=10.0, fps=4))
    store = Store.open(str(tmp_path / "db"), create=True)
    geometry = FrameGeometry.of_model(Encoder.load(TINY).model)
    items = triage(list_inputs([str(video)]), store.sources(), store.video_status(), False)
    decode = DecodeConfig(chunk_frames=1)
    with make_decoder(decode.job, decode.timeout_s, decode.isolate) as decoder:
        with runner._Prefetch(items, [decoder], SAMPLING, decode, geometry, max_bytes=10 * geometry.frame_bytes(),
                              max_frames=6) as prefetch:
            seen, frame_bytes = _drain_stalling_once(prefetch, lambda fb: prefetch._frames >= 6)
    assert seen == 20
    assert prefetch.peak_bytes // frame_bytes == 6  # the cap, reached and never passed (bytes would allow 15)


def _rows(lib):
    frames = lib.store.table("frames").to_arrow().sort_by([("video_id", "ascending"), ("t", "ascending")])
    clips = lib.store.table("clips").to_arrow().sort_by([("video_id", "ascending"), ("clip_id", "ascending")])
    keys = (frames.select(["video_id", "t"]).to_pylist(), clips.select(["video_id", "clip_id", "start_s", "end_s"]).to_pylist())
    return keys, np.stack(frames.column("vector").to_numpy(zero_copy_only=False))


def test_decode_workers_decode_videos_at_once_and_give_the_same_rows(tmp_path, monkeypatch):
    """--local --decode-workers 3: three sandbox children decode three videos at the same time (a
    rendezvous in the decode job proves it), and the store holds exactly the rows, vectors and
    failures of a one-worker run."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}_meet.mp4", VideoSpec(codec="h264", width=160, height=120, duration_s=3.0, seed=40 + i))
    for i in range(2):
        write_video(videos / f"w{i}.mp4", VideoSpec(codec="vp9", width=128, height=96, duration_s=2.0, seed=50 + i))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)

    ref = vidclip.open(tmp_path / "one", model=TINY)
    one = ref.ingest([videos], SAMPLING, progress=False)

    meet = tmp_path / "meet"
    meet.mkdir()
    monkeypatch.setenv("VIDCLIP_TEST_MEET_DIR", str(meet))
    monkeypatch.setenv("VIDCLIP_TEST_MEET_N", "3")
    lib = vidclip.open(tmp_path / "three", model=TINY)
    three = lib.ingest([videos], SAMPLING, decode=DecodeConfig(job="faults:decode_job"), progress=False, decode_workers=3)

    assert sorted(f for f in __import__("os").listdir(meet) if f.startswith("met-")) == [f"met-v{i}_meet.mp4" for i in range(3)]
    assert (three.ok, three.failed, three.frames) == (one.ok, one.failed, one.frames) == (5, 1, one.frames)
    assert three.failures == one.failures and "broken.mp4" in three.failures[0]["uri"]
    (keys1, vec1), (keys3, vec3) = _rows(ref), _rows(lib)
    assert keys3 == keys1 and len(keys1[0]) == one.frames
    np.testing.assert_allclose(vec3, vec1, atol=1e-5)


def test_decode_workers_are_refused_without_the_sandbox(tmp_path, video_dir):
    from vidclip.errors import InputError

    lib = vidclip.open(tmp_path / "db", model=TINY)
    with pytest.raises(InputError, match="decode sandbox"):
        lib.ingest([video_dir], SAMPLING, decode=DecodeConfig(isolate=False), progress=False, decode_workers=2)
