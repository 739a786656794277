"""Structured filters over the `videos` table -> a safe SQL predicate.

    where={"codec": "h264",                          # equality
           "duration_s": (">=", 10),                 # comparison: = != < <= > >=
           "uri": ("prefix", "/data/a/"),            # LIKE 'prefix%' with % and _ escaped
           "tags": ("contains", "beach"),            # substring (LIKE '%...%', escaped)
           "codec": ("in", ["h264", "vp9"]),         # membership
           "title": ("is_null", True),               # IS NULL / IS NOT NULL (False)
           "ingested_at": (">", datetime(...))}      # timestamps compared as UTC

Several conditions on one column: a list of tuples, e.g. {"duration_s": [(">=", 2), ("<", 10)]}.
All conditions are ANDed.  Column names are checked against the videos schema (an unknown one is a
QueryError naming it); values are typed by the column (float()/int() for numbers, isoformat for
timestamps, doubled quotes for strings), so a value can never change the shape of the predicate.

Filterable columns are the real columns of `videos`, including the promoted metadata columns
`title`, `description` and `tags`.  Other keys of a manifest's metadata live inside the JSON
`metadata` column and are NOT filterable by name (use `where_sql=` with trusted input for that).

`where_sql` (in Library.search) is raw SQL, passed through unchanged: trusted input only.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pyarrow as pa

from vidclip.errors import QueryError
from vidclip.store.schema import VIDEO_SCHEMA, sql_str

COMPARISONS = ("=", "==", "!=", "<>", "<", "<=", ">", ">=")
OPERATORS = COMPARISONS + ("prefix", "contains", "in", "not_in", "is_null")
LIKE_ESCAPE = "\\"
# Internal bookkeeping columns a user has no reason to filter on (and vectors never live here).
HIDDEN = frozenset({"search_text"})


def filterable_columns(schema: pa.Schema = VIDEO_SCHEMA) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in schema if f.name not in HIDDEN}


def build_where(where: dict | None, schema: pa.Schema = VIDEO_SCHEMA) -> str | None:
    """A structured filter (see module doc) -> SQL predicate over `videos`, or None when empty."""
    if not where:
        return None
    if not isinstance(where, dict):
        raise QueryError(f"where must be a dict of column -> value or (op, value), got {type(where).__name__}")
    columns = filterable_columns(schema)
    parts = []
    for column, spec in where.items():
        if column not in columns:
            known = ", ".join(sorted(columns))
            raise QueryError(f"unknown filter column {column!r} (filterable: {known}; metadata JSON keys are not filterable)")
        conditions = spec if isinstance(spec, list) and spec and all(isinstance(c, tuple) for c in spec) else [spec]
        for cond in conditions:
            parts.append(_condition(column, columns[column], cond))
    return " AND ".join(f"({p})" for p in parts)


def _condition(column: str, dtype: pa.DataType, cond) -> str:
    if isinstance(cond, tuple):
        if len(cond) != 2 or not isinstance(cond[0], str):
            raise QueryError(f"filter on {column!r}: expected (operator, value), got {cond!r}")
        op, value = cond[0].strip().lower(), cond[1]
    else:
        op, value = "=", cond
    if op not in OPERATORS:
        raise QueryError(f"filter on {column!r}: unknown operator {op!r} (one of {', '.join(OPERATORS)})")
    if op == "is_null":
        return f"{column} IS NULL" if value else f"{column} IS NOT NULL"
    if op in ("in", "not_in"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise QueryError(f"filter on {column!r}: '{op}' needs a list of values")
        values = [_literal(column, dtype, v) for v in value]
        if not values:
            return "FALSE" if op == "in" else "TRUE"
        return f"{column} {'IN' if op == 'in' else 'NOT IN'} ({', '.join(values)})"
    if op in ("prefix", "contains"):
        if not pa.types.is_string(dtype):
            raise QueryError(f"filter on {column!r}: '{op}' applies to text columns only")
        pattern = escape_like(_text(column, value))
        pattern = pattern + "%" if op == "prefix" else "%" + pattern + "%"
        return f"{column} LIKE {sql_str(pattern)} ESCAPE {sql_str(LIKE_ESCAPE)}"
    if value is None:
        raise QueryError(f"filter on {column!r}: None is not comparable; use ('is_null', True)")
    op = {"==": "=", "<>": "!="}.get(op, op)
    return f"{column} {op} {_literal(column, dtype, value)}"


def escape_like(text: str) -> str:
    """Escape LIKE's wildcards (% and _) and the escape character itself."""
    return text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")


def _text(column: str, value) -> str:
    if not isinstance(value, str):
        raise QueryError(f"filter on {column!r}: expected a string, got {type(value).__name__}")
    return value


def _literal(column: str, dtype: pa.DataType, value) -> str:
    """A typed SQL literal for `value` compared with `column`."""
    try:
        if pa.types.is_string(dtype):
            return sql_str(_text(column, value))
        if pa.types.is_integer(dtype):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return str(int(value))
        if pa.types.is_floating(dtype):
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(value)
            return repr(number)
        if pa.types.is_timestamp(dtype):
            return f"TIMESTAMP {sql_str(_timestamp(value))}"
    except (TypeError, ValueError):
        raise QueryError(f"filter on {column!r}: {value!r} is not a valid {dtype} value") from None
    raise QueryError(f"filter on {column!r}: columns of type {dtype} are not filterable")


def _timestamp(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)  # stored as UTC
    return value.isoformat(sep=" ")


def combine_where(store, where: dict | None, where_sql: str | None) -> str | None:
    """The videos predicate for a structured `where` and a trusted raw `where_sql`, ANDed.  The raw
    SQL is tried once against the store here, so a bad one is a QueryError, not a LanceDB error."""
    if where_sql is not None:
        store.check_where(where_sql)
    return " AND ".join(f"({p})" for p in (build_where(where), where_sql) if p) or None
