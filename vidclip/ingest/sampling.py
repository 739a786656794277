"""Which frames to decode, and how they group into clips.  Pure numpy, no I/O.

Times are seconds from the stream start, taken from presentation timestamps;
a sampled frame is the one on screen at the target time (the last frame whose
pts is <= the target), so variable-frame-rate video is sampled correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidclip.config import SamplingConfig


@dataclass(frozen=True)
class SamplePlan:
    frame_index: np.ndarray  # (K,) int64 indices into the video's timeline, strictly increasing
    clip_of: np.ndarray  # (K,) int64 clip number of each sampled frame
    clip_bounds: np.ndarray  # (C, 2) float64 [start_s, end_s) of every clip
    keyframes_only: bool = False  # every planned frame is a keyframe: the decoder may skip the others

    @property
    def n_clips(self) -> int:
        return int(self.clip_bounds.shape[0])


def cut_clips(duration_s: float, clip_seconds: float) -> np.ndarray:
    """Clip windows covering [0, duration): length clip_seconds, the last one absorbing a remainder
    shorter than half a clip, so every clip lasts between 0.5x and 1.5x clip_seconds (a shorter
    video is one clip)."""
    n = max(1, int(duration_s / clip_seconds + 0.5))
    starts = np.arange(n, dtype=np.float64) * clip_seconds  # (C,)
    ends = np.append(starts[1:], max(duration_s, starts[-1]))  # (C,)
    return np.stack([starts, ends], axis=1)  # (C, 2)


def plan_samples(
    timeline: np.ndarray, duration_s: float, cfg: SamplingConfig, keyframes: np.ndarray | None = None
) -> SamplePlan:
    """Pick frames from a sorted presentation timeline (N,) according to cfg.

    keyframes: (N,) bool, which frames are keyframes; used by mode "keyframes" only (None: every
    frame of the timeline is eligible, as when re-planning over stored keyframe times)."""
    bounds = cut_clips(duration_s, cfg.clip_seconds)  # (C, 2)
    if cfg.mode == "keyframes":
        return _plan_keyframes(timeline, duration_s, cfg, bounds, keyframes)
    if cfg.mode == "fps":
        step = 1.0 / cfg.fps
        targets = np.arange(step / 2, duration_s, step)  # (K0,) centre of each 1/fps interval
        if targets.size == 0:
            targets = np.array([duration_s / 2])
        target_clip = np.clip(np.searchsorted(bounds[:, 0], targets, side="right") - 1, 0, len(bounds) - 1)
    else:
        n = cfg.max_frames
        per_clip = [s + (np.arange(n) + 0.5) * (e - s) / n for s, e in bounds]  # C x (n,)
        targets = np.concatenate(per_clip)  # (C*n,)
        target_clip = np.repeat(np.arange(len(bounds)), n)
    frame = np.clip(np.searchsorted(timeline, targets, side="right") - 1, 0, len(timeline) - 1)  # (K0,)
    # A frame on screen for several targets is decoded once; it belongs to the first clip that asked.
    frame_index, first = np.unique(frame, return_index=True)  # (K,), (K,)
    clip_of = target_clip[first]
    return _without_empty_clips(frame_index, clip_of, bounds)


def _without_empty_clips(frame_index: np.ndarray, clip_of: np.ndarray, bounds: np.ndarray, **extra) -> SamplePlan:
    """Drop clips left with no frame (a frame longer than a whole clip): no empty clip exists."""
    used = np.unique(clip_of)
    remap = -np.ones(len(bounds), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return SamplePlan(
        frame_index=frame_index.astype(np.int64),
        clip_of=remap[clip_of].astype(np.int64),
        clip_bounds=bounds[used],
        **extra,
    )


def _plan_keyframes(timeline, duration_s, cfg, bounds, keyframes) -> SamplePlan:
    if keyframes is not None and not keyframes.any():
        keyframes = None  # no frame flagged: keyframes unknown (as Probe.keyframe_before reads it)
    eligible = np.arange(len(timeline)) if keyframes is None else np.flatnonzero(keyframes)  # (M,)
    if eligible.size == 0:
        eligible = np.array([0])
    step = 1.0 / cfg.fps
    targets = np.arange(step / 2, duration_s, step)  # (K0,) same grid as mode "fps"
    if targets.size == 0:
        targets = np.array([duration_s / 2])
    ktimes = timeline[eligible]  # (M,)
    pick = np.clip(np.searchsorted(ktimes, targets, side="right") - 1, 0, len(eligible) - 1)  # (K0,)
    frame_index = np.unique(eligible[pick])  # (K,)
    # Clip by the keyframe's own time (its pts), not by the target that asked for it.
    clip_of = np.clip(np.searchsorted(bounds[:, 0], timeline[frame_index], side="right") - 1, 0, len(bounds) - 1)
    return _without_empty_clips(frame_index, clip_of, bounds, keyframes_only=keyframes is not None)


def select_for_clip(n_frames: int, max_frames: int) -> np.ndarray:
    """Indices (M,) of at most max_frames frames spread uniformly over n_frames (CLIP4Clip's uniform-N)."""
    if n_frames <= max_frames:
        return np.arange(n_frames)
    return np.unique(np.linspace(0, n_frames - 1, max_frames).round().astype(np.int64))
