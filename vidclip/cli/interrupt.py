"""Ctrl-C at the command line: one line on stderr, and an exit the calling shell reads as an interrupt.

Two CPython behaviours make a plain `except KeyboardInterrupt: return 130` unreliable:

- A SIGINT that lands while Python runs a weakref callback or a `__del__` (the import system runs
  such callbacks while torch is being imported) raises KeyboardInterrupt *there*; Python prints
  "Exception ignored in ..." and carries on, so the Ctrl-C is lost and the job runs to the end.
- A KeyboardInterrupt raised inside code run by `exec()` (dataclasses and namedtuples are made that
  way) leaves CPython 3.11's "unhandled KeyboardInterrupt" flag set even when the exception is
  caught later, and the interpreter then kills itself with SIGINT at exit: the exit status depended
  on where the signal happened to land.

So the handler installed here remembers every SIGINT, KeyboardInterrupts that Python could only
"ignore" are dropped silently (they are remembered already), a job whose KeyboardInterrupt was lost
stops at its next progress tick (vidclip.ingest.watchdog.request_stop), and an interrupted command always ends
the way the shell convention asks of a program that handled SIGINT: it kills itself with SIGINT
after cleaning up, so `$?` is 130 and a calling script stops too."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from vidclip.ingest import watchdog

EXIT_INTERRUPTED = 130

_requested = threading.Event()


@contextlib.contextmanager
def handling():
    """SIGINT handled as described above while the command runs (main thread only; where SIGINT is
    ignored, as in a job started with `nohup` or `&`, it stays ignored)."""
    _requested.clear()
    watchdog.clear_stop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    previous_hook = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _requested.set()  # Python could not raise it where it landed: the command checks later,
            watchdog.request_stop()  # and a running job stops at its next progress tick
            return
        previous_hook(unraisable)

    if handler is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        watchdog.clear_stop()
        if handler is signal.default_int_handler:
            signal.signal(signal.SIGINT, handler)


def _on_sigint(signum, frame) -> None:
    _requested.set()
    # Should a library swallow the KeyboardInterrupt (one landing while torch was imported did,
    # and an ingest then ran to its end), a running job still stops at its next progress tick.
    watchdog.request_stop()
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether a SIGINT arrived since `handling()` began (even one whose KeyboardInterrupt was lost)."""
    return _requested.is_set()


def exit_interrupted() -> None:
    """End the process as interrupted: flush, then die of SIGINT (the shell shows 130)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    sys.exit(EXIT_INTERRUPTED)  # not reached where SIGINT can be delivered
