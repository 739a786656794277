"""Input videos on object storage (s3://, gs://, az://), read through pyarrow.fs.

Listing: a prefix is listed recursively (sorted, video extensions only); each object's size and
modification time come from the listing, so an unchanged object is skipped without being read.

Identity: an object's video_id is the sha256 of its bytes, streamed (`content_id`), the same id a
local copy of the file gets.  ETag + size + path would be cheaper (no read), but an ETag is not a
content hash: a multipart upload's ETag depends on the part size, so the same bytes uploaded twice,
or copied to another bucket, get different ids, and a rename would re-ingest.  The price of the
hash is one extra read of each *new or changed* object.

Decoding: the decode child copies the object into a spool file and decodes that.  The file is
unlinked as soon as it is open (on Linux the decoders read it as /proc/self/fd/N), so the kernel
frees it when the child exits, even when a watchdog kills it; elsewhere it is deleted on the way
out.  Bounds: disk = one object per decode worker (checked against the free space first), memory =
one COPY_BYTES buffer.  VIDCLIP_SPOOL_DIR chooses the folder (default: the system temp dir).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time
from typing import Iterator

from vidclip.errors import InputError, MediaError
from vidclip.objectstore import ObjectStorage, describe_connection_failure, filesystem

COPY_BYTES = 8 << 20
SPOOL_MARGIN_BYTES = 256 << 20  # free space left on the spool disk after a copy


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _failure(uri: str, storage: ObjectStorage, exc: BaseException) -> str:
    return describe_connection_failure(exc, uri, storage.as_dict()) or f"{uri}: {_one_line(exc)}"


def list_objects(uri: str, storage: ObjectStorage, extensions: frozenset[str]) -> Iterator[tuple[str, int, int]]:
    """(uri, size, mtime_ns) of the video objects under a prefix, or of one object, in sorted order.
    A URI that names nothing is refused with one line."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, storage)
    scheme = uri.partition("://")[0]
    try:
        info = fs.get_file_info(path.rstrip("/"))
        if info.type == pafs.FileType.File:
            yield uri, int(info.size), _mtime_ns(info)
            return
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{uri}: no such object or prefix")
        infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=True))
    except OSError as exc:
        raise InputError(_failure(uri, storage, exc)) from None
    found = sorted((i for i in infos if i.type == pafs.FileType.File
                    and os.path.splitext(i.path)[1].lower() in extensions), key=lambda i: i.path)
    if not found:
        raise InputError(f"{uri}: prefix contains no video files ({', '.join(sorted(extensions)[:6])}, ...)")
    for i in found:
        yield f"{scheme}://{i.path}", int(i.size), _mtime_ns(i)


def stat_objects(uris: list[str], storage: ObjectStorage) -> dict[str, tuple[int, int]]:
    """uri -> (size, mtime_ns) for objects named one by one (a manifest's rows); (-1, -1) when
    missing, so the ingest records the failure."""
    import pyarrow.fs as pafs

    out: dict[str, tuple[int, int]] = {}
    by_fs: dict = {}
    for uri in uris:
        fs, path = filesystem(uri, storage)
        by_fs.setdefault((uri.partition("://")[0], id(type(fs))), (fs, []))[1].append((uri, path))
    for fs, pairs in by_fs.values():
        try:
            infos = fs.get_file_info([p for _, p in pairs])  # concurrent requests inside pyarrow
        except OSError as exc:
            raise InputError(_failure(pairs[0][0], storage, exc)) from None
        for (uri, _), info in zip(pairs, infos):
            ok = info.type == pafs.FileType.File
            out[uri] = (int(info.size), _mtime_ns(info)) if ok else (-1, -1)
    return out


def _mtime_ns(info) -> int:
    mtime = info.mtime_ns
    return int(mtime) if mtime is not None else -1


def read_bytes(uri: str, storage: ObjectStorage) -> bytes:
    """A small object's bytes (a manifest)."""
    fs, path = filesystem(uri, storage)
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read()
    except OSError as exc:
        raise InputError(_failure(uri, storage, exc)) from None


def content_id(uri: str, storage: ObjectStorage) -> str:
    """sha256 of an object's bytes (first 32 hex digits), streamed: as manifest.content_id for files."""
    fs, path = filesystem(uri, storage)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as fh:
        while chunk := fh.read(COPY_BYTES):
            digest.update(chunk)
    return digest.hexdigest()[:32]


class Spool:
    """A local copy of one object, for decoding it: `fill()` copies (yielding the bytes copied so far
    about once a second, so a watchdog sees progress), `path` names the copy, `close()` frees it.
    Used as a context manager, the copy is gone afterwards, whatever happens (see the module
    docstring)."""

    def __init__(self, uri: str, storage: ObjectStorage):
        self.uri, self._storage = uri, storage
        self._fs, self._key = filesystem(uri, storage)
        folder = os.environ.get("VIDCLIP_SPOOL_DIR") or tempfile.gettempdir()
        try:
            size = self._fs.get_file_info(self._key).size
        except OSError as exc:
            raise MediaError(uri, self._reason(exc)) from None
        if size is None:
            raise MediaError(uri, "no such object")
        free = shutil.disk_usage(folder).free
        if size + SPOOL_MARGIN_BYTES > free:
            raise MediaError(uri, f"object is {size / 1e9:.1f} GB but the spool folder {folder} has "
                                  f"{free / 1e9:.1f} GB free (set VIDCLIP_SPOOL_DIR to a larger disk)")
        self.size = int(size)
        self._fd, self._name = tempfile.mkstemp(prefix="vidclip-spool-", suffix=os.path.splitext(self._key)[1], dir=folder)
        proc_path = f"/proc/self/fd/{self._fd}"
        self._unlinked = sys.platform.startswith("linux") and os.path.exists(proc_path)
        if self._unlinked:
            os.unlink(self._name)  # freed by the kernel when this process closes it or dies
        self.path = proc_path if self._unlinked else self._name

    def _reason(self, exc: BaseException) -> str:
        return f"cannot read object ({_failure(self.uri, self._storage, exc).removeprefix(self.uri + ': ')})"

    def fill(self) -> Iterator[int]:
        copied, last = 0, time.monotonic()
        try:
            with self._fs.open_input_stream(self._key) as src, os.fdopen(os.dup(self._fd), "wb") as dst:
                while chunk := src.read(COPY_BYTES):
                    dst.write(chunk)
                    copied += len(chunk)
                    if time.monotonic() - last >= 1.0:
                        yield copied
                        last = time.monotonic()
        except OSError as exc:
            raise MediaError(self.uri, self._reason(exc)) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if not self._unlinked:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._name)

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
