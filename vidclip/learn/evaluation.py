"""Retrieval evaluation on stored frame vectors, with CLIP4Clip's protocol.

The pieces training and re-aggregation share live here too, lowest layer first:

  read_frames     stored frame vectors of some videos, in time order        (never decodes)
  frame_window    which of a video's frames fall in [start_s, end_s)
  Examples        caption vectors paired with padded frame sequences (units)
  gather          captions matched to the store -> Examples
  embed_units     a temporal module over Examples' units -> (U, D) vectors
  score           R@1/5/10, MdR, MnR both ways (+ offline-only DSL)
  load_temporal   "mean" or a checkpoint directory -> module + the store's meta["temporal"] entry

A unit is one (video, span) that captions refer to: its frames are the stored frames of the video
(or of the span), uniformly subsampled to the store's max_frames (CLIP4Clip's uniform-N), padded,
with a bool mask (True = valid).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from vidclip.learn.captions import Matched, Pair
from vidclip.errors import InputError, StoreError, StoreMismatchError
from vidclip.learn.metrics import TIES, evaluate
from vidclip.ingest.sampling import select_for_clip
from vidclip.store.store import Store
from vidclip.store.schema import FRAME_NORM, sql_in

if TYPE_CHECKING:
    import torch

log = logging.getLogger("vidclip")

DSL_NOTE = (
    "dsl: dual-softmax re-ranking normalises each video's scores over all queries of this evaluation; "
    "offline only, it needs every query at once and must never be used at serving time"
)
IDS_PER_QUERY = 500  # video_ids per LanceDB filter
DEFAULT_BATCH_FRAMES = 50_000  # frame vectors held at once while streaming a store


# -- stored frames ----------------------------------------------------------------------------------
def store_dim(store: Store) -> int:
    model = store.meta.get("model")
    if not model:
        raise StoreError(f"{store.uri}: the store is empty; ingest videos first")
    return int(model["dim"])


def check_frame_input(store: Store, module) -> bool:
    """Whether `module` is fed raw features; refuses (one line) a store that cannot give them."""
    from temporal import wants_raw_frames

    raw = module is not None and wants_raw_frames(module)
    if raw and not store.keeps_frame_norms:
        raise StoreError(f"{store.uri}: this temporal module is fed unnormalised frame features, but the store's "
                         "frames were stored without their norms (before vidclip kept them): ingest the videos "
                         "into a new store")
    return raw


def read_frames(store: Store, video_ids: list[str], module=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """video_id -> (t (N,) float64 ascending, vectors (N, D) float32) for the given videos: the
    stored unit vectors, or what `module` is fed (raw features for a CLIP4Clip-style module)."""
    dim = store_dim(store)
    raw = check_frame_input(store, module)
    columns = ["video_id", "t", "vector"] + ([FRAME_NORM] if raw else [])
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ids = sorted(set(video_ids))
    for lo in range(0, len(ids), IDS_PER_QUERY):
        where = sql_in("video_id", ids[lo : lo + IDS_PER_QUERY])
        tbl = store.table("frames").search().where(where).select(columns).limit(None).to_arrow()
        if tbl.num_rows == 0:
            continue
        vid = np.asarray(tbl.column("video_id").to_pylist(), dtype=object)  # (N,)
        t = tbl.column("t").to_numpy()  # (N,)
        vectors = tbl.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)  # (N, D)
        if raw:
            vectors = vectors * tbl.column(FRAME_NORM).to_numpy(zero_copy_only=False)[:, None]  # (N, D) raw features
        order = np.lexsort((t, vid))  # by video, then time (stable for equal times)
        vid, t, vectors = vid[order], t[order], vectors[order]
        cuts = np.flatnonzero(vid[1:] != vid[:-1]) + 1
        for lo_i, hi_i in zip(np.r_[0, cuts], np.r_[cuts, len(vid)]):
            out[vid[lo_i]] = (t[lo_i:hi_i].astype(np.float64), np.ascontiguousarray(vectors[lo_i:hi_i], dtype=np.float32))
    return out


def frame_counts(store: Store, video_ids: list[str]) -> dict[str, int]:
    """video_id -> number of stored frames (the videos table's n_frames)."""
    rows = store.videos_by_id(video_ids)
    return {vid: int(row.get("n_frames") or 0) for vid, row in rows.items()}


def chunk_by_frames(video_ids: list[str], counts: dict[str, int], batch_frames: int) -> Iterator[list[str]]:
    """Consecutive groups of video_ids holding at most ~batch_frames frames (one video at least)."""
    chunk, held = [], 0
    for vid in video_ids:
        n = counts.get(vid, 0)
        if chunk and held + n > batch_frames:
            yield chunk
            chunk, held = [], 0
        chunk.append(vid)
        held += n
    if chunk:
        yield chunk


def frame_window(t: np.ndarray, start_s: float | None, end_s: float | None, include_end: bool = False) -> np.ndarray:
    """Positions (n,) of the frames with start_s <= t < end_s (<= end_s with include_end) in ascending `t`.

    A window holding no sampled frame gets the frame on screen at its start (the last one at or
    before start_s, else the first), so a short span is never empty.  None bounds: all frames.
    """
    if start_s is None:
        return np.arange(len(t))
    hi = np.searchsorted(t, end_s, side="right" if include_end else "left")
    lo = np.searchsorted(t, start_s, side="left")
    if hi > lo:
        return np.arange(lo, hi)
    return np.array([max(0, np.searchsorted(t, start_s, side="right") - 1)])


# -- examples ---------------------------------------------------------------------------------------
@dataclass
class Examples:
    """Captions paired with frame sequences.  Caption i describes unit unit_of[i]."""

    frames: "torch.Tensor"  # (U, T, D) float32, zero padding
    mask: "torch.Tensor"  # (U, T) bool, True = valid frame
    text: "torch.Tensor"  # (N, D) float32 caption vectors, L2-normalised
    unit_of: "torch.Tensor"  # (N,) int64
    video_of: list[str]  # (U,) video_id of each unit (splits are by video)

    @property
    def n_units(self) -> int:
        return int(self.frames.shape[0])

    @property
    def n_captions(self) -> int:
        return int(self.text.shape[0])

    def subset(self, units: np.ndarray) -> "Examples":
        """The units listed (and only their captions), renumbered in the given order."""
        import torch

        units = np.asarray(units, dtype=np.int64)
        new_of = -np.ones(self.n_units, dtype=np.int64)
        new_of[units] = np.arange(len(units))
        unit_of = new_of[self.unit_of.numpy()]  # (N,)
        keep = np.flatnonzero(unit_of >= 0)
        idx = torch.from_numpy(units)
        return Examples(
            frames=self.frames[idx],
            mask=self.mask[idx],
            text=self.text[torch.from_numpy(keep)],
            unit_of=torch.from_numpy(unit_of[keep]),
            video_of=[self.video_of[u] for u in units],
        )


def gather(
    store: Store,
    pairs: list[Pair],
    text: "torch.Tensor",
    max_frames: int,
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    module=None,
) -> Examples:
    """Examples for matched captions: `text` (N, D) holds caption i's vector in row i.

    Streams over videos in groups of ~batch_frames stored frames and keeps only each unit's
    <= max_frames chosen vectors: unit vectors, or what `module` is fed (see read_frames).
    """
    import torch

    dim = store_dim(store)
    spans = list(dict.fromkeys(p.span for p in pairs))  # distinct units, first-seen order
    unit_index = {s: i for i, s in enumerate(spans)}
    frames = torch.zeros(len(spans), max_frames, dim)  # (U, T, D)
    mask = torch.zeros(len(spans), max_frames, dtype=torch.bool)  # (U, T)
    by_video: dict[str, list[int]] = {}
    for i, (vid, _, _) in enumerate(spans):
        by_video.setdefault(vid, []).append(i)
    videos = list(by_video)
    counts = frame_counts(store, videos)
    for chunk in chunk_by_frames(videos, counts, batch_frames):
        stored = read_frames(store, chunk, module)
        for vid in chunk:
            if vid not in stored:
                raise StoreError(f"{store.uri}: video {vid} has no stored frame vectors")
            t, vectors = stored[vid]
            for u in by_video[vid]:
                _, start, end = spans[u]
                pos = frame_window(t, start, end)
                pos = pos[select_for_clip(len(pos), max_frames)]  # (n <= max_frames,)
                frames[u, : len(pos)] = torch.from_numpy(vectors[pos])
                mask[u, : len(pos)] = True
    unit_of = torch.tensor([unit_index[p.span] for p in pairs], dtype=torch.int64)
    return Examples(frames=frames, mask=mask, text=text, unit_of=unit_of, video_of=[s[0] for s in spans])


def encode_captions(encoder, pairs: list[Pair]) -> "torch.Tensor":
    """(N, D) caption vectors from the store's own, frozen, CLIP text tower; each distinct text once."""
    import torch

    texts = list(dict.fromkeys(p.text for p in pairs))
    row = {t: i for i, t in enumerate(texts)}
    vectors = encoder.encode_text(texts)  # (M, D)
    return vectors[torch.tensor([row[p.text] for p in pairs], dtype=torch.int64)].float()  # (N, D)


# -- scoring ----------------------------------------------------------------------------------------
def embed_units(module, examples: Examples, batch_size: int = 256) -> "torch.Tensor":
    """(U, D) L2-normalised unit vectors; no gradients."""
    import torch

    device = next(module.parameters(), torch.empty(0)).device
    parts = []
    with torch.no_grad():
        for lo in range(0, examples.n_units, batch_size):
            frames = examples.frames[lo : lo + batch_size].to(device)  # (b, T, D)
            mask = examples.mask[lo : lo + batch_size].to(device)  # (b, T)
            parts.append(module(frames, mask).float().cpu())  # (b, D)
    return torch.cat(parts) if parts else examples.frames.new_zeros(0, examples.frames.shape[-1])


def similarity(module, examples: Examples) -> np.ndarray:
    """(N, U) cosine similarity of every caption with every unit."""
    units = embed_units(module, examples)  # (U, D)
    return (examples.text @ units.T).numpy()  # (N, U)


def score(module, examples: Examples) -> dict:
    """CLIP4Clip metrics: {"t2v", "v2t", "dsl": {"t2v", "v2t"}, "dsl_note"}, each {"R1","R5","R10","MdR","MnR"}."""
    was_training = module.training
    module.eval()
    try:
        metrics = evaluate(similarity(module, examples), examples.unit_of.numpy())
    finally:
        module.train(was_training)
    metrics["dsl_note"] = DSL_NOTE
    return metrics


# -- temporal modules -------------------------------------------------------------------------------
def load_temporal(store: Store, spec: str | dict | None):
    """The temporal module `spec` names, for this store's vectors, and its meta["temporal"] entry.

    spec: "mean", a checkpoint directory (from `vidclip train`), a recorded meta entry, or None
    for the store's own.  A checkpoint trained on another CLIP model is refused.
    """
    import temporal

    dim = store_dim(store)
    if spec is None:
        spec = store.meta.get("temporal") or {"name": "mean"}
    if isinstance(spec, dict):
        recorded = spec
        if not recorded.get("checkpoint"):
            spec = recorded["name"]
        else:
            if not os.path.isdir(recorded["checkpoint"]):
                raise StoreError(f"{store.uri}: its temporal checkpoint {recorded['checkpoint']} is missing")
            module, spec = _load_checkpoint(store, recorded["checkpoint"])
            if spec["fingerprint"] != recorded.get("fingerprint"):
                raise StoreMismatchError(f"{store.uri}: temporal checkpoint {recorded['checkpoint']} changed since "
                                         "the store was indexed with it")
            return module, spec
    spec = str(spec)
    if os.path.isdir(spec):
        return _load_checkpoint(store, spec)
    if spec in temporal.names():
        module = temporal.build(spec, dim)
        if any(True for _ in module.parameters()):
            raise InputError(f"temporal module {spec!r} has learned weights: pass the checkpoint directory "
                             f"'vidclip train --out DIR' wrote, not its name")
        return module.eval(), {"name": spec}
    raise InputError(f"--temporal {spec!r} is neither 'mean' nor a checkpoint directory")


def _load_checkpoint(store: Store, ckpt_dir: str):
    import temporal

    model = store.meta["model"]
    ckpt = str(Path(ckpt_dir).resolve())
    try:
        module = temporal.load(ckpt, expect_clip_model=model["name"])
        fingerprint = temporal.fingerprint(ckpt)
    except temporal.TemporalError as exc:
        raise StoreMismatchError(f"{store.uri}: {' '.join(str(exc).split())}") from None
    if module.dim != int(model["dim"]):
        raise StoreMismatchError(f"{store.uri}: temporal checkpoint {ckpt} works on D={module.dim} vectors, "
                                 f"the store holds D={model['dim']}")
    trained_on = _trained_weights(ckpt)
    if trained_on and trained_on != model.get("weights_sha256"):
        raise StoreMismatchError(f"{store.uri}: temporal checkpoint {ckpt} was trained on {model['name']} weights "
                                 f"{trained_on[:12]}, the store holds weights {str(model.get('weights_sha256'))[:12]}")
    return module.eval(), {"name": module.name, "checkpoint": ckpt, "fingerprint": fingerprint}


def _trained_weights(ckpt_dir: str) -> str | None:
    """The CLIP weights sha256 `vidclip train` recorded beside a checkpoint (metrics.json), if any."""
    path = Path(ckpt_dir) / "metrics.json"
    try:
        return json.loads(path.read_text()).get("clip", {}).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        return None


# -- the eval command -------------------------------------------------------------------------------
def evaluate_store(lib, matched: Matched, temporal_spec: str | None = None) -> dict:
    """Metrics of `temporal_spec` (default: the store's module) on matched captions of `lib`'s store."""
    store = lib.store
    module, spec = load_temporal(store, temporal_spec)
    max_frames = int((store.meta.get("sampling") or {}).get("max_frames", 12))
    text = encode_captions(lib.encoder, matched.pairs)  # (N, D)
    examples = gather(store, matched.pairs, text, max_frames, module=module)
    metrics = score(module, examples)
    return {
        "t2v": metrics["t2v"],
        "v2t": metrics["v2t"],
        "dsl": metrics["dsl"],
        "dsl_note": metrics["dsl_note"],
        "ties": TIES,
        "temporal": spec,
        "captions": examples.n_captions,
        "videos": examples.n_units,
        "skipped": matched.skipped,
        "max_frames": max_frames,
    }
