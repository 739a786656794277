"""Decoding in an isolated child process, with a hard timeout and a kill.

Native decoders crash and hang (decord is known to hang holding the GIL, to
abort the process and to segfault).  Every video is decoded in a child process
that streams its results back over a pipe; if the child goes silent for longer
than the timeout it is killed, if it dies its exit signal is reported, and
either way the cost is one recorded failure (a DecodeError), never the job.
The child is reused across videos and restarted after a kill or a crash.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import traceback
import warnings
from multiprocessing.connection import Connection
from typing import Callable, Iterator

from vidclip.errors import DecodeError, MediaError

# Messages from a decode job, in order: ("facts", VideoFacts), ("chunk", FrameChunk)*, ("done", dict)
FACTS, CHUNK, DONE, ERROR = "facts", "chunk", "done", "error"
PROGRESS = "progress"  # ("progress", n): still working (e.g. copying an object); resets the timeout, not passed on


def resolve(entry_point: str) -> Callable:
    """'package.module:function' -> the function."""
    module, _, name = entry_point.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(fd: int, entry_point: str) -> None:
    """The child's main loop: receive jobs on the socket `fd`, stream back their messages."""
    from vidclip.container import allow_frame_threads

    allow_frame_threads()  # this process is vidclip's own: vidclip.container says why that matters
    # A SIGINT sent to this process itself (not the terminal's, see _start): the parent decides what
    # a stop means and ends this child, which neither dies mid-message nor prints a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    job_fn = resolve(entry_point)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            for message in job_fn(*job):
                conn.send(message)
        except MediaError as exc:
            conn.send((ERROR, exc.reason))
        except Exception as exc:  # a bug or an unforeseen library error: one recorded failure, with its type
            tail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            conn.send((ERROR, f"internal error while decoding: {tail[:300]}"))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class DecodeSandbox:
    """One child process that decodes one video at a time.

    `timeout_s` is the longest the child may go without delivering anything (facts, a chunk of
    frames, or the end): a hang is caught within timeout_s whatever the video's length, while a
    long video that keeps delivering chunks is never killed for being long.
    """

    def __init__(self, entry_point: str, timeout_s: float):
        self.entry_point = entry_point
        self.timeout_s = float(timeout_s)
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
        # A plain `python -c` child (not multiprocessing's spawn, which re-imports the caller's
        # __main__: that breaks scripts read from stdin and re-runs unguarded user scripts).
        parent, child = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = "import sys; from vidclip.ingest.sandbox import serve; serve(int(sys.argv[1]), sys.argv[2])"
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child.fileno()), self.entry_point],
                pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL, close_fds=True,
                # Its own session: a terminal's Ctrl-C (SIGINT to the foreground process group)
                # reaches the parent only, which decides what a stop means and ends this child.
                # Ignoring SIGINT inside the child is not enough: it arrives while the child is
                # still importing, and the child prints a KeyboardInterrupt traceback.  The child
                # still ends with its parent: it exits when the socket closes.
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._conn = Connection(parent.detach())

    def run(self, *job) -> Iterator[tuple]:
        """Send one job (its first element is the path) and yield the child's messages."""
        path = str(job[0])
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        try:
            self._conn.send(job)
        except (BrokenPipeError, OSError):
            self._restart()
            self._conn.send(job)
        finished = False
        try:
            while True:
                if not self._conn.poll(self.timeout_s):
                    self.kill()
                    raise DecodeError(path, f"decoder timed out: no progress for {self.timeout_s:g}s (killed)")
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    code = self._reap()
                    raise DecodeError(path, f"decoder process crashed ({describe_exit(code)})") from None
                kind = message[0]
                if kind == PROGRESS:
                    continue
                if kind == ERROR:
                    finished = True
                    raise DecodeError(path, message[1])
                if kind == DONE:
                    finished = True
                yield message
                if finished:
                    return
        finally:
            if not finished:  # the caller stopped mid-video: the child would go on streaming it
                self.kill()

    def _reap(self) -> int | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=5)

    def _restart(self) -> None:
        self.kill()
        self._start()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._conn.send(None)
                self._proc.wait(timeout=2)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def __enter__(self) -> "DecodeSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlineDecoder:
    """The same interface without a child process (for debugging with a debugger / profiler)."""

    def __init__(self, entry_point: str, timeout_s: float = 0.0):
        self._fn = resolve(entry_point)

    def run(self, *job) -> Iterator[tuple]:
        path = str(job[0])
        try:
            for message in self._fn(*job):
                if message[0] != PROGRESS:
                    yield message
        except MediaError as exc:
            raise DecodeError(path, exc.reason) from None

    def close(self) -> None:
        pass

    def __enter__(self) -> "InlineDecoder":
        return self

    def __exit__(self, *exc) -> None:
        pass


def make_decoder(entry_point: str, timeout_s: float, isolate: bool):
    return DecodeSandbox(entry_point, timeout_s) if isolate else InlineDecoder(entry_point, timeout_s)
