"""Retrieval metrics with CLIP4Clip's definitions: R@1/5/10 in percent, median and mean rank.

Rank, and ties.  A query's rank is 1 + the number of *other* targets scored at least as high as
its ground truth (pessimistic ties): a tie is never resolved in the query's favour, so a model
that scores everything alike ranks every ground truth last among its equals.  (CLIP4Clip's
`compute_metrics` and vidclip before it counted only strictly higher scores: a constant model
then scored R@1 = 100.)  Without ties the two definitions agree.  TIES names the rule, and
`vidclip eval --json` reports it.

Multi-caption (MSR-VTT style: many captions per video), with `sim` (n_captions, n_videos):
  * text -> video: each caption ranks the videos; its ground truth is its video.
  * video -> text: each video ranks all captions of all videos; its rank is the *best* rank among
    its own captions (1 + other videos' captions scored at least as high as its best caption).  CLIP4Clip's
    multi-sentence code instead max-pools each video's captions first and ranks videos, so
    v2t numbers there can be better; with one caption per video (MSR-VTT 1k-A) both agree.

All inputs are plain numpy arrays (torch tensors are accepted and converted).
"""

from __future__ import annotations

import numpy as np

RECALL_AT = (1, 5, 10)
TIES = "pessimistic"


def retrieval_metrics(sim: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Metrics for `sim` (n_queries, n_targets) where query i's correct target is `gt[i]`."""
    sim = _as_matrix(sim)
    gt = np.asarray(gt)
    if gt.shape != (sim.shape[0],) or not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt must be {sim.shape[0]} integer target indices, got shape {gt.shape} dtype {gt.dtype}")
    if gt.size and (gt.min() < 0 or gt.max() >= sim.shape[1]):
        raise ValueError(f"gt indices must lie in [0, {sim.shape[1]}), got range [{gt.min()}, {gt.max()}]")
    positives = np.zeros(sim.shape, dtype=bool)  # (n_queries, n_targets)
    positives[np.arange(sim.shape[0]), gt] = True
    return summarize(ranks(sim, positives))


def ranks(sim: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """1-based rank of each query's best-scored positive, ties counted against it: 1 + #negative
    targets scored at least as high as the best positive (other positives never push it down).

    sim (n_queries, n_targets) float; positives same shape, bool, >= 1 True per row.
    """
    sim = _as_matrix(sim)
    if positives.shape != sim.shape or positives.dtype != bool:
        raise ValueError(f"positives must be a bool array of shape {sim.shape}")
    if not positives.any(axis=1).all():
        raise ValueError("every query needs at least one positive target")
    best = np.where(positives, sim, -np.inf).max(axis=1, keepdims=True)  # (n_queries, 1)
    return 1 + ((sim >= best) & ~positives).sum(axis=1)  # (n_queries,)


def summarize(rank: np.ndarray) -> dict[str, float]:
    """R@K (percent of queries with rank <= K), MdR (median rank) and MnR (mean rank)."""
    rank = np.asarray(rank, dtype=np.float64)
    if rank.size == 0:
        raise ValueError("no queries to score")
    metrics = {f"R{k}": float(100.0 * np.mean(rank <= k)) for k in RECALL_AT}
    metrics["MdR"] = float(np.median(rank))
    metrics["MnR"] = float(np.mean(rank))
    return metrics


def dual_softmax(sim: np.ndarray, temperature: float = 100.0) -> np.ndarray:
    """Dual-softmax re-ranking (DSL, used with CLIP4Clip): sim * softmax(sim * temperature, axis=0).

    `sim` is (n_queries, n_targets); the softmax runs over the queries (axis 0), a prior that
    down-weights targets which many queries score highly.  Offline only: it needs every query
    of the evaluation at once, so it cannot serve a single live search.
    """
    sim = _as_matrix(sim).astype(np.float64)
    logits = sim * temperature  # (n_queries, n_targets)
    logits = logits - logits.max(axis=0, keepdims=True)  # stable softmax
    prior = np.exp(logits)
    prior /= prior.sum(axis=0, keepdims=True)  # (n_queries, n_targets), columns sum to 1
    return sim * prior


def evaluate(sim: np.ndarray, gt_video_of_caption: np.ndarray, temperature: float = 100.0) -> dict:
    """Both directions, plain and dual-softmax re-ranked.

    sim (n_captions, n_videos); gt_video_of_caption (n_captions,) int.  Every video needs >= 1
    caption.  Returns {"t2v": m, "v2t": m, "dsl": {"t2v": m, "v2t": m}} with m from `summarize`.
    """
    sim = _as_matrix(sim)
    gt = np.asarray(gt_video_of_caption)
    if gt.shape != (sim.shape[0],) or not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt_video_of_caption must be {sim.shape[0]} integer video indices, got shape {gt.shape}")
    if gt.size and (gt.min() < 0 or gt.max() >= sim.shape[1]):
        raise ValueError(f"video indices must lie in [0, {sim.shape[1]}), got range [{gt.min()}, {gt.max()}]")
    positives = np.zeros(sim.shape, dtype=bool)  # (n_captions, n_videos)
    positives[np.arange(sim.shape[0]), gt] = True
    uncaptioned = np.flatnonzero(~positives.any(axis=0))
    if uncaptioned.size:
        raise ValueError(f"videos {uncaptioned[:10].tolist()} have no caption; cannot rank video -> text")
    return {
        "t2v": summarize(ranks(sim, positives)),
        "v2t": summarize(ranks(sim.T, positives.T)),
        "dsl": {
            "t2v": summarize(ranks(dual_softmax(sim, temperature), positives)),
            "v2t": summarize(ranks(dual_softmax(sim.T, temperature), positives.T)),
        },
    }


def _as_matrix(sim) -> np.ndarray:
    if hasattr(sim, "detach"):  # torch tensor
        sim = sim.detach().cpu().numpy()
    sim = np.asarray(sim)
    if sim.ndim != 2 or not (np.issubdtype(sim.dtype, np.floating) or np.issubdtype(sim.dtype, np.integer)):
        raise ValueError(f"sim must be a 2-d real array (n_queries, n_targets), got shape {sim.shape} dtype {sim.dtype}")
    sim = sim.astype(np.float64, copy=False)
    if not np.isfinite(sim).all():
        raise ValueError("sim holds NaN or inf scores")
    return sim
