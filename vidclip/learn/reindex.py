"""Re-aggregation: recompute every clip and whole-video vector from the stored frame vectors.

    report = reindex(store, "ckpt/")          # or "mean"

Nothing is decoded.  The new vectors go into NEW tables (`clips_<n>`, `video_vectors_<n>`), written
in bulk while streaming over the videos in groups of ~batch_frames frames; search keeps answering
from the old tables meanwhile.  Then ONE `store.set_meta({"segments", "temporal"})` (one
merge_insert, one atomic commit of the meta table) switches readers and later ingests to the new
tables and module, and the old tables are dropped.

Clip boundaries come from the existing clip rows (video_id, clip_id, start_s, end_s).  Which
stored frames feed each clip is ingest's own answer, recovered by planning the video again over
its stored frame times (`replay_members`); where that cannot be recovered (frames that failed to
decode), a frame belongs to the clip whose [start_s, end_s) holds its time, the last clip keeping
its end (`clip_members`).  Each clip then feeds its frames, uniformly subsampled to the store's
max_frames (ingest's `select_for_clip`), to the module.  The whole-video vector uses every frame,
or max_frames uniformly chosen for a module with a position limit.  So `reindex(store, "mean")` on
a store built with mean gives back the same vectors.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from vidclip.config import SamplingConfig
from vidclip.errors import StoreError
from vidclip.learn.evaluation import (
    DEFAULT_BATCH_FRAMES,
    check_frame_input,
    chunk_by_frames,
    frame_counts,
    load_temporal,
    read_frames,
    store_dim,
)
from vidclip.ingest.sampling import plan_samples, select_for_clip
from vidclip.store.store import Store
from vidclip.store.schema import OK, PENDING, segment_schema, sql_in, vectors_array

log = logging.getLogger("vidclip")

PADDED_PER_FORWARD = 1 << 16  # padded frame vectors (G x T) per temporal-module call


@dataclass
class ReindexReport:
    videos: int = 0
    clips: int = 0
    frames: int = 0
    temporal: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)  # the new active segment tables
    dropped: list[str] = field(default_factory=list)  # the old ones
    by_time: int = 0  # videos whose clips took their frames by time (ingest's plan not recoverable)
    clip_mode: str = "fixed"  # the clip mode the store has after the reindex
    boundary_mismatches: int = 0  # of those, clips whose frame count differs from what ingest recorded
    skipped: list[str] = field(default_factory=list)  # ok videos without frames or clips (left out)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def video_frame_cap(module, max_frames: int) -> int | None:
    """How many frames the whole-video vector takes: all (None) unless the module has a position limit."""
    limit = getattr(module, "max_positions", None)
    if limit is None:
        limit = getattr(getattr(module, "hparams", None), "max_positions", None)
    return None if limit is None else max_frames


def clip_members(t: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Positions of the frames (ascending `t`) in each clip by time; bounds (C, 2) [start_s, end_s) sorted.

    Every frame goes to the clip with the last start_s <= t (before the first clip: the first; the
    last clip keeps its end).  A clip left without a frame gets the frame on screen at its start.
    """
    owner = np.clip(np.searchsorted(bounds[:, 0], t, side="right") - 1, 0, len(bounds) - 1)  # (N,)
    members = []
    for c, (start, _) in enumerate(bounds):
        pos = np.flatnonzero(owner == c)
        if not len(pos):
            pos = np.array([max(0, int(np.searchsorted(t, start, side="right")) - 1)])
        members.append(pos)
    return members


def replay_members(t: np.ndarray, duration_s: float, sampling: SamplingConfig, clip_ids: list[int], bounds: np.ndarray):
    """Ingest's own clip assignment, or None when it cannot be recovered.

    Planning again over the stored (sampled) times selects exactly those frames, and gives each the
    clip whose target asked for it first: with a low or variable frame rate, a frame sampled for a
    clip can carry a time before the clip's start, which `clip_members` would put in the clip before.
    """
    plan = plan_samples(t, duration_s, sampling)
    if len(plan.frame_index) != len(t) or (plan.frame_index != np.arange(len(t))).any():
        return None  # some sampled frames were not decoded: the stored times are not the plan's
    if not clip_ids or max(clip_ids) >= plan.n_clips or not np.allclose(plan.clip_bounds[clip_ids], bounds):
        return None
    members = [np.flatnonzero(plan.clip_of == c) for c in clip_ids]
    return members if all(len(m) for m in members) else None


MAX_SHOT_GAP_S = 1.0  # stored frames further apart than this cannot place a shot boundary within 0.5 s


def reindex(
    store: Store,
    temporal_spec: str,
    *,
    clips: str | None = None,
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    progress: bool = True,
) -> ReindexReport:
    """Recompute all segment vectors with `temporal_spec` ("mean" or a checkpoint dir) and switch to them.

    clips: switch the clip mode ("fixed" or "shots"; None keeps the store's).  Fixed windows are
    planned again over the stored frame times; shots are cut where consecutive stored frame
    vectors turn apart (vidclip.ingest.shots.cuts_from_vectors: to within one sampling interval,
    coarser than ingest's --clips shots, which sees every decoded frame)."""
    with store.writing("reindex"):
        return _reindex(store, temporal_spec, batch_frames, progress, clips)


def _reindex(store: Store, temporal_spec: str, batch_frames: int, progress: bool, clips: str | None = None) -> ReindexReport:
    from dataclasses import replace

    from vidclip.ingest.video import aggregate

    started = time.perf_counter()
    dim = store_dim(store)
    module, spec = load_temporal(store, temporal_spec)
    sampling = SamplingConfig(**(store.meta.get("sampling") or {}))
    switch = clips is not None and clips != sampling.clips
    if switch:
        sampling = replace(sampling, clips=clips)  # validated by SamplingConfig
        if clips == "shots":
            _refuse_sparse_frames(store, sampling)
    max_frames = sampling.max_frames
    video_cap = video_frame_cap(module, max_frames)
    old = store.segments
    if not store.has_table(old["clip"]):
        raise StoreError(f"{store.uri}: has no clip vectors to re-aggregate; ingest videos first")
    _refuse_pending(store)
    check_frame_input(store, module)  # before any table is made

    gen = max(_generation(old["clip"]), _generation(old["video"])) + 1
    new = {"clip": f"clips_{gen}", "video": f"video_vectors_{gen}"}
    report = ReindexReport(temporal=spec, tables=new, clip_mode=sampling.clips)
    schema = segment_schema(dim)
    for name in new.values():
        store.create_table(name, schema)  # replaces a leftover of an interrupted reindex
    log.info("re-aggregating with %s into %s, %s", spec.get("checkpoint") or spec["name"], new["clip"], new["video"])

    done: set[str] = set()
    bar = _progress_bar(progress)
    try:
        # Loop until no new ok video shows up: one started by an ingest that ran meanwhile is picked up.
        while True:
            _refuse_pending(store)
            todo = sorted(v for v, s in store.video_status().items() if s == OK and v not in done)
            if not todo:
                break
            bar.total = (bar.total or 0) + len(todo)
            bar.refresh()
            counts = frame_counts(store, todo)
            for chunk in chunk_by_frames(todo, counts, batch_frames):
                clip_table, videos = _aggregate_chunk(store, chunk, old, module, aggregate, spec["name"], sampling,
                                                      video_cap, report, switch)
                if clip_table.num_rows:
                    store.table(new["clip"]).add(clip_table)
                if videos.num_rows:
                    store.table(new["video"]).add(videos)
                done.update(chunk)
                bar.update(len(chunk))
        # Videos deleted meanwhile (their file changed) must not come back through the new tables.
        gone = sorted(done - {v for v, s in store.video_status().items() if s == OK})
        for lo in range(0, len(gone), 1000):
            where = sql_in("video_id", gone[lo : lo + 1000])
            for name in new.values():
                store.table(name).delete(where)
        _refuse_pending(store)
    except BaseException:
        bar.close()
        for name in new.values():
            store.drop_table(name)
        raise
    bar.close()

    switched = {"segments": new, "temporal": spec}
    if switch:
        switched["sampling"] = sampling.to_dict()
    store.set_meta(switched)  # the one atomic switch
    for name in (old["clip"], old["video"]):
        if name not in new.values():
            store.drop_table(name)
            report.dropped.append(name)
    report.videos = len(done - set(gone) - set(report.skipped))  # a video both skipped and gone counts once
    report.seconds = round(time.perf_counter() - started, 3)
    if report.boundary_mismatches:
        log.warning("%d clip(s) of %d video(s) with undecoded frames got another number of frames than ingest "
                    "gave them (frames assigned by time)", report.boundary_mismatches, report.by_time)
    log.info("re-aggregated %d video(s): %d clips from %d frames in %.1fs", report.videos, report.clips, report.frames, report.seconds)
    return report


def _refuse_sparse_frames(store: Store, sampling: SamplingConfig) -> None:
    """Shots from stored frames need frames close enough to place a cut within 0.5 s."""
    gap = 1.0 / sampling.fps if sampling.mode != "uniform" else None
    if gap is None or gap > MAX_SHOT_GAP_S:
        spacing = f"{gap:g} s apart" if gap else "a fixed number per clip (uniform sampling)"
        raise StoreError(f"{store.uri}: the stored frames are {spacing}, too sparse to place shot boundaries within "
                         f"0.5 s; re-decode the videos with shot detection: vidclip ingest VIDEOS --db NEW_DB --clips shots")


def _new_clips(t: np.ndarray, vecs: np.ndarray, duration_s: float | None, sampling: SamplingConfig):
    """(rows, members) for a video whose clip mode changes: rows as dicts with clip_id, start_s, end_s."""
    from vidclip.ingest.sampling import cut_clips
    from vidclip.ingest.shots import cuts_from_vectors, shot_windows

    duration = float(duration_s) if duration_s is not None else float(t[-1])
    if sampling.clips == "shots":
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # (N, D)
        bounds = shot_windows(cuts_from_vectors(t, unit), duration, sampling.clip_seconds)  # (C, 2)
    else:
        plan = plan_samples(t, duration, sampling)
        if len(plan.frame_index) == len(t) and (plan.frame_index == np.arange(len(t))).all():
            rows = [{"clip_id": c, "start_s": float(a), "end_s": float(b)} for c, (a, b) in enumerate(plan.clip_bounds)]
            return rows, [np.flatnonzero(plan.clip_of == c) for c in range(plan.n_clips)]
        bounds = cut_clips(duration, sampling.clip_seconds)
    owner = np.clip(np.searchsorted(bounds[:, 0], t, side="right") - 1, 0, len(bounds) - 1)  # (N,)
    used = [c for c in range(len(bounds)) if (owner == c).any()]  # a window with no frame is no clip
    rows = [{"clip_id": i, "start_s": float(bounds[c, 0]), "end_s": float(bounds[c, 1])} for i, c in enumerate(used)]
    return rows, [np.flatnonzero(owner == c) for c in used]


def _kept_clips(t: np.ndarray, stored: list[dict], duration_s: float | None, sampling: SamplingConfig, report):
    """(rows, members) for a video keeping its clips: ingest's own frame assignment when it can be
    replayed, else by time (counted in the report)."""
    max_frames = sampling.max_frames
    rows = sorted(stored, key=lambda r: (r["start_s"], r["clip_id"]))
    bounds = np.array([[r["start_s"], r["end_s"]] for r in rows], dtype=np.float64)  # (C, 2)
    members = None
    if duration_s is not None:
        members = replay_members(t, float(duration_s), sampling, [r["clip_id"] for r in rows], bounds)
    if members is None:
        members = clip_members(t, bounds)
        report.by_time += 1
        for row, pos in zip(rows, members):
            if len(pos) != row["n_frames"] and (row["n_frames"] < max_frames or len(pos) < max_frames):
                report.boundary_mismatches += 1
    return rows, members


def _aggregate_chunk(store, chunk, old, module, aggregate, name, sampling, video_cap, report, switch=False):
    """New clip and video rows for a group of videos."""
    max_frames = sampling.max_frames
    frames = read_frames(store, chunk, module)
    clip_rows = _segment_rows(store, old["clip"], chunk)
    video_rows = _segment_rows(store, old["video"], chunk)
    durations = {vid: row.get("duration_s") for vid, row in store.videos_by_id(chunk).items()}
    vectors, clip_meta, clip_groups, video_meta, video_groups = [], [], [], [], []
    offset = 0
    for vid in chunk:
        if vid not in frames or vid not in clip_rows:
            log.warning("video %s has no stored %s; left out", vid, "frames" if vid not in frames else "clips")
            report.skipped.append(vid)
            continue
        t, vecs = frames[vid]
        if switch:
            rows, members = _new_clips(t, vecs, durations.get(vid), sampling)
        else:
            rows, members = _kept_clips(t, clip_rows[vid], durations.get(vid), sampling, report)
        for row, pos in zip(rows, members):
            chosen = pos[select_for_clip(len(pos), max_frames)]
            clip_groups.append(chosen + offset)
            clip_meta.append((vid, row["clip_id"], row["start_s"], row["end_s"], len(chosen)))
        whole = np.arange(len(t)) if video_cap is None else select_for_clip(len(t), video_cap)
        video_groups.append(whole + offset)
        vrow = (video_rows.get(vid) or [{"start_s": 0.0, "end_s": float(t[-1])}])[0]
        video_meta.append((vid, -1, vrow["start_s"], vrow["end_s"], len(whole)))
        vectors.append(vecs)
        offset += len(t)
        report.frames += len(t)
    dim = store_dim(store)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)  # (N, D)
    clip_vecs = _pool(aggregate, module, stacked, clip_groups, dim)  # (C, D)
    video_vecs = _pool(aggregate, module, stacked, video_groups, dim)  # (V, D)
    report.clips += len(clip_meta)
    return _segment_table(clip_meta, clip_vecs, name, dim), _segment_table(video_meta, video_vecs, name, dim)


def _pool(aggregate, module, vectors: np.ndarray, groups: list[np.ndarray], dim: int) -> np.ndarray:
    """The module over groups of rows of `vectors`, with at most PADDED_PER_FORWARD padded frames per call
    (long whole-video sequences go a few at a time)."""
    out, lo = [], 0
    while lo < len(groups):
        hi, longest = lo + 1, len(groups[lo])
        while hi < len(groups) and max(longest, len(groups[hi])) * (hi - lo + 1) <= PADDED_PER_FORWARD:
            longest = max(longest, len(groups[hi]))
            hi += 1
        out.append(aggregate(module, vectors, groups[lo:hi]))  # (hi - lo, D)
        lo = hi
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


def _segment_rows(store: Store, table: str, video_ids: list[str]) -> dict[str, list[dict]]:
    cols = ["video_id", "clip_id", "start_s", "end_s", "n_frames"]
    tbl = store.table(table).search().where(sql_in("video_id", video_ids)).select(cols).limit(None).to_arrow()
    out: dict[str, list[dict]] = {}
    for row in tbl.to_pylist():
        out.setdefault(row["video_id"], []).append(row)
    return out


def _segment_table(meta: list[tuple], vectors: np.ndarray, name: str, dim: int) -> pa.Table:
    n = len(meta)
    return pa.Table.from_arrays(
        [
            pa.array([m[0] for m in meta], pa.string()),
            pa.array([m[1] for m in meta], pa.int32()),
            pa.array([m[2] for m in meta], pa.float64()),
            pa.array([m[3] for m in meta], pa.float64()),
            pa.array([m[4] for m in meta], pa.int32()),
            pa.array([name] * n, pa.string()),
            vectors_array(vectors.reshape(n, dim)),
        ],
        schema=segment_schema(dim),
    )


def _refuse_pending(store: Store) -> None:
    pending = store.count("videos", f"status = '{PENDING}'")
    if pending:
        raise StoreError(
            f"{store.uri}: {pending} video(s) are pending (an ingest is running, or was interrupted): "
            "wait for it to finish, or run 'vidclip ingest' again, which repairs the store, then reindex"
        )


def _generation(table: str) -> int:
    m = re.fullmatch(r".*_(\d+)", table)
    return int(m.group(1)) if m else 0


def _progress_bar(enabled: bool):
    from tqdm import tqdm

    return tqdm(total=0, desc="reindex", unit="video", file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty())
