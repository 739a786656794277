"""LanceDB's async API, run on the calling thread's own event loop.

LanceDB's synchronous API hands every call to one background event-loop thread and blocks until
that thread hands the answer back: each vector search crosses threads four times (caller ->
background loop -> Lance's runtime -> background loop -> caller).  Awaited on the caller's own
loop it crosses twice.  Measured on a 1M-clip IVF_RQ table (docs/performance.md, "ANN on hard
data"), interleaved in one process on a quiet 2-core machine: 2-3 ms less per search (p50 ratios
0.64-0.90), and about half the latency at 100k rows while other processes kept both cores busy,
where every hand-over waits for the scheduler.

`run_here` runs a coroutine to completion on a private event loop of the calling thread (one per
thread and process, made on first use).  A thread that already runs an event loop (a notebook
cell, an async server's loop) cannot block on another one: there it returns NOT_RUN and the
caller uses the synchronous API instead.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
NOT_RUN = object()  # run_here's answer when this thread already runs an event loop


class _OwnLoop:
    """One thread's private event loop, closed when the thread's locals are freed (the thread ends)."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child must not reuse its parent's loop (its self-pipe is shared)
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        # Never close a parent's loop in a forked child: the child shares the parent's epoll set, and
        # closing unregisters the loop's wake-up pipe from it, so the parent's loop would never wake.
        loop = getattr(self, "loop", None)
        if loop is not None and self.pid == os.getpid() and not loop.is_closed() and not loop.is_running():
            loop.close()


_local = threading.local()


def run_here(make: Callable[[], Awaitable[T]]) -> T | object:
    """The result of the coroutine `make()` returns, awaited on this thread's private event loop;
    NOT_RUN (and `make` not called) when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return NOT_RUN
    own = getattr(_local, "own", None)
    if own is None or own.pid != os.getpid() or own.loop.is_closed():
        own = _local.own = _OwnLoop()
    return own.loop.run_until_complete(make())
