"""Second-stage re-ranking of first-stage (clip-vector) candidates with their frame vectors.

  max     score = max over the clip's frames of cos(query, frame)   (finds a short moment in a long clip)
  mean    score = mean over the clip's frames of cos(query, frame)
  fusion  score = alpha * clip_score + (1 - alpha) * max_frame_score

The frame scores come from the same single frames query that produces the hits' moments
(vidclip.query.moments), so re-ranking costs one vector dot per candidate frame and no extra I/O.
"""

from __future__ import annotations

from vidclip.errors import QueryError

RERANKERS = ("max", "mean", "fusion")
DEFAULT_RERANK_K = 100
DEFAULT_ALPHA = 0.5


MAX_RERANK_K = 1000  # candidates whose frames one search reads


def check_rerank(rerank: str | None, rerank_k: int, alpha: float) -> None:
    if rerank is not None and rerank not in RERANKERS:
        raise QueryError(f"rerank must be one of {', '.join(RERANKERS)} or None, got {rerank!r}")
    if isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or not 1 <= rerank_k <= MAX_RERANK_K:
        raise QueryError(f"rerank_k must be an integer between 1 and {MAX_RERANK_K}, got {rerank_k!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise QueryError(f"alpha must be a number in [0, 1], got {alpha!r}")


def rescore(rerank: str, clip_score: float, max_frame: float, mean_frame: float, alpha: float = DEFAULT_ALPHA) -> float:
    if rerank == "max":
        return max_frame
    if rerank == "mean":
        return mean_frame
    return alpha * clip_score + (1.0 - alpha) * max_frame
