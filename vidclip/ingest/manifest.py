"""Turn user inputs (files, folders) into one entry per video file, and derive content ids."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
from dataclasses import dataclass
from typing import Iterator

from vidclip.errors import InputError
from vidclip.objectstore import ObjectStorage, check_uri, is_remote

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .wmv .flv .mpg .mpeg .m2ts .mts .ts .3gp .3g2 .ogv .vob .mxf .f4v .divx .y4m".split()
)
HASH_CHUNK = 1 << 20
STAT_BATCH = 1000  # manifest rows stat'ed at once (object stores: one concurrent batch of requests)


MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True)
class Entry:
    """One input file as listed: where it is, what it looked like then, and the user's metadata
    for it (a JSON object string, from a manifest's extra columns)."""

    uri: str
    size: int
    mtime_ns: int
    metadata: str | None = None


def list_inputs(paths: list[str], extensions: frozenset[str] = VIDEO_EXTENSIONS,
                storage: ObjectStorage = ObjectStorage()) -> Iterator[Entry]:
    """Yield an entry per video file.  A folder (or an object-store prefix) is searched recursively
    for video extensions; a file named explicitly is taken whatever its extension; a .csv / .jsonl /
    .parquet file is a manifest.  Missing paths and folders without videos are refused before
    anything is ingested.  Object-store URIs (s3://, gs://, az://) are read with `storage`."""
    if not paths:
        raise InputError("no input path given")
    for raw in paths:
        check_uri(raw)
        if is_remote(raw):
            continue  # listed (and refused if it names nothing) below, before any entry is used
        if not os.path.exists(raw):
            raise InputError(f"{raw}: no such file or directory")
        if os.path.isdir(raw) and not any(True for _ in _walk(raw, extensions)):
            raise InputError(f"{raw}: folder contains no video files ({', '.join(sorted(extensions)[:6])}, ...)")
    seen: set[str] = set()
    for raw in paths:
        for entry in _entries(raw, extensions, storage):
            if entry.uri not in seen:
                seen.add(entry.uri)
                yield entry


def _entries(raw: str, extensions: frozenset[str], storage: ObjectStorage) -> Iterator[Entry]:
    if raw.lower().endswith(MANIFEST_EXTENSIONS):
        rows = read_manifest(raw, storage)
        while batch := list(itertools.islice(rows, STAT_BATCH)):
            yield from _stat_rows(batch, storage)
        return
    if is_remote(raw):
        from vidclip.ingest.remote import list_objects

        for uri, size, mtime_ns in list_objects(raw, storage, extensions):
            yield Entry(uri, size, mtime_ns)
        return
    files = _walk(raw, extensions) if os.path.isdir(raw) else iter([raw])
    yield from _stat_rows([(path, None) for path in files], storage)


def _stat_rows(rows: list[tuple[str, str | None]], storage: ObjectStorage) -> Iterator[Entry]:
    """Entries for (path or object uri, metadata) rows; a missing one gets size -1 (the ingest
    records it as failed)."""
    remote_uris = [uri for uri, _ in rows if is_remote(uri)]
    if remote_uris:
        from vidclip.ingest.remote import stat_objects

        stats = stat_objects(remote_uris, storage)
    for uri, metadata in rows:
        if is_remote(uri):
            size, mtime_ns = stats[uri]
            yield Entry(uri, size, mtime_ns, metadata)
            continue
        uri = os.path.abspath(uri)
        try:
            st = os.stat(uri)
        except OSError:
            yield Entry(uri, -1, -1, metadata)  # missing or vanished: the ingest records the failure
            continue
        yield Entry(uri, int(st.st_size), int(st.st_mtime_ns), metadata)


def read_manifest(path: str, storage: ObjectStorage = ObjectStorage()) -> Iterator[tuple[str, str | None]]:
    """(path or object uri, metadata JSON) per row of a CSV / JSONL / Parquet manifest with a `uri`
    column.  Relative uris are relative to the manifest's folder (or prefix); other columns become
    the metadata.  The manifest itself may be on object storage."""
    import json

    import pyarrow as pa

    try:
        table = _read_table(path, storage)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path}: unreadable manifest ({' '.join(str(exc).split())[:200]})") from None
    if "uri" not in table.column_names:
        raise InputError(f"{path}: manifest has no 'uri' column (columns: {', '.join(table.column_names)})")
    if table.num_rows == 0:
        raise InputError(f"{path}: manifest has no rows")
    remote_manifest = is_remote(path)
    base = path.rsplit("/", 1)[0] if remote_manifest else os.path.dirname(os.path.abspath(path))
    extra = [c for c in table.column_names if c != "uri"]
    for row in table.to_pylist():
        uri = row["uri"]
        if not uri:
            raise InputError(f"{path}: a row has an empty uri")
        uri = str(uri)
        head, sep, _ = uri.partition("://")
        if sep and head.lower() != "file" and not is_remote(uri):
            raise InputError(f"{path}: {uri}: unsupported URI scheme {head!r} (use a local path, s3://, gs:// or az://)")
        if is_remote(uri):
            target = uri
        elif remote_manifest and not sep and not os.path.isabs(uri):
            target = f"{base}/{uri}"
        else:
            target = os.path.join(base, uri.removeprefix("file://"))
        meta = {c: row[c] for c in extra if row[c] is not None}
        yield target, (json.dumps(meta, default=str, sort_keys=True) if meta else None)


def _read_table(path: str, storage: ObjectStorage):
    source = path
    if is_remote(path):
        import pyarrow as pa

        from vidclip.ingest.remote import read_bytes

        source = pa.BufferReader(read_bytes(path, storage))
    lower = path.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(source)
    if lower.endswith(".csv"):
        import pyarrow.csv as pcsv

        return pcsv.read_csv(source)
    import pyarrow.json as pjson

    return pjson.read_json(source)


def _walk(root: str, extensions: frozenset[str]) -> Iterator[str]:
    """Files under root with a video extension, in a stable (sorted) order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in extensions:
                yield os.path.join(dirpath, name)


def content_id(path: str) -> str:
    """Stable id of a file's bytes: the first 32 hex digits of its sha256.  A renamed or copied
    file keeps its id; a file whose content changed gets a new one."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def special_file_kind(mode: int) -> str | None:
    """What a non-regular file is ("FIFO", "socket", ...), or None for a regular file."""
    for test, kind in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "special file"


def open_regular(path: str):
    """Open a regular file for reading, refusing FIFOs, sockets and devices *before* opening them
    (opening a FIFO blocks until a writer comes, reading a device may never end).  O_NONBLOCK
    closes the race of a file swapped for a FIFO between the check and the open."""
    kind = special_file_kind(os.stat(path).st_mode)
    if kind:
        raise OSError(errno.EINVAL, f"a {kind}, not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        kind = special_file_kind(os.fstat(fd).st_mode)
        if kind:
            raise OSError(errno.EINVAL, f"a {kind}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def uri_id(uri: str) -> str:
    """Id for a failure record when the file's content could not be read at all."""
    return "u" + hashlib.sha256(uri.encode()).hexdigest()[:31]


def merge_sidecar(entries: list[Entry], path: str, storage: ObjectStorage = ObjectStorage()) -> list[Entry]:
    """Entries with a sidecar manifest's metadata (keyed by absolute uri) merged over their own."""
    import dataclasses
    import json

    sidecar = {uri if is_remote(uri) else os.path.abspath(uri): meta for uri, meta in read_manifest(path, storage)}
    out = []
    for entry in entries:
        extra = sidecar.get(entry.uri)
        if extra:
            merged = dict(json.loads(entry.metadata) if entry.metadata else {}, **json.loads(extra))
            entry = dataclasses.replace(entry, metadata=json.dumps(merged, sort_keys=True, default=str))
        out.append(entry)
    return out
