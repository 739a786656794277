"""The `vidclip` command line.  User mistakes end in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import atexit
import io
import logging
import os
import sys
import threading

from vidclip.cli import bench, demo, index, ingest, interrupt, learn, query, serve, store
from vidclip.errors import VidclipError
from vidclip.objectstore import describe_connection_failure
from vidclip.store.storage import describe_storage_failure

EXIT_ERROR = 2
GROUPS = (ingest, query, serve, store, index, learn, bench, demo)  # in the order `vidclip --help` lists them


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(EXIT_ERROR, f"vidclip: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidclip", description="Text-to-video search on frame-level CLIP.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for group in GROUPS:  # subparsers already build _Parser instances
        group.add_parsers(sub)
    return parser


def run() -> None:
    """The `vidclip` program (console script and `python -m vidclip`): main, then an exit the shell
    reads correctly, including an interrupted one (vidclip/cli/interrupt.py says why)."""
    rc = main()
    if rc == interrupt.EXIT_INTERRUPTED:
        interrupt.exit_interrupted()
    _exit_without_teardown(rc)
    sys.exit(rc)


def _exit_without_teardown(rc: int) -> None:
    """End the process as a normal exit does, less the interpreter's teardown.

    A normal exit waits for the threads still running (and shuts down idle thread pools), runs the
    atexit handlers (logging, multiprocessing's children, temporary folders, Ray, a coverage
    tool), flushes stdout and stderr, and then tears down every module and frees every object one
    by one: 0.4 CPU-s with torch imported, 0.8 with open_clip and lancedb, paid by every command at
    its end.  This does the same, in the same order (CPython's own two steps), and skips only the
    teardown.  Nothing vidclip writes waits for it: the store commits before a command returns, and
    files are written in `with` blocks.  VIDCLIP_TEARDOWN=1, or a Python without these steps, keeps
    the normal exit.
    """
    wait_for_threads = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if wait_for_threads is None or run_exitfuncs is None or os.environ.get("VIDCLIP_TEARDOWN") == "1":
        return
    wait_for_threads()
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away: nothing more to say to it
            pass
    os._exit(rc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _own_stderr()
    _configure_logging(args.verbose)
    with interrupt.handling():
        return _run_command(args)


def _run_command(args) -> int:
    try:
        rc = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported below, not at shutdown
        if interrupt.requested():  # a Ctrl-C whose KeyboardInterrupt Python could not raise
            raise KeyboardInterrupt
        return rc
    except VidclipError as exc:
        print(f"vidclip: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, RuntimeError, ValueError) as exc:
        # temporal.TemporalError and friends: a user-facing ValueError from a pure-torch package.
        if isinstance(exc, ValueError) and type(exc).__module__.startswith("temporal"):
            print(f"vidclip: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, BrokenPipeError):
            return _quiet_broken_pipe()
        db = getattr(args, "db", None)
        storage = (describe_connection_failure(exc, db, _storage_options(args)) if db else None) \
            or describe_storage_failure(exc, db)
        if storage is None:
            raise
        print(f"vidclip: error: {storage}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vidclip: interrupted", file=sys.stderr)
        return interrupt.EXIT_INTERRUPTED


def _own_stderr() -> None:
    """vidclip's stderr becomes a duplicate of file descriptor 2: the same terminal or pipe, but one
    that native libraries do not write to, so a Ray session can send their writes to descriptor 2
    into a log file (pipelines/cluster.py) and vidclip's own lines still reach the user."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded, or closed)
        return
    sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(io.FileIO(fd, "w"), encoding=sys.stderr.encoding or "utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)


def _storage_options(args) -> dict | None:
    """The command's storage options, for naming the endpoint in a failure (None if they don't parse)."""
    from vidclip.objectstore import parse_pairs

    try:
        return parse_pairs(getattr(args, "storage_option", []), getattr(args, "storage_options_file", None))
    except VidclipError:
        return None


def _quiet_broken_pipe() -> int:
    """The reader went away (`vidclip status | head -3`): stop quietly, as `git log | head` does.
    stdout is pointed at /dev/null so the interpreter's final flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _configure_logging(verbose: bool) -> None:
    """vidclip's own messages on stderr; other libraries only for errors (or everything with -v).

    open_clip logs through the root logger ("No pretrained weights loaded ..."); vidclip says the
    same thing in its own words, so third-party chatter below ERROR is dropped unless verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vidclip: %(levelname)s: %(name)s: %(message)s" if verbose else "vidclip: %(message)s"))
    if not verbose:
        handler.addFilter(lambda r: r.name.split(".")[0] in ("vidclip", "temporal", "pipelines") or r.levelno >= logging.ERROR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


COMMANDS = {}
for _group in GROUPS:
    COMMANDS.update(_group.COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
