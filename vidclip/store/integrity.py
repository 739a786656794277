"""Store integrity: find damage, say it one line per table or video, and heal what can be re-derived.

Damage is what a lost or cut-short Lance file leaves: a table that cannot be read, a table that is
gone, or a video whose frame, clip or video-vector rows are fewer than its `videos` row says.

- `check_store` reads every table in full (streamed) and counts each ok video's rows.
- `repair_store` rebuilds a damaged per-video table from the rows that can still be read (one
  video at a time, through the video_id index), then hands every video that lost rows to
  `Store.delete_videos`: it drops out of search, and the next ingest decodes it again from its
  file.  `meta`, `videos` and `sources` cannot be re-derived from the store: repair says so and
  changes nothing.
- `quick_check` compares row counts with what the ok videos say (table metadata and one column of
  `videos`), and the data and deletion files each per-video table's current version names (Lance's
  manifest, through pylance) with one listing of the table's folder: a file that is gone or shorter
  than the manifest recorded is damage, found without reading a row.  Cached per table version, so
  ingest and search refuse a damaged store in one line instead of stale counts, silently missing
  hits or a traceback from deep inside a query.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from vidclip.errors import StoreError
from vidclip.objectstore import ObjectStorage, filesystem, is_remote
from vidclip.store.store import Store
from vidclip.store.schema import OK, sql_str

log = logging.getLogger("vidclip")
_KEPT = ("meta", "videos", "sources")  # not derivable from anything else in the store


@dataclass(frozen=True)
class Finding:
    table: str
    problem: str
    video_id: str | None = None
    uri: str | None = None

    def line(self) -> str:
        where = f"table {self.table!r}"
        if self.video_id is not None:
            where += f", video {self.video_id} ({self.uri})"
        return f"{where}: {self.problem}"


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows read per readable table
    ok_videos: int = 0

    @property
    def damaged(self) -> bool:
        return bool(self.findings)

    def to_dict(self) -> dict:
        return {"damaged": self.damaged, "ok_videos": self.ok_videos, "rows": self.rows,
                "findings": [{"table": f.table, "video_id": f.video_id, "uri": f.uri, "problem": f.problem}
                             for f in self.findings]}


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("..." if len(text) > 160 else "")


def _per_video_tables(store: Store) -> list[str]:
    return store.segment_tables() if store.expects_vectors else []


def check_store(store: Store) -> CheckReport:
    """Read every table in full and compare each ok video's rows with its counts."""
    report = CheckReport()
    counts: dict[str, Counter] = {}
    unreadable: set[str] = set()
    missing: list[str] = []  # per-video tables that are gone (damage only if ok videos need them)
    for name in (*_KEPT, *_per_video_tables(store)):
        if not store.has_table(name):
            if name in _KEPT:
                report.findings.append(Finding(name, "the table is missing"))
            else:
                missing.append(name)
            unreadable.add(name)
            continue
        per_video = name not in _KEPT
        damage = _file_damage(store, name)
        if damage:
            report.findings.append(Finding(name, f"cannot be read: {damage}"))
            unreadable.add(name)
            continue
        seen: Counter = Counter()
        rows = 0
        try:
            for batch in store.table(name).search().limit(None).to_batches():  # every column, streamed
                rows += batch.num_rows
                if per_video:
                    seen.update(batch.column("video_id").to_pylist())
        except Exception as exc:  # noqa: BLE001 - any read failure of a table is damage to report
            report.findings.append(Finding(name, f"cannot be read ({_reason(exc)})"))
            unreadable.add(name)
            continue
        report.rows[name] = rows
        if per_video:
            counts[name] = seen
    if "videos" in unreadable:
        return report
    videos = _ok_videos(store)
    report.ok_videos = len(videos)
    if videos:
        report.findings += [Finding(name, "the table is missing") for name in missing]
    if not store.expects_vectors:
        return report
    seg = store.segments
    expected = {"frames": "n_frames", seg["clip"]: "n_clips", seg["video"]: None}
    for name, seen in counts.items():
        column = expected.get(name)
        for v in videos:
            want = 1 if column is None else int(v[column] or 0)
            have = seen.get(v["video_id"], 0)
            if have < want:
                report.findings.append(Finding(name, f"{have} row(s), {want} expected", v["video_id"], v["uri"]))
    return report


def _ok_videos(store: Store) -> list[dict]:
    return (store.table("videos").search().where(f"status = {sql_str(OK)}")
            .select(["video_id", "uri", "n_frames", "n_clips"]).limit(None).to_arrow().to_pylist())


def repair_store(store: Store, report: CheckReport) -> dict:
    """Rebuild damaged per-video tables from their readable rows and send every video that lost
    rows back to ingest.  Refuses (StoreError) when meta, videos or sources are damaged."""
    kept = sorted({f.table for f in report.findings if f.table in _KEPT})
    if kept:
        raise StoreError(f"{store.uri}: table(s) {', '.join(kept)} are damaged and cannot be re-derived from the "
                         "store: restore it from a backup, or ingest the videos again into a new store")
    broken = sorted({f.table for f in report.findings if f.video_id is None})
    lost = {f.video_id for f in report.findings if f.video_id is not None}
    with store.writing("repair"):
        videos = _ok_videos(store)
        for name in broken:
            lost |= _rebuild(store, name, [v["video_id"] for v in videos])
        lost = sorted(lost)
        store.delete_videos(lost)
    return {"rebuilt_tables": broken, "videos_to_reingest": len(lost)}


def _rebuild(store: Store, name: str, video_ids: list[str]) -> set[str]:
    """Replace table `name` by the rows of `video_ids` that can still be read (streamed, one video
    at a time); returns the videos whose rows could not be read (all of them when the table is gone)."""
    schema = store.table_schema(name)
    lost: set[str] = set()
    tbl = store.table(name) if store.has_table(name) else None

    def readable():
        for vid in video_ids:
            if tbl is None:
                lost.add(vid)
                continue
            try:
                yield tbl.search().where(f"video_id = {sql_str(vid)}").limit(None).to_arrow()
            except Exception:  # noqa: BLE001 - this video's rows are in a lost or cut-short file
                lost.add(vid)

    store.replace_table(name, schema, readable())
    log.warning("%s: rebuilt table %r from %d readable video(s); %d video(s) will be ingested again",
                store.uri, name, len(video_ids) - len(lost), len(lost))
    return lost


def quick_check(store: Store) -> None:
    """Refuse a store whose per-video tables hold fewer rows than its ok videos say (one line,
    pointing at `vidclip check --repair`).  Cheap: row counts from table metadata and two columns
    of `videos`; the answer is cached until a table changes."""
    if not store.expects_vectors:
        return
    seg = store.segments
    names = ("videos", "frames", seg["clip"], seg["video"])
    try:
        versions = tuple(store.table(n).version if store.has_table(n) else None for n in names)
        if store._quick_checked == versions:
            return
        ok = (store.table("videos").search().where(f"status = {sql_str(OK)}").select(["n_frames", "n_clips"])
              .limit(None).to_arrow())
        want = {"frames": sum(x or 0 for x in ok.column("n_frames").to_pylist()),
                seg["clip"]: sum(x or 0 for x in ok.column("n_clips").to_pylist()), seg["video"]: ok.num_rows}
        for name, n in want.items():
            if not store.has_table(name):
                if n:  # rows were committed to it: the table was lost (a store cut short before it is fine)
                    raise StoreError(_damaged(store, name, "is missing"))
                continue
            have = store.table(name).count_rows()
            if have < n:
                raise StoreError(_damaged(store, name, f"holds {have} row(s), but the ok videos say {n}"))
            damage = _file_damage(store, name)
            if damage:
                raise StoreError(_damaged(store, name, f"cannot be read: {damage}"))
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a table that cannot even be counted is damaged
        raise StoreError(f"{store.uri}: the store cannot be read ({_reason(exc)}): "
                         f"run 'vidclip check --db {store.uri}'") from None
    store._quick_checked = versions


def lost_files(store: Store, name: str) -> list[tuple[str, int | None, int | None]]:
    """(path inside the table, bytes recorded, bytes found or None when gone) for every data or
    deletion file that table `name`'s current version names and that is missing or cut short.
    Reads the manifest and lists the table's `data/` and `_deletions/` folders once each; no row
    is read."""
    import pyarrow.fs as pafs

    expected: dict[str, int | None] = {}
    for fragment in store.table(name).to_lance().get_fragments():
        for data in fragment.data_files():
            expected[f"data/{data.path}"] = data.file_size_bytes
        deletion = fragment.deletion_file()
        if deletion:
            expected[deletion] = None  # its size is not recorded: only its presence is checked
    if not expected:
        return []
    root = f"{store.uri.rstrip('/')}/{name}.lance"
    if is_remote(root):
        fs, root = filesystem(root, ObjectStorage.of(store.storage_options))
    else:
        fs = pafs.LocalFileSystem()
    found: dict[str, int | None] = {}
    for folder in sorted({path.split("/", 1)[0] for path in expected}):
        for info in fs.get_file_info(pafs.FileSelector(f"{root}/{folder}", allow_not_found=True)):
            found[f"{folder}/{info.base_name}"] = info.size
    lost = []
    for path, size in sorted(expected.items()):
        have = found.get(path)
        if have is None or (size is not None and have < size):
            lost.append((path, size, have))
    return lost


def _file_damage(store: Store, name: str) -> str | None:
    """What is wrong with table `name`'s files, in words, or None when every file is there."""
    try:
        lost = lost_files(store, name)
    except Exception as exc:  # noqa: BLE001 - a manifest that cannot be read is damage to report
        return f"its manifest cannot be read ({_reason(exc)})"
    if not lost:
        return None
    path, size, have = lost[0]
    what = f"{path} is missing" if have is None else f"{path} is cut short ({have} of {size} bytes)"
    more = f" (and {len(lost) - 1} more file(s))" if len(lost) > 1 else ""
    return f"{what}{more}"


def _damaged(store: Store, table: str, what: str) -> str:
    return (f"{store.uri}: table {table!r} {what}: the store is damaged; "
            f"run 'vidclip check --db {store.uri} --repair'")
