"""Shot boundaries from signals vidclip has or can get nearly free.  Pure numpy, no I/O.

Two signals, each a sequence of (time, feature) in presentation order:

* thumbnails: tiny grey pictures (e.g. 32x18) of the frames a decoder produces anyway (with PyAV's
  dropping of unplanned B-frames that is every reference frame: a few per tenth of a second);
* sampled vectors: the CLIP vectors of the planned frames (1 per second at the default), free once
  encoded, locating a cut only to within one sampling interval.

`cuts_from_thumbnails` is a content detector in the manner of PySceneDetect's adaptive one: a
frame-to-frame difference that stands well above the differences around it is a cut, so steady
fast motion (large differences everywhere) is not; a flash (a jump and a jump back, the frames on
either side alike) is not either.  `cuts_from_vectors` marks the midpoint between two consecutive
sampled frames whose vectors turn apart.  `shot_windows` turns cuts into clip windows.
"""

from __future__ import annotations

import numpy as np

ADAPTIVE_RATIO = 3.0  # a cut's difference is at least this many times the mean of its neighbours'
MIN_DIFFERENCE = 6.0  # ... and at least this much (mean absolute grey change, 0-255): noise is not a cut
NEIGHBOURS_S = 0.5  # the neighbourhood the ratio is taken against, each side
FLASH_S = 0.25  # a jump undone within this long (the frames on either side alike) is a flash
MIN_SHOT_S = 1.0  # a cut closer than this to the previous one is dropped (PySceneDetect: min_scene_len)


def differences(thumbs: np.ndarray) -> np.ndarray:
    """(N, h, w) grey uint8/float -> (N,) mean absolute change from the previous frame (0 for the first)."""
    x = thumbs.astype(np.float32)  # (N, h, w)
    out = np.zeros(len(x), np.float32)
    if len(x) > 1:
        out[1:] = np.abs(x[1:] - x[:-1]).mean(axis=(1, 2))
    return out


def cuts_from_thumbnails(times: np.ndarray, thumbs: np.ndarray, ratio: float = ADAPTIVE_RATIO,
                         min_difference: float = MIN_DIFFERENCE, min_shot_s: float = MIN_SHOT_S) -> list[float]:
    """Cut times (the first frame of each new shot) from thumbnails of frames at `times` (N,)."""
    times = np.asarray(times, np.float64)
    d = differences(thumbs)  # (N,)
    x = thumbs.astype(np.float32)
    cuts: list[float] = []
    for i in range(1, len(d)):
        if d[i] < min_difference:
            continue
        lo, hi = _window(times, times[i] - NEIGHBOURS_S, times[i] + NEIGHBOURS_S)
        lo = max(lo, 1)  # d[0] is no difference
        n = hi - lo - 1  # the neighbours, frame i left out
        around = float((d[lo:hi].sum() - d[i]) / n) if n > 0 else 0.0
        if d[i] < ratio * max(around, 1e-3):
            continue
        if _undone(times, x, i, d[i]):
            continue
        if cuts and times[i] - cuts[-1] < min_shot_s:
            continue
        cuts.append(float(times[i]))
    return cuts


def _undone(times: np.ndarray, x: np.ndarray, i: int, jump: float) -> bool:
    """The jump into frame i is half of a flash: a frame shortly after looks like the one before
    the jump (going into the flash), or a frame shortly before the previous one looks like frame i
    (coming out of it)."""
    _, hi = _window(times, times[i], times[i] + FLASH_S)
    after = range(i + 1, hi)
    if len(after) and min(float(np.abs(x[j] - x[i - 1]).mean()) for j in after) < 0.5 * jump:
        return True
    lo, _ = _window(times, times[i] - FLASH_S, times[i])
    before = range(lo, i - 1)
    return bool(len(before)) and min(float(np.abs(x[j] - x[i]).mean()) for j in before) < 0.5 * jump


def _window(times: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """[lo, hi) of the sorted `times` within [start, end]: windows cost their size, not N."""
    return int(np.searchsorted(times, start - 1e-9, "left")), int(np.searchsorted(times, end + 1e-9, "right"))


DISSOLVE_HALF_S = 0.5  # a dissolve is seen between the pictures this long before and after a frame
DISSOLVE_BLEND = 4.0  # ... which differ this many times more than the frame differs from their blend
DISSOLVE_STANDOUT = 2.0  # ... and this many times more than pictures as far apart do 0.5-1 s further away


def dissolves_from_thumbnails(times: np.ndarray, thumbs: np.ndarray, cuts: list[float],
                              blend: float = DISSOLVE_BLEND, min_difference: float = MIN_DIFFERENCE) -> list[float]:
    """Centres of gradual transitions.  Inside a dissolve a frame is close to the average of the
    pictures DISSOLVE_HALF_S before and after it, while those two differ a lot; inside a moving shot
    the two differ too, but the frame is not their blend.  Each picture is the median of the frames
    within 0.1 s (a flash of a frame or two does not count), and transitions near a hard cut
    already found are left to it."""
    times = np.asarray(times, np.float64)
    x = thumbs.astype(np.float32)

    def picture(t: float) -> np.ndarray | None:
        lo, hi = _window(times, t - 0.1, t + 0.1)
        return np.median(x[lo:hi], axis=0) if hi > lo else None

    score = np.zeros(len(times), np.float32)
    wide = np.zeros(len(times), np.float32)
    cut_times = np.asarray(sorted(cuts), np.float64)
    for i, t in enumerate(times):
        a, b, c = picture(t - DISSOLVE_HALF_S), picture(t + DISSOLVE_HALF_S), picture(t)
        if a is None or b is None or c is None:
            continue
        wide[i] = float(np.abs(a - b).mean())
        k = int(np.searchsorted(cut_times, t))
        near_cut = any(abs(t - cut_times[j]) < 2 * DISSOLVE_HALF_S for j in (k - 1, k) if 0 <= j < len(cut_times))
        if wide[i] >= min_difference and not near_cut:
            score[i] = wide[i] / max(float(np.abs(c - (a + b) / 2).mean()), 1e-3)
    found: list[float] = []
    for i in np.flatnonzero(score >= blend):
        t = times[i]
        lo, hi = _window(times, t - DISSOLVE_HALF_S, t + DISSOLVE_HALF_S)
        if score[i] < score[lo:hi].max() or (found and t - found[-1] < MIN_SHOT_S):
            continue
        # a steady pan over smooth content also looks like a blend; a dissolve stands out of its surroundings
        a0, a1 = _window(times, t - 4 * DISSOLVE_HALF_S, t - 2 * DISSOLVE_HALF_S - 1e-6)
        b0, b1 = _window(times, t + 2 * DISSOLVE_HALF_S + 1e-6, t + 4 * DISSOLVE_HALF_S)
        ring = np.concatenate([wide[a0:a1], wide[b0:b1]])
        if len(ring) and wide[i] < DISSOLVE_STANDOUT * float(np.median(ring)):
            continue
        found.append(float(times[i]))
    return found


def cuts_from_vectors(times: np.ndarray, vectors: np.ndarray, ratio: float = ADAPTIVE_RATIO,
                      min_distance: float = 0.05, min_shot_s: float = MIN_SHOT_S) -> list[float]:
    """Cut times from unit vectors (K, D) of frames sampled at `times` (K,): where the cosine
    distance between consecutive samples stands `ratio` times above its neighbours' (two samples
    each side), at the midpoint between the two samples."""
    times = np.asarray(times, np.float64)
    v = np.asarray(vectors, np.float32)  # (K, D)
    if len(v) < 2:
        return []
    dist = 1.0 - (v[1:] * v[:-1]).sum(axis=1)  # (K-1,) between sample i and i+1
    cuts: list[float] = []
    for i, di in enumerate(dist):
        nb = np.concatenate([dist[max(0, i - 2):i], dist[i + 1:i + 3]])
        around = float(nb.mean()) if len(nb) else 0.0
        if di < min_distance or di < ratio * max(around, 1e-6):
            continue
        t = float((times[i] + times[i + 1]) / 2)
        if cuts and t - cuts[-1] < min_shot_s:
            continue
        cuts.append(t)
    return cuts


def shot_windows(cuts: list[float], duration_s: float, max_seconds: float, min_seconds: float = MIN_SHOT_S) -> np.ndarray:
    """Clip windows (C, 2) [start, end) from cut times: one per shot; a shot longer than
    `max_seconds` is split into equal parts no longer than it; a shot shorter than `min_seconds`
    joins the neighbour it is closer in time to (the previous one, or the next at the start)."""
    edges = [0.0] + sorted(float(c) for c in cuts if 0.0 < c < duration_s) + [float(duration_s)]
    merged = [edges[0]]
    for e in edges[1:-1]:
        if e - merged[-1] >= min_seconds:
            merged.append(e)
    if len(merged) > 1 and duration_s - merged[-1] < min_seconds:
        merged.pop()  # a short last shot joins the one before
    merged.append(float(duration_s))
    out = []
    for start, end in zip(merged[:-1], merged[1:]):
        parts = max(1, int(np.ceil((end - start) / max_seconds - 1e-9)))
        bounds = np.linspace(start, end, parts + 1)
        out += [(float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.asarray(out, np.float64).reshape(-1, 2)
