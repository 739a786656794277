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
# The watchdog's own questions (is the job still starting? what does it wait for?) may go to a
# cluster that no longer answers: a call into Ray from this thread was seen blocking for good while
# the main thread waited in Ray Data.  Each question gets this long, on a thread of its own.
ASK_S = 10.0
# The interrupt can be lost: a loaded full test run saw a Ray job go on waiting in Ray Data's
# iterator for 10 minutes after the watchdog had fired.  Until the job leaves the watched block,
# the interrupt is sent again this often (a wait that swallowed one does not swallow them all).
REPEAT_S = 30.0

# A stop asked for from outside the job: the command line's Ctrl-C, whose KeyboardInterrupt a
# library may swallow while it is being raised (vidclip/cli/interrupt.py).  The job's next progress
# tick raises it again, in its own loop, where the runner handles an interrupt.
_stop = threading.Event()


def request_stop() -> None:
    _stop.set()


def clear_stop() -> None:
    _stop.clear()


def _ask(question: Callable[[], object], timeout_s: float, asked: list | None = None):
    """question()'s answer, or a string saying why there is none (it failed or did not answer in time).
    The thread that asks is appended to `asked` (its owner waits for it before the cluster goes)."""
    box: list = []

    def run() -> None:
        try:
            box.append(question())
        except Exception as exc:  # noqa: BLE001 - the diagnosis itself may fail (a lost cluster): say so
            box.append(f"unknown ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")

    t = threading.Thread(target=run, name="vidclip-watchdog-ask", daemon=True)
    t.start()
    if asked is not None:  # only the questions still running: one is asked every few seconds at start-up
        asked[:] = [*(a for a in asked if a.is_alive()), t]
    t.join(timeout_s)
    return box[0] if box else f"unknown (no answer within {timeout_s:.0f}s)"


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
        self.interrupts = 0  # SIGINTs sent to the main thread
        self._asked: list[threading.Thread] = []  # questions asked (they may call into Ray)
        self._thread = threading.Thread(target=self._watch, name="vidclip-watchdog", daemon=True)

    def tick(self, started: bool = True) -> None:
        """Progress.  started=False: progress while the job is still starting up (it keeps the
        start-up allowance, e.g. inputs hashed before the pipeline's workers have started)."""
        self._last = time.monotonic()
        if started:
            self._ticked = True
        if _stop.is_set() and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt  # a Ctrl-C that was lost on its way: the job stops here

    def _watch(self) -> None:
        while not self._done.wait(min(5.0, self.stall_s / 4)):
            idle = time.monotonic() - self._last
            if idle < self.stall_s or (idle < self._allowance() and self._still_starting()):
                continue
            waiting = _ask(self._diagnose, ASK_S, self._asked)
            message = (
                f"no progress for {idle:.0f}s, waiting for {waiting}; {self._committed()} "
                "committed and kept; rerun the same command to resume"
            )
            with self._lock:
                if self._done.is_set():
                    return
                self.message = message
                self.interrupts = 1
                # A real SIGINT aimed at the main thread wakes it from a blocking wait (a lock, a
                # Ray get); _thread.interrupt_main() would only set a flag it never looks at.
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            while not self._done.wait(REPEAT_S):
                with self._lock:
                    if self._done.is_set():
                        return
                    self.interrupts += 1
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            return

    def _allowance(self) -> float:
        return self.stall_s if self._ticked else self.first_s

    def _still_starting(self) -> bool:
        if self._starting is None:
            return True
        answer = _ask(self._starting, ASK_S, self._asked)
        return answer is True  # False, an error or no answer (a cluster that cannot answer): not starting

    def acknowledge(self) -> None:
        """The job has seen the verdict and is stopping: no more interrupts (one landing in its
        clean-up would cut the clean-up short)."""
        with self._lock:
            self._done.set()

    def raise_if_stalled(self) -> None:
        """Call from the `except KeyboardInterrupt` of the runner's main loop."""
        if self.message is not None:
            raise StallError(self.message) from None

    def __enter__(self) -> "StallWatchdog":
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            # A job started in the background (`vidclip ingest ... &`, nohup, some schedulers)
            # inherits SIGINT *ignored*: the watchdog's interrupt would be dropped and a stall
            # would hang for good.  While watching, SIGINT is handled; Ctrl-C keeps its meaning.
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)
        self._thread.start()
        return self

    def _on_sigint(self, signum, frame) -> None:
        if self.message is None and callable(self._previous):
            self._previous(signum, frame)  # the caller's own handler (the CLI's remembers the Ctrl-C)
        if self.message is not None or self._previous is not signal.SIG_IGN:
            raise KeyboardInterrupt
        # SIGINT was ignored before the job began and this one is not the watchdog's: ignore it

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._lock:
            self._done.set()
        # A question still being asked may be inside Ray: the cluster must outlive it (Ray's core
        # ends the process when it is called after ray.shutdown()), so the job waits for it here.
        self._thread.join(ASK_S)
        for asking in self._asked:
            asking.join(ASK_S)
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if exc_type is KeyboardInterrupt:
            self.raise_if_stalled()
