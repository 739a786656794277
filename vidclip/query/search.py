"""Vector search over a store: query vector -> ranked hits with their moments.

Stages of one search:
  1. first stage: nearest clip (or whole-video) vectors, exact or ANN (`nprobes` / `refine_factor`
     are passed to the store only when given), prefiltered to the videos a filter allows;
  2. optional re-rank (vidclip.query.rerank) of the top `rerank_k` candidates on their frame vectors;
  3. grouping: at most `per_video` hits per video (one at the video level);
  4. moments (vidclip.query.moments) from the frame vectors.
Steps 2 and 4 share ONE frames query per search (video_id/time-range predicates OR'ed together).

Filters (vidclip.store.filters) apply to videos.  LanceDB cannot join, so the matching video_ids are
resolved first; up to PREFILTER_MAX of them become a `video_id IN (...)` prefilter on the clip
search; beyond that the clip search runs unfiltered and non-matching videos are dropped while
fetching more candidates (post-filter; exhaustive at worst).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from vidclip.errors import QueryError
from vidclip.query.moments import DEFAULT_MARGIN, find_moment
from vidclip.query.rerank import DEFAULT_ALPHA, DEFAULT_RERANK_K, check_rerank, rescore
from vidclip.store.store import Store
from vidclip.store.schema import sql_in, sql_str, vectors_of

LEVELS = ("clip", "video")
MAX_K = 1000
PREFILTER_MAX = 10_000


@dataclass(frozen=True)
class Hit:
    """One result: a video, the clip that matched and the moment inside it.

    start_s / end_s: the refined moment (see vidclip.query.moments); clip_start_s / clip_end_s: the clip
    (the whole video at the video level); best_t: the best-matching frame's time.  score: the final
    ranking score (re-ranked or fused when asked); clip_score: the first-stage cosine."""

    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float
    clip_id: int | None = None  # None for a whole-video hit
    clip_start_s: float | None = None
    clip_end_s: float | None = None
    best_t: float | None = None
    clip_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Hits(list):
    """A ranked list of Hit, convertible to Arrow / pandas."""

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_pylist([h.to_dict() for h in self], schema=_HIT_SCHEMA)

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def to_dicts(self) -> list[dict]:
        return [h.to_dict() for h in self]

    def _repr_html_(self) -> str | None:
        try:
            from vidclip.query.display import render_hits
        except ImportError:
            return None
        return render_hits(self)


_HIT_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("score", pa.float64()),
        ("clip_id", pa.int32()),
        ("clip_start_s", pa.float64()),
        ("clip_end_s", pa.float64()),
        ("best_t", pa.float64()),
        ("clip_score", pa.float64()),
    ]
)


def check_request(k: int, per_video: int, level: str) -> None:
    if level not in LEVELS:
        raise QueryError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    if not isinstance(per_video, int) or isinstance(per_video, bool) or per_video < 1:
        raise QueryError(f"per_video must be an integer >= 1, got {per_video!r}")


def rows_to_fetch(want: int) -> int:
    """Rows asked of the vector search for `want` results after grouping and filtering: 4 per
    result (clips of one video crowding the top still leave enough videos), at least 32.  An index's
    settings are calibrated on the request for k=10 (vidclip.store.index.CALIBRATION_LIMIT)."""
    return max(4 * want, 32)


def check_ann(nprobes, refine_factor) -> None:
    for name, value in (("nprobes", nprobes), ("refine_factor", refine_factor)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise QueryError(f"{name} must be None or an integer >= 1, got {value!r}")


def search_vector(
    store: Store,
    query: np.ndarray,
    k: int = 10,
    per_video: int = 1,
    level: str = "clip",
    *,
    where: str | None = None,
    rerank: str | None = None,
    rerank_k: int = DEFAULT_RERANK_K,
    alpha: float = DEFAULT_ALPHA,
    margin: float = DEFAULT_MARGIN,
    moments: bool = True,
    nprobes: int | None = None,
    refine_factor: int | None = None,
) -> Hits:
    """Top-k hits for a normalised query vector (D,).  At most `per_video` hits per video at the clip
    level; one per video at the video level.  Only fully committed ("ok") videos are returned.

    where: a SQL predicate over the videos table, built by vidclip.store.filters (or trusted where_sql)."""
    check_request(k, per_video, level)
    check_rerank(rerank, rerank_k, alpha)
    check_ann(nprobes, refine_factor)
    if not store.has_vectors:
        return Hits()
    query = np.asarray(query, dtype=np.float32)
    table = store.segments[level]
    recorded = nprobes is None and refine_factor is None  # the settings `vidclip index` measured
    cap = per_video if level == "clip" else 1
    prefilter = None
    if where:
        ids = store.video_ids_where(where, limit=PREFILTER_MAX + 1)
        if not ids:
            return Hits()
        if len(ids) <= PREFILTER_MAX:
            prefilter = set(ids)
    want = max(k * cap, rerank_k if rerank else 0)  # candidate rows needed after dropping others
    fetch = rows_to_fetch(want)
    speculative = None  # frames fetched for the first page's top groups, beside the videos lookup
    while True:
        ann = {"nprobes": nprobes, "refine_factor": refine_factor}
        if recorded:  # for this table and `fetch` rows ({} when it searches exactly)
            from vidclip.store.index import query_options

            ann = query_options(store, table, fetch)
        rows = store.search_vectors(table, query, fetch, prefilter, **ann).to_pylist()
        exhausted = len(rows) < fetch  # a short page: no more candidates to fetch
        # with a prefilter the rows already come only from ok videos the filter allows
        lookup = _pool().submit(store.video_uris, {r["video_id"] for r in rows}, where=None if prefilter is not None else where)
        if moments and not rerank and speculative is None:
            # Almost every candidate is committed and allowed: fetch the moments' frames for the
            # top groups now, in parallel with the videos lookup (the two LanceDB queries overlap),
            # and fetch again below only for videos the lookup drops.
            guess = _group(rows, k, cap)
            speculative = (_frames_for(store, guess), {_key(r) for r in guess})
        videos = lookup.result()
        rows = [r for r in rows if r["video_id"] in videos]  # committed and allowed by the filter
        for r in rows:
            r["clip_score"] = 1.0 - float(r["_distance"])
            r["score"] = r["clip_score"]
        enough = len(_group(rows, k, cap)) >= k and (not rerank or len(rows) >= rerank_k)
        if enough or exhausted:
            break
        fetch *= 4
    if rerank:
        candidates = rows[: max(rerank_k, k * cap)]
        frames = _frames_for(store, candidates)
        for r in candidates:
            m = _moment(frames, r, query, margin)
            if moments:
                r["moment"] = m  # moments=False: the hit's span stays its clip's
            if m is not None:
                r["score"] = rescore(rerank, r["clip_score"], m.best_score, m.mean_score, alpha)
        rows = sorted(candidates, key=lambda r: -r["score"])  # stable: ties keep first-stage order
        chosen = _group(rows, k, cap)
    else:
        chosen = _group(rows, k, cap)
        if moments:
            frames, fetched = speculative
            # a video with any chosen row not fetched is fetched again whole (its entry is per video)
            redo = {r["video_id"] for r in chosen if _key(r) not in fetched}
            if redo:
                frames = {**frames, **_frames_for(store, [r for r in chosen if r["video_id"] in redo])}
            for r in chosen:
                r["moment"] = _moment(frames, r, query, margin)
    return Hits(_hit(r, videos[r["video_id"]]) for r in chosen)


def stored_vector(store: Store, video_id: str, clip_id: int | None = None) -> np.ndarray:
    """The stored (D,) vector of clip `clip_id` of a video, or of the whole video when None."""
    table = store.segments["clip" if clip_id is not None else "video"]
    if not store.has_vectors or not store.has_table(table):
        raise QueryError(f"{store.uri}: the store is empty; ingest videos first")
    where = f"video_id = {sql_str(str(video_id))}"
    if clip_id is not None:
        try:
            clip_id = int(clip_id)
        except (TypeError, ValueError):
            raise QueryError(f"clip_id must be an integer, got {clip_id!r}") from None
        where += f" AND clip_id = {clip_id}"
    rows = store.table(table).search().where(where).select(["vector"]).limit(1).to_arrow()
    if rows.num_rows == 0 or not store.videos_by_id([str(video_id)]):
        what = f"clip {clip_id} of video {video_id}" if clip_id is not None else f"video {video_id}"
        raise QueryError(f"{store.uri}: no {what} in this store")
    return np.asarray(rows.column("vector")[0].as_py(), dtype=np.float32)  # (D,)


_POOL = None


def _pool():
    """A small shared thread pool for LanceDB queries that can run side by side."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidclip-query")
    return _POOL


def _key(row: dict) -> tuple:
    return row["video_id"], row["clip_id"], row["start_s"], row["end_s"]


def _group(rows: list[dict], k: int, cap: int) -> list[dict]:
    taken: dict[str, int] = {}
    out = []
    for row in rows:  # already best first
        vid = row["video_id"]
        if taken.get(vid, 0) >= cap:
            continue
        taken[vid] = taken.get(vid, 0) + 1
        out.append(row)
        if len(out) == k:
            break
    return out


def _frames_for(store: Store, rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """video_id -> (times (n,), vectors (n, D)) of the frames inside the rows' spans: one query."""
    if not rows:
        return {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        spans.setdefault(r["video_id"], []).append((float(r["start_s"]), float(r["end_s"])))
    terms = []
    for vid, parts in spans.items():
        ranges = " OR ".join(f"(t >= {lo!r} AND t <= {hi!r})" for lo, hi in _merge(parts))
        terms.append(f"(video_id = {sql_str(vid)} AND ({ranges}))")
    # The IN list lets LanceDB answer from the video_id BTREE index; the per-video time ranges then
    # filter those rows.  The OR of (video_id AND time) terms alone defeats the index (41 ms vs 7 ms
    # for 10 videos among 400k frames).
    ids = sql_in("video_id", sorted(spans))
    tbl = store.frames_where(f"{ids} AND ({' OR '.join(terms)})")
    out = {}
    if tbl.num_rows == 0:
        return out
    vids = np.asarray(tbl.column("video_id").to_pylist())
    times = tbl.column("t").to_numpy()
    vecs = vectors_of(tbl.column("vector"))  # (N, D)
    for vid in np.unique(vids):
        sel = np.flatnonzero(vids == vid)
        sel = sel[np.argsort(times[sel], kind="stable")]
        out[str(vid)] = (times[sel], vecs[sel])
    return out


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(a, b) for a, b in merged]


def _moment(frames: dict, row: dict, query: np.ndarray, margin: float):
    got = frames.get(row["video_id"])
    if got is None:
        return None
    times, vecs = got
    scores = vecs @ query  # (n,)
    return find_moment(times, scores, float(row["start_s"]), float(row["end_s"]), margin)


def _hit(row: dict, video: dict) -> Hit:
    clip_id = row["clip_id"]
    m = row.get("moment")
    start, end = float(row["start_s"]), float(row["end_s"])
    return Hit(
        video_id=row["video_id"],
        uri=video["uri"],
        start_s=m.start_s if m else start,
        end_s=m.end_s if m else end,
        score=round(float(row["score"]), 6),
        clip_id=None if clip_id is None or clip_id < 0 else int(clip_id),
        clip_start_s=start,
        clip_end_s=end,
        best_t=m.best_t if m else None,
        clip_score=round(float(row["clip_score"]), 6),
    )
