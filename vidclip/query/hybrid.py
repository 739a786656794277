"""Hybrid search: the vector ranking fused with full-text (BM25) search over title / description /
tags, at the video level."""

from __future__ import annotations

import dataclasses

from vidclip.errors import QueryError
from vidclip.query.search import MAX_K, Hits, search_vector
from vidclip.store.schema import sql_in
from vidclip.store.store import Store

FUSIONS = ("rrf", "weighted")


def check_fusion(fusion: str, rrf_k, text_weight) -> None:
    """One line for a fusion setting a user got wrong, before any model or table is touched."""
    if fusion not in FUSIONS:
        raise QueryError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
        raise QueryError(f"rrf_k must be an integer >= 1, got {rrf_k!r}")
    if isinstance(text_weight, bool) or not isinstance(text_weight, (int, float)) or not 0.0 <= text_weight <= 1.0:
        raise QueryError(f"text_weight must be a number in [0, 1], got {text_weight!r}")


def search_hybrid(store: Store, text: str, query, k: int, per_video: int, level: str, options: dict,
                  fusion: str = "rrf", rrf_k: int = 60, text_weight: float = 0.5) -> Hits:
    """Vector hits fused with full-text (BM25) hits at the video level: every hit of a video
    shares that video's text rank.  Videos found only by text get their best clip(s) from a
    vector search restricted to them.

    fusion="rrf": score = sum of 1 / (rrf_k + rank); "weighted": text_weight * min-max-normalised
    BM25 + (1 - text_weight) * min-max-normalised cosine.  options: search_vector's keywords."""
    depth = min(MAX_K, max(4 * k, 50))
    vec = search_vector(store, query, k=depth, per_video=per_video, level=level, **options)
    fts = store.fts_search(text, depth, options["where"]).to_pylist()
    text_rank = {r["video_id"]: i for i, r in enumerate(fts)}
    text_score = {r["video_id"]: float(r["_score"]) for r in fts}
    seen = {h.video_id for h in vec}
    only_text = [v for v in text_rank if v not in seen]
    if only_text:
        extra = dict(options, where=" AND ".join(p for p in (options["where"], sql_in("video_id", only_text)) if p))
        vec = Hits([*vec, *search_vector(store, query, k=min(MAX_K, len(only_text) * (per_video if level == "clip" else 1)),
                                         per_video=per_video, level=level, **extra)])
    vec_rank = {id(h): i for i, h in enumerate(sorted(vec, key=lambda h: -h.score))}
    vnorm = _min_max({id(h): h.score for h in vec})
    tnorm = _min_max(text_score)
    fused = []
    for h in vec:
        if fusion == "rrf":
            s = 1.0 / (rrf_k + vec_rank[id(h)] + 1)
            if h.video_id in text_rank:
                s += 1.0 / (rrf_k + text_rank[h.video_id] + 1)
        else:
            s = (1.0 - text_weight) * vnorm[id(h)] + text_weight * tnorm.get(h.video_id, 0.0)
        fused.append(dataclasses.replace(h, score=round(s, 6)))
    fused.sort(key=lambda h: -h.score)
    return Hits(fused[:k])


def _min_max(values: dict) -> dict:
    if not values:
        return {}
    lo, hi = min(values.values()), max(values.values())
    return {key: (v - lo) / (hi - lo) if hi > lo else 1.0 for key, v in values.items()}
