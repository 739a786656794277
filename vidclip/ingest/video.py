"""One video's way through ingest: the stage functions both loops share (ingest/runner.py in process,
pipelines/ on Ray).

Stages talk through plain data so the Ray pipeline (pipelines/) can run the same
functions in workers:

  triage   entry -> Work (decode it) | Skip (unchanged, or a known duplicate)
  read     Work -> VideoFacts + FrameChunk stream        (CPU: probe, plan, decode)
  encode   frames of many videos -> (N, D) vectors        (GPU/CPU: one forward per batch)
  finish   one video's frame vectors -> frames/clips/video rows (temporal aggregation)
  commit   many finished videos -> LanceDB, in bulk       (single committer, see store.py)
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

from vidclip.config import DecodeConfig, SamplingConfig
from vidclip.ingest.decoder import DECORD, PYAV, SampleReader
from vidclip.errors import MediaError, StoreError
from vidclip.ingest.manifest import Entry, content_id, uri_id
from vidclip.ingest.probe import VideoInfo, probe
from vidclip.ingest.sampling import SamplePlan, plan_samples, select_for_clip
from vidclip.objectstore import ObjectStorage, describe_connection_failure, is_remote
from vidclip.store.schema import FAILED, OK, frame_schema, segment_schema, vectors_array

log = logging.getLogger("vidclip")


# -- results ----------------------------------------------------------------------------------------
@dataclass
class IngestReport:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[dict] = field(default_factory=list)
    frames: int = 0
    clips: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def add_failure(self, uri: str, error: str) -> None:
        self.failed += 1
        self.failures.append({"uri": uri, "error": error})


# -- triage -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Work:
    entry: Entry
    video_id: str
    replaces: str | None = None  # video_id this uri held before its content changed


@dataclass(frozen=True)
class Skip:
    entry: Entry
    video_id: str
    source_row: dict | None  # a new uri for known content, to record; None when nothing changed
    replaces: str | None = None


@dataclass(frozen=True)
class Failure:
    entry: Entry
    video_id: str
    error: str
    replaces: str | None = None


Hasher = Callable[[list[str]], "dict[str, str]"]  # uris -> content id, or "!" + error for unreadable files


def hash_files(uris: list[str], storage: ObjectStorage = ObjectStorage()) -> dict[str, str]:
    """Content ids of files and objects, sequentially; an unreadable one maps to "!<reason>"."""
    from vidclip.ingest import remote

    out = {}
    for uri in uris:
        try:
            out[uri] = remote.content_id(uri, storage) if is_remote(uri) else content_id(uri)
        except OSError as exc:
            if is_remote(uri):
                reason = describe_connection_failure(exc, uri, storage.as_dict()) or " ".join(str(exc).split())[:200]
                out[uri] = f"!cannot read object ({reason.removeprefix(uri + ': ')})"
            else:
                out[uri] = f"!cannot read file ({exc.strerror or exc})"
    return out


def triage(
    entries: Iterable[Entry],
    sources: dict[str, dict],
    status: dict[str, str],
    retry_failed: bool = False,
    hasher: Hasher = hash_files,
    hash_batch: int = 64,
) -> Iterator[Work | Skip | Failure]:
    """Decide what each entry needs.  An unchanged file (same uri, size, mtime) is not even hashed;
    the others are hashed `hash_batch` at a time by `hasher` (sequential here, parallel on Ray)."""
    claimed: set[str] = set()  # video_ids claimed by an earlier entry of this run
    pending: list[tuple[Entry, dict | None]] = []

    def resolve() -> Iterator[Work | Skip | Failure]:
        ids = hasher([entry.uri for entry, _ in pending])
        for entry, known in pending:
            vid = ids[entry.uri]
            if vid.startswith("!"):
                fid = uri_id(entry.uri)
                old = known["video_id"] if known and known["video_id"] != fid else None
                yield Failure(entry, fid, vid[1:], old)
                continue
            old = known["video_id"] if known and known["video_id"] != vid else None
            source = {"uri": entry.uri, "video_id": vid, "size": entry.size, "mtime_ns": entry.mtime_ns}
            state = status.get(vid)
            if state == OK or (state == FAILED and not retry_failed) or vid in claimed:
                yield Skip(entry, vid, dict(source, status=state or "duplicate"), old)
                continue
            claimed.add(vid)
            yield Work(entry, vid, old)
        pending.clear()

    for entry in entries:
        known = sources.get(entry.uri)
        if known and known["size"] == entry.size and known["mtime_ns"] == entry.mtime_ns:
            state = status.get(known["video_id"])
            if state == OK or (state == FAILED and not retry_failed):
                yield Skip(entry, known["video_id"], None)
                continue
        pending.append((entry, known))
        if len(pending) >= hash_batch:
            yield from resolve()
    if pending:
        yield from resolve()


# -- read -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoFacts:
    info: VideoInfo
    plan: SamplePlan
    times: np.ndarray  # (K,) float64 presentation time of every planned frame
    note: str = ""  # probe's remark, kept with the video


def read_video(path: str, sampling: SamplingConfig, decode: DecodeConfig, geometry) -> tuple[VideoFacts, SampleReader]:
    """Probe and plan one video; the returned reader decodes its sampled frames lazily.
    `geometry` sizes frames: decode_size(w, h) for the decoder, model_size(w, h) for the model
    (a FrameGeometry, or the Encoder itself)."""
    pr = probe(path, decode.max_pixels)
    plan = plan_samples(pr.timeline, pr.info.duration_s, sampling, keyframes=pr.keyframes)
    width, height = pr.info.display_size
    if max(width, height) > decode.max_aspect * min(width, height):
        w, h = geometry.model_size(width, height)
        raise MediaError(path, f"aspect ratio {width}x{height} is over {decode.max_aspect:g}:1 (frames resized for the "
                               f"model would be {w}x{h}, {w * h * 3 / 1e6:.0f} MB each)")
    size = geometry.decode_size(width, height)
    if sampling.clips == "shots":
        # every reference frame is seen (decode through, unplanned B-frames dropped) and thumbnailed;
        # PyAV first, whose decoder hands out the frames between the planned ones (decord cannot)
        reader = SampleReader(path, pr, plan, size, chunk_frames=decode.chunk_frames, decoders=(PYAV, DECORD),
                              seek="never", thumbnails=True)
    else:
        reader = SampleReader(path, pr, plan, size, chunk_frames=decode.chunk_frames)
    return VideoFacts(pr.info, plan, pr.timeline[plan.frame_index], pr.note), reader


def decode_job(path: str, sampling: SamplingConfig, decode: DecodeConfig, geometry) -> Iterator[tuple]:
    """The decode stage as a stream of messages (run in a sandbox child, a Ray task, or inline):
    ("facts", VideoFacts), then ("chunk", FrameChunk) per chunk, then ("done", {decoder, note, missing}).
    An object-store input is first copied to a spool file (ingest/remote.py), with ("progress", n)
    messages while it copies."""
    from vidclip.ingest.sandbox import CHUNK, DONE, FACTS, PROGRESS

    if is_remote(path):
        from vidclip.ingest.remote import Spool

        with Spool(path, decode.storage) as spool:
            for copied in spool.fill():
                yield (PROGRESS, copied)
            yield from decode_job(spool.path, sampling, decode, geometry)
        return
    facts, reader = read_video(path, sampling, decode, geometry)
    yield (FACTS, facts)
    for chunk in reader.chunks():
        yield (CHUNK, chunk)
    done = {"decoder": reader.decoder, "note": reader.note, "missing": reader.missing}
    if sampling.clips == "shots":
        from vidclip.ingest.shots import shot_windows

        done["shots"] = shot_windows(reader.shot_cuts(), float(facts.info.duration_s), sampling.clip_seconds).tolist()
    yield (DONE, done)


# -- finish -----------------------------------------------------------------------------------------
@dataclass
class VideoRows:
    video: dict
    frames: pa.Table
    clips: pa.Table
    video_vector: pa.Table

    @property
    def n_clips(self) -> int:
        return self.clips.num_rows


def finish_video(
    work: Work,
    facts: VideoFacts,
    vectors: np.ndarray,
    have: np.ndarray,
    aggregator,
    temporal_name: str,
    max_frames: int,
    decoder: str,
    decoder_note: str,
    shots: list | None = None,
) -> VideoRows:
    """Aggregate one video's raw image features (K, D) (rows where `have` is False were not
    decoded) into its frame, clip and whole-video rows.  Frames are stored L2-normalised, with
    their norm; the temporal module is fed what it asks for (`module_frames`)."""
    from vidclip.model.encoder import split_norms

    plan = facts.plan if shots is None else shot_plan(facts, np.asarray(shots, np.float64).reshape(-1, 2))
    dim = vectors.shape[1]
    unit, norms = split_norms(vectors)  # (K, D), (K,)
    fed = module_frames(aggregator, unit, norms, work.entry.uri)  # (K, D)
    kept = np.flatnonzero(have)  # (K',) plan positions that were decoded
    frame_times = facts.times[kept]  # (K',)
    clip_rows: list[tuple[int, float, float, np.ndarray]] = []  # (clip_id, start, end, positions)
    for clip_id, (start, end) in enumerate(plan.clip_bounds):
        pos = kept[plan.clip_of[kept] == clip_id]  # (n,)
        if len(pos):
            clip_rows.append((clip_id, float(start), float(end), pos[select_for_clip(len(pos), max_frames)]))
    if not clip_rows:
        raise MediaError(work.entry.uri, "no sampled frame could be decoded")
    limit = getattr(aggregator, "max_positions", None) or getattr(getattr(aggregator, "hparams", None), "max_positions", None)
    video_cap = None if limit is None else max_frames  # a module with a frame limit sees max_frames
    video_pos = kept if video_cap is None else kept[select_for_clip(len(kept), video_cap)]
    clip_vecs = aggregate(aggregator, fed, [r[3] for r in clip_rows])  # (C, D)
    video_vec = aggregate(aggregator, fed, [video_pos])  # (1, D): padded apart from the short clips
    n = len(clip_rows)
    clips = pa.Table.from_arrays(
        [
            pa.array([work.video_id] * n),
            pa.array([r[0] for r in clip_rows], pa.int32()),
            pa.array([r[1] for r in clip_rows], pa.float64()),
            pa.array([r[2] for r in clip_rows], pa.float64()),
            pa.array([len(r[3]) for r in clip_rows], pa.int32()),
            pa.array([temporal_name] * n),
            vectors_array(clip_vecs),
        ],
        schema=segment_schema(dim),
    )
    video_vector = pa.Table.from_arrays(
        [
            pa.array([work.video_id]),
            pa.array([-1], pa.int32()),
            pa.array([0.0]),
            pa.array([float(facts.info.duration_s)]),
            pa.array([len(video_pos)], pa.int32()),
            pa.array([temporal_name]),
            vectors_array(video_vec),
        ],
        schema=segment_schema(dim),
    )
    frames = pa.Table.from_arrays(
        [pa.array([work.video_id] * len(kept)), pa.array(frame_times, pa.float64()), vectors_array(unit[kept]),
         pa.array(norms[kept], pa.float32())],
        schema=frame_schema(dim),
    )
    missing = len(have) - len(kept)
    note = "; ".join(n for n in (facts.note, decoder_note) if n)
    if missing:
        note = (note + "; " if note else "") + f"{missing} of {len(have)} sampled frames could not be decoded"
    info = facts.info
    width, height = info.display_size
    video = {
        "video_id": work.video_id,
        "uri": work.entry.uri,
        "size": work.entry.size,
        "duration_s": float(info.duration_s),
        "fps": float(info.fps),
        "width": int(width),
        "height": int(height),
        "codec": info.codec,
        "rotation": int(info.rotation),
        "decoder": decoder,
        "decoder_note": note,
        "status": OK,
        "error": None,
        "n_frames": int(len(kept)),
        "n_clips": n,
        "ingested_at": datetime.now(timezone.utc),
        "metadata": work.entry.metadata,
    }
    return VideoRows(video=video, frames=frames, clips=clips, video_vector=video_vector)


def shot_plan(facts: VideoFacts, bounds: np.ndarray) -> SamplePlan:
    """The planned frames regrouped into shot clips `bounds` (C, 2) (the decode stage's
    shot_windows), each frame in the window holding its time; windows with no frame are dropped."""
    from vidclip.ingest.sampling import _without_empty_clips

    clip_of = np.clip(np.searchsorted(bounds[:, 0], facts.times, side="right") - 1, 0, len(bounds) - 1)  # (K,)
    return _without_empty_clips(facts.plan.frame_index, clip_of, bounds)


def module_frames(aggregator, unit: np.ndarray, norms: np.ndarray | None, where: str = "") -> np.ndarray:
    """What `aggregator` is fed: the unit frame vectors (N, D), or for a module that asks for raw
    features (imported from CLIP4Clip) unit * norm, which needs the stored norms."""
    from temporal import wants_raw_frames

    if not wants_raw_frames(aggregator):
        return unit
    if norms is None or np.isnan(norms).any():
        raise StoreError(f"{where}: this temporal module is fed unnormalised frame features, but these frames were "
                         "stored without their norms (before vidclip kept them): ingest the videos into a new store")
    return unit * norms[:, None]  # (N, D)


def aggregate(aggregator, vectors: np.ndarray, groups: list[np.ndarray], chunk: int = 256) -> np.ndarray:
    """Run the temporal module over padded groups of frame vectors -> (G, D) normalised,
    `chunk` groups per call so the padded tensor stays small however many clips a video has.

    A parameter-free module (mean) runs on one thread: its tensors are small, and torch's intra-op
    threads made each call 100x slower on a busy machine (0.23 ms -> 24 ms for 10 clips of 30 frames
    with both cores loaded: every parallel region waits for a descheduled sibling).  A module with
    weights (a transformer) does real work and keeps torch's threads."""
    import torch

    from vidclip.model.encoder import torch_threads

    dim = vectors.shape[1]
    out = []
    light = not any(True for _ in aggregator.parameters()) if hasattr(aggregator, "parameters") else True
    with torch_threads(1) if light else contextlib.nullcontext():
        for lo in range(0, len(groups), chunk):
            part = groups[lo : lo + chunk]
            t_max = max(len(g) for g in part)
            frames = torch.zeros(len(part), t_max, dim)  # (G, T, D); padding is masked out, never used
            mask = torch.zeros(len(part), t_max, dtype=torch.bool)  # (G, T) True = valid
            for i, g in enumerate(part):
                frames[i, : len(g)] = torch.from_numpy(vectors[g])
                mask[i, : len(g)] = True
            with torch.inference_mode():
                out.append(aggregator(frames, mask).float().cpu().numpy())  # (G, D)
    return np.concatenate(out)


def failed_row(video_id: str, entry: Entry, error: str) -> dict:
    return {
        "video_id": video_id,
        "uri": entry.uri,
        "size": entry.size,
        "status": FAILED,
        "error": error,
        "n_frames": 0,
        "n_clips": 0,
        "ingested_at": datetime.now(timezone.utc),
        "metadata": entry.metadata,
    }


def source_row(entry: Entry, video_id: str, status: str) -> dict:
    return {"uri": entry.uri, "video_id": video_id, "size": entry.size, "mtime_ns": entry.mtime_ns, "status": status}
