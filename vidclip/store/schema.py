"""The store's Arrow schemas, vector columns <-> numpy, and SQL quoting.  Imports nothing else
from the store, so every store module can use it."""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pyarrow as pa

OK, FAILED, PENDING = "ok", "failed", "pending"

VIDEO_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("rotation", pa.int32()),
        pa.field("decoder", pa.string()),
        pa.field("decoder_note", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("n_frames", pa.int32()),
        pa.field("n_clips", pa.int32()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        pa.field("metadata", pa.string()),  # user metadata from a manifest, a JSON object
        # Promoted from `metadata` at commit (see promote_metadata): real columns, filterable and
        # full-text searchable.  Other metadata keys stay inside the JSON and are not filterable.
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("tags", pa.string()),  # a list is joined with ", "
        pa.field("search_text", pa.string()),  # title + description + tags: the FTS index's column
    ]
)
FRAME_NORM = "norm"  # frames column: the image feature's norm before normalising
PROMOTED = ("title", "description", "tags")
FTS_COLUMN = "search_text"
SOURCE_SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("video_id", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("status", pa.string()),
    ]
)
META_SCHEMA = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string())])


def frame_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("t", pa.float64()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            # the image tower's feature norm before normalising: vector * norm is the raw feature
            # that CLIP4Clip-style modules are fed (absent in stores written before it was kept)
            pa.field(FRAME_NORM, pa.float32()),
        ]
    )


def segment_schema(dim: int) -> pa.Schema:
    """Schema shared by clips and whole-video vectors."""
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("clip_id", pa.int32()),
            pa.field("start_s", pa.float64()),
            pa.field("end_s", pa.float64()),
            pa.field("n_frames", pa.int32()),
            pa.field("temporal", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def vectors_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float -> Arrow fixed-size-list column, zero-copy where possible."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


SEARCH_COLUMNS = ["video_id", "clip_id", "start_s", "end_s"]  # what a vector search returns (each column taken costs ~0.3 ms at 1M rows)


def vectors_of(column) -> np.ndarray:
    """Arrow fixed-size-list column (N rows of D floats) -> (N, D) float32, in one bulk copy."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros((0, column.type.list_size), np.float32)
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(np.float32, copy=False)


def sql_str(value: str) -> str:
    """A SQL string literal with quotes escaped."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def promote_metadata(row: dict) -> dict:
    """A videos row with title / description / tags (and their FTS text) filled from its
    `metadata` JSON.  A list of tags is joined with ", "; non-string values are stringified."""
    try:
        meta = json.loads(row.get("metadata") or "{}")
    except (TypeError, ValueError):
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    out = dict(row)
    for key in PROMOTED:
        value = meta.get(key)
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value if v is not None)
        elif value is not None and not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, dict) else str(value)
        out[key] = value or None
    text = " ".join(out[k] for k in PROMOTED if out.get(k))
    out[FTS_COLUMN] = text or None
    return out
