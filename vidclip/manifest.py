"""Turn user inputs (files, folders) into one entry per video file, and derive content ids."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

from vidclip.errors import InputError

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .wmv .flv .mpg .mpeg .m2ts .mts .ts .3gp .3g2 .ogv .vob .mxf .f4v .divx .y4m".split()
)
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One input file as listed: where it is and what it looked like then."""

    uri: str
    size: int
    mtime_ns: int


def list_inputs(paths: list[str], extensions: frozenset[str] = VIDEO_EXTENSIONS) -> Iterator[Entry]:
    """Yield an entry per video file.  A folder is searched recursively for video extensions;
    a file named explicitly is taken whatever its extension.  Missing paths and folders
    without videos are refused before anything is ingested."""
    if not paths:
        raise InputError("no input path given")
    for raw in paths:
        if not os.path.exists(raw):
            raise InputError(f"{raw}: no such file or directory")
        if os.path.isdir(raw) and not any(True for _ in _walk(raw, extensions)):
            raise InputError(f"{raw}: folder contains no video files ({', '.join(sorted(extensions)[:6])}, ...)")
    seen: set[str] = set()
    for raw in paths:
        files = _walk(raw, extensions) if os.path.isdir(raw) else iter([raw])
        for path in files:
            uri = os.path.abspath(path)
            if uri in seen:
                continue
            seen.add(uri)
            try:
                st = os.stat(uri)
            except OSError:
                yield Entry(uri=uri, size=-1, mtime_ns=-1)  # vanished: the ingest records the failure
                continue
            yield Entry(uri=uri, size=int(st.st_size), mtime_ns=int(st.st_mtime_ns))


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
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def uri_id(uri: str) -> str:
    """Id for a failure record when the file's content could not be read at all."""
    return "u" + hashlib.sha256(uri.encode()).hexdigest()[:31]
