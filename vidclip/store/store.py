"""The store: the only module that talks to LanceDB.

Tables
- ``meta``     key/value JSON: schema version, model identity, sampling, temporal module, active tables.
- ``videos``   one row per video_id (content hash): facts, decoder, status (pending/ok/failed), error.
- ``sources``  one row per uri: which video_id it holds, and the size/mtime seen, so an unchanged
               file is recognised without hashing it again and one video can have several uris.
- ``frames``   every sampled frame: video_id, t (seconds, from pts), vector.
- ``clips``    clip vectors: video_id, clip_id, start_s, end_s, n_frames, temporal, vector.
- ``video_vectors``  one whole-video vector per video, same columns as clips.

Commit protocol (single committer; LanceDB commits are atomic per table, not across tables):
  1. upsert ``videos`` rows with status "pending" for the batch;
  2. append ``frames``, ``clips`` and ``video_vectors`` rows in bulk;
  3. upsert ``videos`` rows to "ok" (one atomic commit), then ``sources``.
Search only returns rows whose video is "ok", so a crash at any point leaves nothing half-visible;
`repair()` (run before every ingest) deletes the rows of videos left "pending".
"""

from __future__ import annotations

import json
import logging
import os
import contextlib
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pyarrow as pa

from vidclip.errors import QueryError, StoreError, StoreMismatchError
from vidclip.store.exact import ExactIndex, VideoDirectory
from vidclip.deferral import defer_namespace_client
from vidclip.store.eventloop import NOT_RUN, run_here
from vidclip.store.schema import (
    FAILED, FRAME_NORM, FTS_COLUMN, META_SCHEMA, OK, PENDING, SEARCH_COLUMNS, SOURCE_SCHEMA, VIDEO_SCHEMA,
    frame_schema, promote_metadata, segment_schema, sql_in, sql_str,
)

log = logging.getLogger("vidclip")
SCHEMA_VERSION = 1
_CREATED = frozenset({"meta", "videos", "sources"})  # the tables a new store is created with


@dataclass
class Batch:
    """Rows of several finished videos, committed together."""

    videos: list[dict]
    sources: list[dict]
    frames: list[pa.Table]
    clips: list[pa.Table]
    video_vectors: list[pa.Table]
    replaced: list[str]  # video_ids whose uri now holds other content: dropped once unreferenced

    @classmethod
    def empty(cls) -> "Batch":
        return cls([], [], [], [], [], [])

    def __len__(self) -> int:
        return len(self.videos) + len(self.sources) + len(self.replaced)

    @property
    def n_rows(self) -> int:
        return sum(t.num_rows for t in self.frames)


class Store:
    """A vidclip store: a LanceDB database URI (a local directory or an object-store URI)."""

    def __init__(self, db, uri: str):
        self._db = db
        self.uri = uri
        self._tables: dict[str, object] = {}
        self._session = None  # LanceDB's caches (index, metadata), shared by the sync and async connections
        self._async_db = None  # LanceDB's async API on the same session, for vector searches (_search_async)
        self._async_tables: dict[str, tuple[object, object]] = {}  # name -> (sync table it mirrors, async table)
        self._meta: dict | None = None
        self._meta_version: int | None = None
        self.exact = ExactIndex(SEARCH_COLUMNS)  # in-memory exact search (vidclip/store/exact.py)
        self.directory = VideoDirectory()  # in-memory video_id -> uri of ok videos (vidclip/store/exact.py)
        self._lease = None  # the writer lease, while this handle writes (vidclip/store/lease.py)
        self._quick_checked = None  # table versions the last integrity quick check passed at
        self.storage_options: dict = {}  # as opened: object-store inputs are read with them too
        self.pending = False  # opened with create=True where no store exists yet: created by its first writer

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str, create: bool = False, storage_options: dict | None = None) -> "Store":
        """Open the store at `uri`.  With create=True a missing store is *pending*: nothing is
        written until the first writer (`writing`) or the first table read creates it, so a command
        that fails before it (a bad input path, an unreadable bucket) leaves nothing behind."""
        from vidclip.objectstore import check_options, check_uri, describe_connection_failure

        uri = str(uri)
        check_uri(uri)
        check_options(uri, storage_options)
        local = "://" not in uri
        if local:
            if os.path.exists(uri) and not os.path.isdir(uri):
                raise StoreError(f"{uri}: not a directory, so not a vidclip store")
            if not os.path.isdir(uri) and not create:
                raise StoreError(f"{uri}: no vidclip store here (run 'vidclip ingest ... --db {uri}' first)")
            if local and os.path.isdir(uri) and not os.access(uri, os.R_OK | os.X_OK):
                raise StoreError(f"{uri}: store directory is not readable")
        if local and not os.path.isdir(uri):  # create=True: connected (and the folder made) by the first writer
            store = cls(None, uri)
            store.storage_options = dict(storage_options or {})
            store.pending = True
            return store
        store = cls(None, uri)
        store.storage_options = dict(storage_options or {})
        try:
            db = store._db = _connect(uri, storage_options, store.session)
            names = set(db.list_tables().tables)
        except (OSError, ValueError, RuntimeError) as exc:
            described = describe_connection_failure(exc, uri, storage_options)
            raise StoreError(described or f"{uri}: cannot open store ({' '.join(str(exc).split())[:200]})") from None
        if "meta" in names and store._unfinished(names):
            # Creation was interrupted (a kill, a full disk) before its final commit, the schema row:
            # the tables hold nothing, so the next writer clears them and creates the store again.
            if not create:
                raise StoreError(f"{uri}: an unfinished store (its creation was interrupted); "
                                 f"the next 'vidclip ingest ... --db {uri}' finishes it")
            log.warning("%s: finishing a store whose creation was interrupted", uri)
            for name in sorted(names & _CREATED):
                db.drop_table(name)
            store._tables.clear()
            names -= _CREATED
        if "meta" not in names:
            if not create:
                if not names:
                    raise StoreError(f"{uri}: no vidclip store here (run 'vidclip ingest ... --db {uri}' first)")
                raise StoreError(f"{uri}: not a vidclip store (no 'meta' table)")
            if names:
                raise StoreError(f"{uri}: holds other LanceDB tables but is not a vidclip store")
            store.pending = True
            return store
        store._check_version()
        return store

    def _create(self) -> None:
        """Write a pending store's tables; the schema row is the last creation commit."""
        try:
            if self._db is None:
                self._db = _connect(self.uri, self.storage_options, self.session)
            self._db.create_table("meta", schema=META_SCHEMA)
            self._db.create_table("videos", schema=VIDEO_SCHEMA)
            self._db.create_table("sources", schema=SOURCE_SCHEMA)
            self.pending = False
            # The schema row is the store's last creation commit: without it, the store is unfinished.
            self.set_meta({"schema_version": SCHEMA_VERSION})
        except (OSError, ValueError, RuntimeError) as exc:
            self.pending = True
            self._tables.clear()
            from vidclip.objectstore import describe_connection_failure

            described = describe_connection_failure(exc, self.uri, None)
            raise StoreError(described or f"{self.uri}: cannot create store ({' '.join(str(exc).split())[:200]}); "
                             "once the cause is fixed, the next ingest finishes it") from None
        self._check_version()

    def discard_if_unused(self) -> bool:
        """Drop every table of a store that holds no video and no source row (one whose creator
        failed before its first commit) and mark it pending again; True if it was dropped."""
        try:
            if self.pending or self.table("videos").count_rows() or self.table("sources").count_rows():
                return False
            for name in sorted(self._db.list_tables().tables):
                self._db.drop_table(name)
        except (OSError, ValueError, RuntimeError, StoreError) as exc:
            log.warning("%s: could not remove the empty store (%s)", self.uri, " ".join(str(exc).split())[:200])
            return False
        self._tables.clear()
        self._meta = None
        self.pending = True
        if "://" not in self.uri:
            with contextlib.suppress(OSError):
                os.rmdir(self.uri)  # only if nothing else is in it
        return True

    def _check_version(self) -> None:
        version = self.meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.uri}: store schema version {version} is not supported (expected {SCHEMA_VERSION})")
        self._add_missing_video_columns()

    def _unfinished(self, names: set) -> bool:
        """True when the store's creation never reached its schema row and nothing was stored:
        meta holds no schema row (or cannot be read), and videos and sources hold no rows."""
        try:
            if "schema_version" in self.meta:
                return False
        except Exception:  # noqa: BLE001 - a meta table cut short at creation cannot be opened
            pass
        for name in ("videos", "sources"):
            if name in names:
                try:
                    if self._db.open_table(name).count_rows() > 0:
                        return False
                except Exception:  # noqa: BLE001 - cut short at creation: holds nothing either
                    continue
        return not (names - _CREATED)  # no vector table either: no ingest ever ran here

    def _add_missing_video_columns(self) -> None:
        """A store made before the promoted metadata columns existed gains them (as nulls)."""
        tbl = self.table("videos")
        missing = [f for f in VIDEO_SCHEMA if f.name not in tbl.schema.names]
        if missing:
            tbl.add_columns(missing)

    @property
    def session(self):
        """LanceDB's session (index and metadata caches) of this store's connections."""
        if self._session is None:
            _before_lancedb()
            import lancedb

            self._session = lancedb.Session()
        return self._session

    def table(self, name: str):
        tbl = self._tables.get(name)
        if tbl is None:
            if self.pending:
                self._create()
            try:
                tbl = self._db.open_table(name)
            except (ValueError, FileNotFoundError) as exc:
                raise StoreError(f"{self.uri}: table {name!r} is missing ({exc})") from None
            self._tables[name] = tbl
        return tbl

    def has_table(self, name: str) -> bool:
        if self._db is None:  # a pending local store: nothing exists yet
            return False
        return name in set(self._db.list_tables().tables)

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        """The store's settings; re-read whenever another process (e.g. a reindex) committed to them.
        A pending store has none yet."""
        if self.pending:
            return {}
        tbl = self.table("meta")
        version = tbl.version
        if self._meta is None or version != self._meta_version:
            rows = tbl.to_arrow().to_pylist()
            self._meta = {r["key"]: json.loads(r["value"]) for r in rows}
            self._meta_version = version
        return self._meta

    def set_meta(self, values: dict) -> None:
        rows = pa.table(
            {"key": list(values), "value": [json.dumps(v, sort_keys=True) for v in values.values()]},
            schema=META_SCHEMA,
        )
        tbl = self.table("meta")
        tbl.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        self._meta = None

    def check_settings(self, expected: dict, record: bool = True) -> None:
        """Refuse to use the store with settings other than those it was built with.

        `expected` maps meta keys ("model", "sampling", "temporal") to the dict the caller would use.
        Keys absent from the store are recorded (first ingest); present ones must be equal.
        """
        meta = self.meta
        missing = {k: v for k, v in expected.items() if k not in meta}
        for key, want in expected.items():
            have = meta.get(key)
            if have is not None and have != want:
                raise StoreMismatchError(f"{self.uri}: {describe_mismatch(key, have, want)}")
        if missing and record:
            self.set_meta(missing)

    # -- table lifecycle ----------------------------------------------------------------------------
    # The clip and whole-video vectors live in the tables named by meta["segments"]; a reindex
    # writes new tables and switches this one meta row, so readers move over atomically.
    DEFAULT_SEGMENTS = {"clip": "clips", "video": "video_vectors"}

    @property
    def segments(self) -> dict[str, str]:
        """Active segment tables: {"clip": name, "video": name}."""
        return dict(self.meta.get("segments") or self.DEFAULT_SEGMENTS)

    def segment_tables(self) -> list[str]:
        """Every table holding per-video rows (frames and the active segment tables)."""
        seg = self.segments
        return ["frames", seg["clip"], seg["video"]]

    @property
    def keeps_frame_norms(self) -> bool:
        """Whether the frames table stores each frame's feature norm (stores written before it was
        kept do not, and cannot feed modules that take raw features)."""
        return self.has_table("frames") and FRAME_NORM in self.table("frames").schema.names

    def ensure_vector_tables(self, dim: int) -> None:
        if self.pending:  # a write: a pending store is created by it
            self._create()
        existing = set(self._db.list_tables().tables)
        seg = self.segments
        for name, schema in (
            ("frames", frame_schema(dim)),
            (seg["clip"], segment_schema(dim)),
            (seg["video"], segment_schema(dim)),
        ):
            if name not in existing:
                self._db.create_table(name, schema=schema)
                self.index_lookups(name)

    def create_table(self, name: str, schema: pa.Schema, data: pa.Table | None = None):
        """Create (or replace) a table: used by reindex to build new segment tables."""
        if self.pending:
            self._create()
        tbl = self._db.create_table(name, schema=schema, data=data, mode="overwrite" if self.has_table(name) else "create")
        self._tables[name] = tbl
        self.index_lookups(name)
        return tbl

    # Columns every per-video lookup, delete and moments query filters on.  LanceDB's BTREE scalar
    # index turns those scans into index lookups (frames for 10 videos out of 400k rows: 24 ms -> 6 ms,
    # benchmarks/query_cpu.json); rows committed since the last optimize() are scanned, so still found.
    LOOKUP_COLUMNS = {"videos": ("video_id",), "sources": ("video_id", "uri")}
    SEGMENT_LOOKUP_COLUMNS = ("video_id",)

    def index_lookups(self, name: str) -> None:
        """Create the missing BTREE lookup indexes on table `name` (works on an empty table)."""
        from lancedb.index import BTree

        tbl = self.table(name)
        have = {tuple(ix.columns) for ix in tbl.list_indices()}
        for column in self.LOOKUP_COLUMNS.get(name, self.SEGMENT_LOOKUP_COLUMNS):
            if (column,) not in have and column in tbl.schema.names:
                tbl.create_index(column, config=BTree())

    def ensure_lookup_indexes(self) -> None:
        """Give a store made before lookup indexes existed its indexes."""
        for name in ["videos", "sources", *self.segment_tables()]:
            if self.has_table(name):
                self.index_lookups(name)

    @property
    def expects_vectors(self) -> bool:
        """True once an ingest recorded the model: frames, clips and video vectors must exist."""
        return self.meta.get("model") is not None

    def table_schema(self, name: str) -> pa.Schema:
        """A per-video table's schema: from its manifest, or rebuilt from the model's dimension."""
        if self.has_table(name):
            try:
                return self.table(name).schema
            except Exception:  # noqa: BLE001 - an unreadable manifest: rebuild the schema below
                pass
        dim = int(self.meta["model"]["dim"])
        return frame_schema(dim) if name == "frames" else segment_schema(dim)

    def replace_table(self, name: str, schema: pa.Schema, parts) -> None:
        """Table `name` becomes exactly the rows of `parts` (Arrow tables, streamed), one commit."""
        def batches():
            for part in parts:
                yield from part.cast(schema).to_batches()

        self._tables.pop(name, None)
        self._db.create_table(name, data=pa.RecordBatchReader.from_batches(schema, batches()), schema=schema,
                              mode="overwrite")
        self.index_lookups(name)

    def drop_table(self, name: str) -> None:
        if self.has_table(name):
            self._db.drop_table(name)
        self._tables.pop(name, None)

    @property
    def has_vectors(self) -> bool:
        return self.has_table(self.segments["clip"])

    # -- writing ------------------------------------------------------------------------------------
    @contextmanager
    def writing(self, what: str, wait_s: float = 0.0):
        """Hold the store's writer lease for the block (re-entrant on this handle): a second
        writer in any process, on any machine, is refused with one line (StoreBusyError)."""
        if self._lease is not None:
            yield self
            return
        from vidclip.store.lease import WriterLease

        if self.pending:
            self._create()

        lease = WriterLease(self._db, self.uri, what).acquire(wait_s)
        self._lease = lease
        try:
            yield self
        finally:
            self._lease = None
            lease.release()

    def confirm_writer(self) -> None:
        """Before a commit: this handle still holds the writer lease (when it holds one)."""
        if self._lease is not None:
            self._lease.confirm()

    def commit(self, batch: Batch) -> None:
        """Write a batch of finished videos with the pending -> data -> ok protocol."""
        self.confirm_writer()
        ok_rows = [v for v in batch.videos if v["status"] == OK]
        if ok_rows:
            pending = [dict(promote_metadata(v), status=PENDING) for v in ok_rows]
            self._upsert("videos", "video_id", pending, VIDEO_SCHEMA)
            seg = self.segments
            for name, parts in (("frames", batch.frames), (seg["clip"], batch.clips), (seg["video"], batch.video_vectors)):
                if parts:
                    data = pa.concat_tables(parts)
                    if name == "frames" and not self.keeps_frame_norms:
                        data = data.drop_columns([FRAME_NORM])  # a store from before norms were kept
                    self.table(name).add(data)
        if batch.videos:
            self._upsert("videos", "video_id", [promote_metadata(v) for v in batch.videos], VIDEO_SCHEMA)
        if batch.sources:
            self._upsert("sources", "uri", batch.sources, SOURCE_SCHEMA)
        if batch.replaced:
            self.drop_unreferenced(batch.replaced)
        relinks = [s["video_id"] for s in batch.sources if s.get("status") == OK and s["video_id"] not in {v["video_id"] for v in batch.videos}]
        if relinks:
            self.relink(relinks)

    def drop_unreferenced(self, video_ids: Iterable[str]) -> list[str]:
        """Delete videos no source uri points to any more (their file changed or vanished)."""
        ids = sorted(set(video_ids))
        if not ids:
            return []
        referenced = set()
        for lo in range(0, len(ids), 1000):
            referenced |= set(self._column_values("sources", "video_id", sql_in("video_id", ids[lo : lo + 1000])))
        gone = [v for v in ids if v not in referenced]
        self.delete_videos(gone)
        return gone

    def prune(self) -> dict:
        """Forget uris whose local file is gone, then delete videos no uri points to."""
        with self.writing("prune"):
            return self._prune()

    def _prune(self) -> dict:
        gone = [u for u in self.sources() if "://" not in u and not os.path.exists(u)]
        ids = set()
        for lo in range(0, len(gone), 1000):
            part = gone[lo : lo + 1000]
            ids |= set(self._column_values("sources", "video_id", sql_in("uri", part)))
            self.table("sources").delete(sql_in("uri", part))
        dropped = set(self.drop_unreferenced(ids))
        self.relink([v for v in ids if v not in dropped])
        return {"removed_uris": len(gone), "removed_videos": len(dropped)}

    def relink(self, video_ids: Iterable[str]) -> None:
        """Point videos.uri at a file that still exists when the recorded one is gone (a rename)."""
        ids = sorted(set(video_ids))
        if not ids:
            return
        current = self.videos_by_id(ids, status=None)
        uris = self.table("sources").search().where(sql_in("video_id", ids)).select(["uri", "video_id"]).limit(None).to_arrow().to_pylist()
        for vid, row in current.items():
            if row["uri"] and ("://" in row["uri"] or os.path.exists(row["uri"])):
                continue
            alive = sorted(s["uri"] for s in uris if s["video_id"] == vid and os.path.exists(s["uri"]))
            if alive:
                self.table("videos").update(where=f"video_id = {sql_str(vid)}", values={"uri": alive[0]})

    def delete_videos(self, video_ids: list[str]) -> None:
        """Hide the videos first (status pending: invisible to search, and finished by repair()
        if this is interrupted), then delete their rows."""
        for lo in range(0, len(video_ids), 1000):
            where = sql_in("video_id", video_ids[lo : lo + 1000])
            self.table("videos").update(where=where, values={"status": PENDING})
        self.repair()

    def _upsert(self, name: str, key: str, rows: list[dict], schema: pa.Schema) -> None:
        # Last row per key wins (a batch may mention one video twice, e.g. a duplicate file).
        unique = list({r[key]: r for r in rows}.values())
        data = pa.Table.from_pylist(unique, schema=schema)
        self.table(name).merge_insert(key).when_matched_update_all().when_not_matched_insert_all().execute(data)

    def repair(self) -> int:
        """Delete rows of videos a crashed ingest left pending.  Returns how many videos were repaired."""
        videos = self.table("videos")
        pending = self._column_values("videos", "video_id", f"status = {sql_str(PENDING)}")
        if not pending:
            return 0
        for lo in range(0, len(pending), 1000):
            part = pending[lo : lo + 1000]
            where = sql_in("video_id", part)
            for name in self.segment_tables():
                if self.has_table(name):
                    self.table(name).delete(where)
            videos.delete(where + f" AND status = {sql_str(PENDING)}")
        return len(pending)

    def optimize(self) -> None:
        """Compact the small fragments many commits leave behind and fold the new rows into the
        indexes (LanceDB's Table.optimize): run at the end of every ingest that committed rows."""
        for name in ["videos", "sources", *self.segment_tables()]:
            if self.has_table(name):
                self.table(name).optimize()

    # -- reading ------------------------------------------------------------------------------------
    def _column_values(self, table: str, column: str, where: str | None = None) -> list:
        tbl = self.table(table)
        query = tbl.search().select([column]).limit(None)
        if where:
            query = query.where(where)
        return query.to_arrow().column(column).to_pylist()

    def sources(self) -> dict[str, dict]:
        """uri -> source row."""
        rows = self.table("sources").to_arrow().to_pylist()
        return {r["uri"]: r for r in rows}

    def sources_of(self, video_id: str) -> list[dict]:
        """The source rows (uri, size, mtime_ns, status) recorded for one video: every path it was
        ingested from."""
        return self.table("sources").search().where(f"video_id = {sql_str(video_id)}").limit(None).to_arrow().to_pylist()

    def video_status(self) -> dict[str, str]:
        """video_id -> status."""
        tbl = self.table("videos").search().select(["video_id", "status"]).limit(None).to_arrow()
        return dict(zip(tbl.column("video_id").to_pylist(), tbl.column("status").to_pylist()))

    def video_uris(self, video_ids: Iterable[str], where: str | None = None) -> dict[str, dict]:
        """video_id -> {"video_id", "uri"} (at least) of the ok videos among `video_ids` that match
        the trusted SQL `where`: from memory when there is no filter (self.directory)."""
        if where is None:
            found = self.directory.lookup(self.table("videos"), set(video_ids), OK)
            if found is not None:
                return found
        return self.videos_by_id(video_ids, where=where)

    def videos_by_id(self, video_ids: Iterable[str], status: str | None = OK, where: str | None = None) -> dict[str, dict]:
        """video_id -> videos row, for those of `status` (and matching the trusted SQL `where`)."""
        ids = sorted(set(video_ids))
        out: dict[str, dict] = {}
        for lo in range(0, len(ids), 1000):
            where_ = sql_in("video_id", ids[lo : lo + 1000])
            if status:
                where_ += f" AND status = {sql_str(status)}"
            if where:
                where_ += f" AND ({where})"
            for row in self.table("videos").search().where(where_).limit(None).to_arrow().to_pylist():
                out[row["video_id"]] = row
        return out

    def check_where(self, sql: str) -> None:
        """Refuse a raw SQL filter LanceDB cannot run on the videos table, with one line."""
        try:
            self.table("videos").search().where(sql).select(["video_id"]).limit(1).to_arrow()
        except (ValueError, RuntimeError) as exc:
            raise QueryError(f"invalid where_sql {sql!r}: {' '.join(str(exc).split())[:200]}") from None

    def video_batches(self, columns: list[str], where: str | None = None, limit: int | None = None,
                      batch_size: int = 4096) -> Iterable[pa.RecordBatch]:
        """The videos table's `columns` for the (at most `limit`) rows `where` selects, in record
        batches (streamed: a library of millions of videos is never held whole)."""
        if not self.has_table("videos"):
            return
        query = self.table("videos").search().select(columns).limit(limit)
        if where:
            query = query.where(where)
        yield from query.to_batches(batch_size)

    def failure_reasons(self) -> dict[str, int]:
        """How many failed videos per reason (the error with the file's own details left out)."""
        from vidclip.store.reasons import reason_of

        counts = Counter(reason_of(error) for batch in self.video_batches(["error"], f"status = {sql_str(FAILED)}")
                         for error in batch.column("error").to_pylist())
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def failures(self) -> list[dict]:
        where = f"status = {sql_str(FAILED)}"
        return self.table("videos").search().where(where).select(["uri", "error"]).limit(None).to_arrow().to_pylist()

    def count(self, table: str, where: str | None = None) -> int:
        if not self.has_table(table):
            return 0
        return int(self.table(table).count_rows(where))

    def search_vectors(
        self,
        table: str,
        vector: np.ndarray,
        limit: int,
        video_ids: set[str] | None = None,
        *,
        nprobes: int | None = None,
        refine_factor: int | None = None,
        ef: int | None = None,
    ) -> pa.Table:
        """Nearest rows by dot product (vectors are normalised, so score = cosine = 1 - _distance),
        restricted to `video_ids` when given.

        Without ANN settings the search is exact: from the in-memory copy (`self.exact`) when the
        table fits its budget, else LanceDB's flat scan.  With `nprobes` / `refine_factor` (an IVF
        index exists, see vidclip/store/index.py) LanceDB's index answers; `ef` is an HNSW index's
        search breadth, raised to the limit x refine_factor candidates when that is larger (Lance
        refuses a smaller one)."""
        vector = np.asarray(vector, dtype=np.float32)
        tbl = self.table(table)
        if nprobes is None and refine_factor is None:
            found = self.exact.search(tbl, vector, limit, video_ids)
            if found is not None:
                return found
        where = sql_in("video_id", sorted(video_ids)) if video_ids is not None else None
        found = run_here(lambda: self._search_async(table, tbl, vector, limit, where, nprobes, refine_factor, ef))
        if found is not NOT_RUN:
            return found
        # this thread runs an event loop already (a notebook): LanceDB's synchronous API
        query = tbl.search(vector).distance_type("dot").limit(limit)
        if where is not None:
            query = query.where(where, prefilter=True)
        return _ann(query, limit, nprobes, refine_factor, ef).select([*SEARCH_COLUMNS, "_distance"]).to_arrow()

    async def _search_async(self, name: str, tbl, vector: np.ndarray, limit: int, where: str | None,
                            nprobes: int | None, refine_factor: int | None, ef: int | None) -> pa.Table:
        """search_vectors through LanceDB's async API (vidclip/store/eventloop.py: fewer thread
        hand-overs per search), on a connection sharing this store's session and so its caches."""
        mirrored, atbl = self._async_tables.get(name, (None, None))
        if mirrored is not tbl:  # first use, or the sync table was reopened (a reindex, a new store)
            if self._async_db is None:
                self._async_db = await _connect_async(self.uri, self.storage_options, self.session)
            atbl = await self._async_db.open_table(name)
            self._async_tables[name] = (tbl, atbl)
        return await nearest(atbl, vector, limit, [*SEARCH_COLUMNS, "_distance"], where, nprobes, refine_factor, ef)

    def frames_where(self, where: str) -> pa.Table:
        """video_id, t, vector of the stored frames matching a (built, trusted) SQL predicate."""
        return self.table("frames").search().where(where).select(["video_id", "t", "vector"]).limit(None).to_arrow()

    def video_ids_where(self, where: str, limit: int | None = None) -> list[str]:
        """video_ids of ok videos matching a (trusted, built) SQL filter over the videos table."""
        query = self.table("videos").search().where(f"({where}) AND status = {sql_str(OK)}").select(["video_id"]).limit(limit)
        return query.to_arrow().column("video_id").to_pylist()

    # -- full-text search ---------------------------------------------------------------------------
    def fts_search(self, text: str, limit: int, where: str | None = None) -> pa.Table:
        """video_id, _score of ok videos whose title/description/tags match `text` (BM25, LanceDB's
        native FTS index over `search_text`, built on first use)."""
        tbl = self.table("videos")
        if FTS_COLUMN not in tbl.schema.names:
            return pa.table({"video_id": pa.array([], pa.string()), "_score": pa.array([], pa.float32())})
        self._ensure_fts_index(tbl)
        cond = f"status = {sql_str(OK)}" + (f" AND ({where})" if where else "")
        query = tbl.search(text, query_type="fts").where(cond).select(["video_id", "_score"]).limit(limit)
        return query.to_arrow()

    def _ensure_fts_index(self, tbl) -> None:
        """Build the FTS index on first use.  Rows committed after it are still matched (LanceDB
        scans a text index's unindexed rows) and the optimize() after each ingest folds them in."""
        if not any(FTS_COLUMN in idx.columns for idx in tbl.list_indices()):
            from lancedb.index import FTS

            from vidclip.store.storage import describe_storage_failure

            try:
                tbl.create_index(FTS_COLUMN, config=FTS(), replace=True)
            except (OSError, RuntimeError, ValueError) as exc:
                described = describe_storage_failure(exc, self.uri)
                if described is None:
                    raise
                raise StoreError(f"{described} (the first hybrid search builds the store's full-text index: run it "
                                 "once where the store is writable, or search without --hybrid)") from None


def _before_lancedb() -> None:
    """What must happen before lancedb is first imported: its thread count, and its REST namespace
    client deferred (vidclip/deferral.py)."""
    _lance_threads()
    defer_namespace_client()


def _lance_threads() -> None:
    """Lance computes (index builds, vector search) on cores - 2 threads, and on one when a machine
    has 2 or fewer cores (lance-core's calculate_num_compute_intensive_cpus): an index build on a
    2-core machine would use half of it.  Up to 4 cores, use them all unless LANCE_CPU_THREADS says
    otherwise (read once, when Lance starts its pool; the hard-data ANN numbers in
    docs/performance.md were measured this way)."""
    if "LANCE_CPU_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores <= 4:
        os.environ["LANCE_CPU_THREADS"] = str(cores)


def _connect(uri: str, storage_options: dict | None, session):
    _before_lancedb()
    import lancedb

    # Strong consistency: every read sees the latest commit, from this handle or any other
    # (a search process must see videos another process just ingested).
    return lancedb.connect(uri, storage_options=storage_options or None, read_consistency_interval=timedelta(0),
                           session=session)


async def _connect_async(uri: str, storage_options: dict | None, session):
    import lancedb

    return await lancedb.connect_async(uri, storage_options=storage_options or None,
                                       read_consistency_interval=timedelta(0), session=session)


async def nearest(atbl, vector: np.ndarray, limit: int, columns: list[str], where: str | None = None,
                  nprobes: int | None = None, refine_factor: int | None = None, ef: int | None = None) -> pa.Table:
    """`columns` of the `limit` rows nearest `vector` by dot product in a LanceDB AsyncTable, with an
    index's search settings (benchmarks/ann.py times searches through this too)."""
    query = atbl.query().nearest_to(vector).distance_type("dot").limit(limit)
    if where is not None:
        query = query.where(where)  # the async API prefilters by default
    return await _ann(query, limit, nprobes, refine_factor, ef).select(columns).to_arrow()


def _ann(query, limit: int, nprobes: int | None, refine_factor: int | None, ef: int | None):
    """A LanceDB vector query (sync or async builder) with an index's search settings."""
    if nprobes is not None:
        query = query.nprobes(int(nprobes))
    if refine_factor is not None:
        query = query.refine_factor(int(refine_factor))
    if ef is not None:
        query = query.ef(max(int(ef), limit * int(refine_factor or 1)))
    return query


def describe_mismatch(key: str, have: dict, want: dict) -> str:
    if isinstance(have, dict) and isinstance(want, dict):
        diffs = [f"{k}={have.get(k)!r} (requested {want.get(k)!r})" for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
        detail = ", ".join(diffs)
    else:
        detail = f"{have!r} (requested {want!r})"
    return f"store was built with a different {key}: {detail}; use the store's settings or a new --db"
