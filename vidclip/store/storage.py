"""Storage failures in words: a full disk, a read-only or forbidden store, a missing bucket.

LanceDB raises them as OSError or RuntimeError ("lance error: ... No space left on device"), 40
lines deep.  `describe_storage_failure` recognises them and says, on one line, which store and
what to do.  The rows already committed are safe in every case (LanceDB commits are atomic), and
a rerun of the same command resumes."""

from __future__ import annotations

import errno
import re

_KNOWN = (
    ((errno.ENOSPC, "no space left on device", "disk quota exceeded"),
     "the disk holding the store is full: free space, then rerun the same command (committed videos are kept)"),
    ((errno.EROFS, "read-only file system"),
     "the store is on a read-only file system: open it for searching only, or copy it somewhere writable"),
    ((errno.EACCES, errno.EPERM, "permission denied", "access denied", "accessdenied", "forbidden"),
     "permission denied writing the store: check the directory's owner and mode, or the bucket's credentials"),
    (("nosuchbucket", "bucket does not exist", "the specified bucket does not exist"),
     "the bucket does not exist: create it, or check the --db URI and its region/endpoint"),
)


# A data file of a table is gone or cut short ("lance error: Not found: .../frames.lance/data/x.lance").
_DAMAGE = re.compile(r"(?:not found|unexpected ?eof|corrupt|invalid (?:file|data|page)|failed to fill whole buffer)"
                     r".*?([A-Za-z0-9_]+)\.lance/", re.IGNORECASE)

_TRUNCATED = re.compile(r"invalid range \d+\.\.\d+ for object of size \d+ bytes", re.IGNORECASE)


def describe_storage_failure(exc: BaseException, where: str | None) -> str | None:
    """One line for a storage failure, or None when `exc` is something else."""
    if not isinstance(exc, (OSError, RuntimeError, ValueError)):
        return None
    raw = " ".join(str(exc).split())
    damage = _DAMAGE.search(raw)
    if damage:
        return (f"{where or 'the store'}: table {damage.group(1)!r} is damaged (one of its data files is missing or "
                f"truncated): run 'vidclip check --db {where or 'DIR'} --repair'")
    if _TRUNCATED.search(raw):
        return (f"{where or 'the store'}: a data file of the store is truncated ({_TRUNCATED.search(raw).group(0)}): "
                f"run 'vidclip check --db {where or 'DIR'} --repair'")
    text = raw.lower()
    code = getattr(exc, "errno", None)
    for keys, advice in _KNOWN:
        if any((k == code) if isinstance(k, int) else (k in text) for k in keys):
            return f"{where or 'the store'}: {advice}"
    return None
