"""Moments: the span of consecutive sampled frames inside a hit's clip that matches the query.

Rule (documented, deterministic): inside the clip [clip_start, clip_end), score every stored frame
against the query (cosine; frames and query are normalised).  Start at the best frame and grow one
frame at a time to the left and to the right while the neighbour scores within `margin` of the best
(score >= best - margin); stop at the first frame below that, or at the clip's edge.  The moment
is [t_first, t_after_last): the first kept frame's time to the next sampled frame's time, or the
clip's end when the last kept frame is the clip's last.  `best_t` is the best frame's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MARGIN = 0.02  # cosine units: about the spread of CLIP scores between near-identical frames


@dataclass(frozen=True)
class Moment:
    start_s: float
    end_s: float
    best_t: float
    best_score: float  # the best frame's cosine
    mean_score: float  # mean frame cosine over the clip


def frames_in(times: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """Indices of sorted frame times inside [start_s, end_s) (the last clip also takes t == end_s)."""
    lo = np.searchsorted(times, start_s, side="left")
    hi = np.searchsorted(times, end_s, side="left")
    if hi == lo and lo < len(times) and times[lo] <= end_s:
        hi = lo + 1  # a clip whose only frame sits on its end time
    return np.arange(lo, hi)


def find_moment(times: np.ndarray, scores: np.ndarray, clip_start: float, clip_end: float,
                margin: float = DEFAULT_MARGIN) -> Moment | None:
    """times (n,) sorted, scores (n,) of one video's frames -> the moment inside the clip, or None
    when no stored frame falls in it."""
    idx = frames_in(times, clip_start, clip_end)  # (m,)
    if idx.size == 0:
        return None
    s = scores[idx]  # (m,)
    best = int(np.argmax(s))
    floor = s[best] - margin
    lo = best
    while lo > 0 and s[lo - 1] >= floor:
        lo -= 1
    hi = best
    while hi < len(s) - 1 and s[hi + 1] >= floor:
        hi += 1
    t = times[idx]
    end = float(t[hi + 1]) if hi + 1 < len(t) else float(max(clip_end, t[hi]))
    return Moment(float(t[lo]), end, float(t[best]), float(s[best]), float(s.mean()))
