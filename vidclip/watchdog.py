"""No stall is silent: a job that makes no progress for `stall_s` fails with one line.

Progress is anything the driver receives: a decoded chunk, an encoded batch, a finished video.
The watchdog is a daemon thread; when the deadline passes it asks the runner what it is waiting
for (`diagnose`), records the message, and interrupts the main thread (which may be blocked in a
library call such as Ray Data's iterator).  The runner turns that interrupt into a `StallError`
that says what it waited for, what has been committed, and how to resume.  Committed videos stay
committed: the next run of the same command skips them.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable

from vidclip.errors import StallError

DEFAULT_STALL_S = 300.0


class StallWatchdog:
    def __init__(self, stall_s: float, diagnose: Callable[[], str], committed: Callable[[], str],
                 first_s: float | None = None, starting: Callable[[], bool] | None = None):
        """first_s: the allowance before the first progress (start-up: Ray workers importing torch
        on a loaded machine can take minutes); stall_s after it.  `starting`, if given, is asked
        once stall_s has passed without progress: while it answers True the job is still starting
        up; False (or an error: a lost cluster) ends the allowance at once."""
        self.stall_s = float(stall_s)
        self.first_s = max(self.stall_s, float(first_s or 0.0))
        self._ticked = False
        self._starting = starting
        self._diagnose = diagnose
        self._committed = committed
        self._last = time.monotonic()
        self._done = threading.Event()
        self._lock = threading.Lock()  # no interrupt once the job has left the watched block
        self.message: str | None = None
        self._thread = threading.Thread(target=self._watch, name="vidclip-watchdog", daemon=True)

    def tick(self, started: bool = True) -> None:
        """Progress.  started=False: progress while the job is still starting up (it keeps the
        start-up allowance, e.g. inputs hashed before the pipeline's workers have started)."""
        self._last = time.monotonic()
        if started:
            self._ticked = True

    def _watch(self) -> None:
        while not self._done.wait(min(5.0, self.stall_s / 4)):
            idle = time.monotonic() - self._last
            if idle < self.stall_s or (idle < self._allowance() and self._still_starting()):
                continue
            try:
                waiting = self._diagnose()
            except Exception as exc:  # the diagnosis itself may fail (a lost cluster): say so
                waiting = f"unknown ({type(exc).__name__}: {exc})"
            message = (
                f"no progress for {idle:.0f}s, waiting for {waiting}; {self._committed()} "
                "committed and kept; rerun the same command to resume"
            )
            with self._lock:
                if self._done.is_set():
                    return
                self.message = message
                # A real SIGINT aimed at the main thread wakes it from a blocking wait (a lock, a
                # Ray get); _thread.interrupt_main() would only set a flag it never looks at.
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            return

    def _allowance(self) -> float:
        return self.stall_s if self._ticked else self.first_s

    def _still_starting(self) -> bool:
        if self._starting is None:
            return True
        try:
            return bool(self._starting())
        except Exception:  # noqa: BLE001 - a cluster that cannot answer is not starting up
            return False

    def raise_if_stalled(self) -> None:
        """Call from the `except KeyboardInterrupt` of the runner's main loop."""
        if self.message is not None:
            raise StallError(self.message) from None

    def __enter__(self) -> "StallWatchdog":
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._lock:
            self._done.set()
        if exc_type is KeyboardInterrupt:
            self.raise_if_stalled()
