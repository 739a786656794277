"""Driver ceiling: how many videos/s the Ray job's driver can assemble, aggregate and commit.

    vidclip bench driver [--videos 2000] [--clips 10] [--frames 300] [--dim 512] [--temporal mean]
    (or: python3 -m benchmarks.driver ...)

The Ray job's driver is its single committer: every video's frame vectors come back to it as
encoder rows, and it assembles them per video (pipelines/assembly.py), runs the temporal module
(finish_video) and commits in bulk to LanceDB (ingest/committer.py).  This benchmark feeds the
same code synthetic encoder rows, exactly as Ray Data delivers them (numpy batches of video_id,
kind, position, vector bytes, meta), skipping decode and encode, so the number is the driver's
own ceiling.  Each video has `clips` clips of frames/clips frames (default 10 x 30 = 300 frames).

Reported per stage (seconds and share): take (unpacking rows into per-video arrays), finish
(temporal aggregation and Arrow rows), commit (LanceDB writes), and the total videos/s and
frames/s, against the 200 videos/s target.
"""

from __future__ import annotations

import pickle
import tempfile
import time

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

TARGET_VIDEOS_S = 200.0
ROWS_PER_BATCH = 64 * 4  # Ray Data hands the driver a few encoder batches of 64 at a time


def _facts(clips: int, frames: int, clip_seconds: float = 10.0):
    from vidclip.config import SamplingConfig
    from vidclip.ingest.probe import VideoInfo
    from vidclip.ingest.sampling import plan_samples
    from vidclip.ingest.video import VideoFacts

    duration = clips * clip_seconds
    fps = frames / duration
    timeline = np.arange(int(duration * 30)) / 30.0  # (N,) a 30 fps stream
    sampling = SamplingConfig(fps=fps, clip_seconds=clip_seconds, max_frames=frames // clips)
    plan = plan_samples(timeline, duration, sampling)
    info = VideoInfo(duration_s=duration, fps=30.0, width=640, height=360, codec="h264", rotation=0, n_frames=len(timeline))
    return VideoFacts(info, plan, timeline[plan.frame_index]), sampling


def _batches(work_ids: list[str], facts, dim: int, seed: int = 0):
    """Encoder rows for every video, interleaved across a few videos in flight, in Ray Data's format."""
    from pipelines.stages import END, FRAME

    rng = np.random.default_rng(seed)
    k = len(facts.plan.frame_index)
    meta_end = pickle.dumps((facts, {"decoder": "pyav", "note": "", "missing": 0}))
    rows: list[tuple] = []
    in_flight = 4
    for start in range(0, len(work_ids), in_flight):
        group = work_ids[start:start + in_flight]
        vectors = {vid: rng.standard_normal((k, dim), dtype=np.float32) for vid in group}  # (K, D) each
        for pos in range(k):
            for vid in group:
                rows.append((vid, FRAME, pos, vectors[vid][pos].tobytes(), b""))
        for vid in group:
            rows.append((vid, END, -1, b"", meta_end))
        while len(rows) >= ROWS_PER_BATCH:
            yield _as_batch(rows[:ROWS_PER_BATCH])
            del rows[:ROWS_PER_BATCH]
    if rows:
        yield _as_batch(rows)


def _as_batch(rows: list[tuple]) -> dict:
    vid, kind, pos, vec, meta = zip(*rows)
    return {"video_id": np.array(vid), "kind": np.array(kind), "position": np.array(pos),
            "vector": np.array(vec, dtype=object), "meta": np.array(meta, dtype=object)}


def run(videos: int, clips: int, frames: int, dim: int, temporal: str, commit_videos: int = 64) -> dict:
    from temporal import build
    from vidclip.ingest.committer import CommitPolicy, Committer
    from vidclip.ingest.manifest import Entry
    from vidclip.ingest.video import Work
    from vidclip.store.store import Store

    from pipelines.assembly import Assembler

    facts, sampling = _facts(clips, frames)
    aggregator = build(temporal, dim=dim).eval()
    ids = [f"{i:032x}" for i in range(videos)]
    work = {vid: Work(Entry(f"/videos/{vid}.mp4", 1000, 0), vid) for vid in ids}
    batches = list(_batches(ids, facts, dim))  # built before the clock: the driver receives them ready

    timings = {"complete": 0.0, "commit": 0.0, "commit_in_complete": 0.0}
    inside = {"complete": False}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"{tmp}/store", create=True)
        committer = Committer.begin(store, dim, CommitPolicy(max_videos=commit_videos, max_frames=commit_videos * frames),
                                    progress=False, total=videos)
        flush = committer.flush

        def timed_flush(force: bool = False) -> None:
            t = time.perf_counter()
            flush(force)
            spent = time.perf_counter() - t
            timings["commit"] += spent
            if inside["complete"]:
                timings["commit_in_complete"] += spent

        committer.flush = timed_flush
        with Assembler(work, dim, aggregator, temporal, sampling.max_frames, committer) as assembler:
            complete = assembler._complete

            def timed_complete(vid: str) -> None:
                t = time.perf_counter()
                inside["complete"] = True
                try:
                    complete(vid)
                finally:
                    inside["complete"] = False
                timings["complete"] += time.perf_counter() - t

            assembler._complete = timed_complete
            t0 = time.perf_counter()
            for batch in batches:
                assembler.take(batch)
            report = committer.close()
            wall = time.perf_counter() - t0
        n_frames = store.count("frames")
    # "finish": aggregation and Arrow rows; "commit": hand-overs to the commit thread (which writes
    # while the next batch is assembled) and the final flush and compaction; "take": unpacking rows.
    finish = timings["complete"] - timings["commit_in_complete"]
    take = wall - timings["complete"] - (timings["commit"] - timings["commit_in_complete"])
    assert report.ok == videos and n_frames == videos * len(facts.plan.frame_index), (report, n_frames)
    return {
        "videos": videos, "clips_per_video": clips, "frames_per_video": len(facts.plan.frame_index), "dim": dim,
        "temporal": temporal, "commit_videos": commit_videos, "commits": committer.commits, "wall_s": wall, "videos_per_s": videos / wall,
        "frames_per_s": videos * len(facts.plan.frame_index) / wall,
        "stages_s": {"take": take, "finish": finish, "commit": timings["commit"]},
        "target_videos_per_s": TARGET_VIDEOS_S, "meets_target": videos / wall >= TARGET_VIDEOS_S,
    }


def add_arguments(ap) -> None:
    ap.add_argument("--videos", type=positive_int, default=2000)
    ap.add_argument("--clips", type=positive_int, default=10)
    ap.add_argument("--frames", type=positive_int, default=300)
    ap.add_argument("--dim", type=positive_int, default=512)
    ap.add_argument("--temporal", default="mean", choices=["mean", "seq_transformer", "seq_lstm"])
    ap.add_argument("--commit-videos", type=positive_int, default=64, help="videos per bulk commit (ingest's default 64)")
    ap.add_argument("--out", default="benchmarks/driver.json")


def cli(args) -> int:
    result = run(args.videos, args.clips, args.frames, args.dim, args.temporal, args.commit_videos)
    s = result["stages_s"]
    print(f"driver: {result['videos_per_s']:.0f} videos/s, {result['frames_per_s']:.0f} frames/s "
          f"({result['videos']} videos x {result['frames_per_video']} frames, {result['temporal']}, "
          f"{result['commits']} commits of <= {result['commit_videos']} videos); "
          f"take {s['take']:.2f}s, finish {s['finish']:.2f}s, commit {s['commit']:.2f}s; "
          f"target {TARGET_VIDEOS_S:.0f} videos/s: {'met' if result['meets_target'] else 'NOT met'} "
          f"({result['videos_per_s'] / TARGET_VIDEOS_S:.2f}x)")
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
