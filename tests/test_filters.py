"""vidclip.store.filters: structured filters -> safe SQL, checked by running them on a real LanceDB table."""

from __future__ import annotations

from datetime import datetime, timezone

import lancedb
import pyarrow as pa
import pytest

from vidclip.errors import QueryError
from vidclip.store.filters import build_where, escape_like
from vidclip.store.schema import VIDEO_SCHEMA

ROWS = [
    {"video_id": "a", "uri": "/data/a/1.mp4", "codec": "h264", "duration_s": 12.0, "width": 640, "title": "x' OR 1=1 --",
     "ingested_at": datetime(2024, 1, 2, tzinfo=timezone.utc), "tags": "beach, sea"},
    {"video_id": "b", "uri": "/data/a_b/2.mp4", "codec": "vp9", "duration_s": 3.0, "width": 320, "title": "50% off",
     "ingested_at": datetime(2024, 6, 1, tzinfo=timezone.utc), "tags": None},
    {"video_id": "c", "uri": "/data/ab/3.mp4", "codec": "h264", "duration_s": 30.0, "width": 1920, "title": "plain",
     "ingested_at": datetime(2025, 1, 1, tzinfo=timezone.utc), "tags": "city"},
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    db = lancedb.connect(tmp_path_factory.mktemp("filters"))
    return db.create_table("videos", pa.Table.from_pylist(ROWS, schema=VIDEO_SCHEMA))


def ids(table, where):
    sql = build_where(where)
    return sorted(table.search().where(sql).select(["video_id"]).limit(None).to_arrow().column("video_id").to_pylist())


def test_operators(table):
    assert ids(table, {"codec": "h264"}) == ["a", "c"]
    assert ids(table, {"duration_s": (">=", 12)}) == ["a", "c"]
    assert ids(table, {"width": ("<", 641), "codec": ("!=", "vp9")}) == ["a"]
    assert ids(table, {"duration_s": [(">", 2), ("<", 20)]}) == ["a", "b"]
    assert ids(table, {"codec": ("in", ["vp9", "av1"])}) == ["b"]
    assert ids(table, {"codec": ("in", [])}) == []
    assert ids(table, {"tags": ("is_null", True)}) == ["b"]
    assert ids(table, {"ingested_at": (">", datetime(2024, 3, 1, tzinfo=timezone.utc))}) == ["b", "c"]
    assert ids(table, {"ingested_at": ("<=", "2024-01-02T00:00:00+00:00")}) == ["a"]
    # values as the CLI's --filter COLUMN=VALUE gives them (strings), typed by the column
    assert ids(table, {"width": "320"}) == ["b"] and ids(table, {"duration_s": (">", "12.5")}) == ["c"]
    assert ids(table, {"title": "50% off"}) == ["b"] and ids(table, {"title": "1984"}) == []


def test_like_wildcards_are_literal(table):
    assert ids(table, {"uri": ("prefix", "/data/a_")}) == ["b"]  # '_' is not "any character"
    assert ids(table, {"uri": ("prefix", "/data/a")}) == ["a", "b", "c"]
    assert ids(table, {"title": ("contains", "50%")}) == ["b"]
    assert ids(table, {"title": ("contains", "0% o")}) == ["b"]
    assert ids(table, {"title": ("contains", "%")}) == ["b"]
    assert escape_like("a%b_c\\") == "a\\%b\\_c\\\\"


def test_injection_never_widens(table):
    assert ids(table, {"title": "x' OR 1=1 --"}) == ["a"]
    assert ids(table, {"codec": "x' OR 1=1 --"}) == []
    assert ids(table, {"uri": ("prefix", "' OR 1=1 --")}) == []
    assert ids(table, {"title": ("contains", "') OR ('1'='1")}) == []


def test_validation():
    with pytest.raises(QueryError, match="'camera'"):
        build_where({"camera": "gopro"})
    with pytest.raises(QueryError, match="search_text"):
        build_where({"search_text": "x"})
    with pytest.raises(QueryError):
        build_where({"duration_s": (">=", "1; DROP TABLE videos")})
    with pytest.raises(QueryError):
        build_where({"width": 1.5})
    with pytest.raises(QueryError):
        build_where({"codec": 5})
    with pytest.raises(QueryError):
        build_where({"duration_s": ("prefix", "1")})
    with pytest.raises(QueryError):
        build_where({"codec": ("like", "h%")})
    with pytest.raises(QueryError):
        build_where({"duration_s": float("nan")})
    with pytest.raises(QueryError):
        build_where({"codec": None})
    assert build_where({}) is None and build_where(None) is None


def test_bad_raw_sql_is_a_query_error(tmp_path):
    """where_sql is trusted input, but a mistake in it is still one clear error, not a LanceDB traceback."""
    from vidclip.store.filters import combine_where
    from vidclip.store.store import Store

    store = Store.open(str(tmp_path / "db"), create=True)
    store.table("videos").add(pa.Table.from_pylist(ROWS, schema=VIDEO_SCHEMA))
    both = combine_where(store, {"codec": "h264"}, "width > 500")
    assert both == f"({build_where({'codec': 'h264'})}) AND (width > 500)"
    rows = store.table("videos").search().where(both).select(["video_id"]).limit(None).to_arrow()
    assert sorted(rows.column("video_id").to_pylist()) == ["a", "c"]  # h264 and wider than 500
    with pytest.raises(QueryError, match="invalid where_sql.*nosuchcol"):
        combine_where(store, None, "nosuchcol = 1")
    with pytest.raises(QueryError, match="invalid where_sql"):
        combine_where(store, None, "(((")
