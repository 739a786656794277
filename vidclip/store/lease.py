"""One writer at a time: a lease recorded in the store itself, so it holds on object storage too.

The lease is the `writer_lease` table.  A writer that wants the store appends a *claim* row
(token, holder, what, expires_at) and reads the table back.  Lance commits are linearizable
(atomic renames locally, conditional puts on object storage), and an append's fragment id is
given at commit time, so a claim's row address orders claims by commit.  Among the claims not yet
expired, the first committed one holds the lease; every writer reads the same order, so two
writers that claim at once agree on the winner.  The loser withdraws its claim and refuses with
one line (or waits, if asked to).

A holder renews its claim (another row with its token) every `ttl_s / 3` from a background
thread and confirms it still holds the lease before each commit.  A holder that dies stops
renewing; its claim expires after `ttl_s` and the next writer takes over (and repairs what the
dead one left half-written).  On the holder's own machine a dead holder is seen at once (its pid
and start time are recorded), so a crash followed by a rerun there does not wait.  Expiry compares wall clocks, so writers on different machines need
clocks in sync to well within `ttl_s` (NTP does that).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

import pyarrow as pa

from vidclip.errors import StoreBusyError, StoreError
from vidclip.store.storage import describe_storage_failure

log = logging.getLogger("vidclip")

TABLE = "writer_lease"
SCHEMA = pa.schema(
    [
        pa.field("token", pa.string()),
        pa.field("holder", pa.string()),  # host:pid:start-time: for the message, and liveness on this host
        pa.field("what", pa.string()),  # ingest, reindex, prune, index
        pa.field("claimed_at", pa.float64()),  # unix seconds
        pa.field("expires_at", pa.float64()),
    ]
)
DEFAULT_TTL_S = 60.0


class WriterLease:
    def __init__(self, db, uri: str, what: str, ttl_s: float = DEFAULT_TTL_S):
        self._db = db
        self.uri = uri
        self.what = what
        self.ttl_s = float(ttl_s)
        self.token = uuid.uuid4().hex
        self.holder = _process_name(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None

    # -- the table --------------------------------------------------------------------------------
    def _table(self):
        try:
            return self._db.open_table(TABLE)
        except (ValueError, FileNotFoundError):
            pass
        try:
            return self._db.create_table(TABLE, schema=SCHEMA)
        except ValueError:  # another writer created it in between
            return self._db.open_table(TABLE)

    def _claim(self, tbl) -> None:
        now = time.time()
        row = {"token": self.token, "holder": self.holder, "what": self.what, "claimed_at": now, "expires_at": now + self.ttl_s}
        tbl.add(pa.Table.from_pylist([row], schema=SCHEMA))

    def _owner(self, tbl) -> dict | None:
        """The live claim that holds the lease: the first committed token whose latest renewal has
        not expired."""
        rows = tbl.search().with_row_id(True).limit(None).to_arrow().to_pylist()
        first: dict[str, dict] = {}  # token -> its first committed claim
        expires: dict[str, float] = {}  # token -> its latest expiry
        for r in rows:
            t = r["token"]
            if t not in first or r["_rowid"] < first[t]["_rowid"]:
                first[t] = r
            expires[t] = max(expires.get(t, 0.0), r["expires_at"])
        now = time.time()
        live = [t for t in first if expires[t] > now and not _dead_here(first[t]["holder"])]
        if not live:
            return None
        return first[min(live, key=lambda t: first[t]["_rowid"])]

    # -- acquiring --------------------------------------------------------------------------------
    def acquire(self, wait_s: float = 0.0) -> "WriterLease":
        deadline = time.monotonic() + max(0.0, wait_s)
        try:
            tbl = self._table()
            while True:
                self._claim(tbl)
                owner = self._owner(tbl)
                if owner is not None and owner["token"] == self.token:
                    break
                tbl.delete(f"token = '{self.token}'")  # withdraw: this writer did not get it
                if time.monotonic() >= deadline:
                    raise StoreBusyError(self.uri, _describe(owner))
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
            # Claims long expired are history: drop them so the table stays a few rows.
            tbl.delete(f"expires_at < {time.time() - 10 * self.ttl_s!r}")
        except StoreError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            storage = describe_storage_failure(exc, self.uri)
            raise StoreError(storage or f"{self.uri}: cannot take the writer lease ({' '.join(str(exc).split())[:200]})") from None
        self._thread = threading.Thread(target=self._renew_loop, name="vidclip-lease", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        tbl = self._table()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._claim(tbl)
            except Exception as exc:  # a failed renewal is recorded and surfaces at the next confirm()
                self._lost = f"could not renew the writer lease ({' '.join(str(exc).split())[:200]})"
                log.debug("%s: %s", self.uri, self._lost)

    def confirm(self) -> None:
        """Raise unless this writer still holds the lease (called before each commit)."""
        if self._lost:
            raise StoreBusyError(self.uri, self._lost)
        try:
            owner = self._owner(self._table())
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"{self.uri}: cannot read the writer lease ({' '.join(str(exc).split())[:200]})") from None
        if owner is None or owner["token"] != self.token:
            raise StoreBusyError(self.uri, "this writer's lease expired and " + (_describe(owner) if owner else "nobody holds it"))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._table().delete(f"token = '{self.token}'")
        except (OSError, ValueError, RuntimeError) as exc:  # it expires by itself after ttl_s
            log.debug("%s: could not release the writer lease: %s", self.uri, exc)


def _process_name(pid: int) -> str:
    """host:pid, plus the process's start time where /proc has it (so a reused pid is told apart)."""
    name = f"{socket.gethostname()}:{pid}"
    start = _start_ticks(pid)
    return f"{name}:{start}" if start else name


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return ""
    return stat[stat.rindex(b")") + 2 :].split()[19].decode()  # field 22: starttime


def _dead_here(holder: str) -> bool:
    """A claim made by a process of this machine that is gone: no need to wait for its expiry
    (a crash followed by a rerun on the same machine goes on at once)."""
    host, _, rest = holder.partition(":")
    if host != socket.gethostname():
        return False
    pid_text, _, start = rest.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return bool(start) and _start_ticks(pid) not in ("", start)  # the pid now names another process


def _describe(owner: dict | None) -> str:
    if owner is None:
        return "another writer holds the store"
    since = datetime.fromtimestamp(owner["claimed_at"], timezone.utc).strftime("%H:%M:%S UTC")
    host, _, rest = owner["holder"].partition(":")
    pid = rest.partition(":")[0]
    return f"another process ({host}:{pid}, {owner['what']}) is writing to this store since {since}"
