"""Vector search over a store: query vector -> ranked hits with their moments."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from vidclip.errors import QueryError
from vidclip.store import Store

LEVELS = ("clip", "video")
MAX_K = 1000


@dataclass(frozen=True)
class Hit:
    """One result: a video and the span inside it that matched."""

    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float
    clip_id: int | None = None  # None for a whole-video hit

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


_HIT_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("score", pa.float64()),
        ("clip_id", pa.int32()),
    ]
)


def check_request(k: int, per_video: int, level: str) -> None:
    if level not in LEVELS:
        raise QueryError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    if not isinstance(per_video, int) or per_video < 1:
        raise QueryError(f"per_video must be an integer >= 1, got {per_video!r}")


def search_vector(store: Store, query: np.ndarray, k: int = 10, per_video: int = 1, level: str = "clip") -> Hits:
    """Top-k hits for a normalised query vector (D,).  At most `per_video` hits per video at the clip
    level; one per video at the video level.  Only fully committed ("ok") videos are returned."""
    check_request(k, per_video, level)
    if not store.has_vectors:
        return Hits()
    table = store.segments[level]
    cap = per_video if level == "clip" else 1
    total = store.count(table)
    fetch = min(total, max(4 * k * cap, 32))
    while True:
        rows = store.search_vectors(table, query, fetch).to_pylist()
        videos = store.videos_by_id({r["video_id"] for r in rows})
        hits = _group(rows, videos, k, cap)
        if len(hits) >= k or fetch >= total:
            return hits
        fetch = min(total, fetch * 4)


def _group(rows: list[dict], videos: dict[str, dict], k: int, cap: int) -> Hits:
    taken: dict[str, int] = {}
    hits = Hits()
    for row in rows:  # already best first
        vid = row["video_id"]
        video = videos.get(vid)
        if video is None or taken.get(vid, 0) >= cap:
            continue  # not committed (an interrupted ingest) or this video already has its hits
        taken[vid] = taken.get(vid, 0) + 1
        clip_id = row["clip_id"]
        hits.append(
            Hit(
                video_id=vid,
                uri=video["uri"],
                start_s=float(row["start_s"]),
                end_s=float(row["end_s"]),
                score=round(1.0 - float(row["_distance"]), 6),
                clip_id=None if clip_id is None or clip_id < 0 else int(clip_id),
            )
        )
        if len(hits) == k:
            break
    return hits
