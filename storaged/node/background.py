"""Background CPU work (sealing, PoRep proving, scrubbing) at a lower scheduling priority.

A provider's trio thread runs consensus, gossip and the deal protocol; sealing a sector keeps a
core busy for seconds to hours.  On a machine with few cores (a devnet runs six providers on
two) equal shares let a burst of seals starve the event loop: votes go out late, rounds time
out and blocks stop for tens of seconds.  So the worker thread that runs such work lowers its
own priority first (Linux: ``setpriority`` on a thread id changes that thread only).

The lowered priority stays with the worker thread when trio's thread cache reuses it; such
threads only ever run offloaded CPU work, never the event loop, so that is harmless.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKGROUND_NICE = 10  # niceness of a thread running background CPU work


def lower_this_thread() -> int | None:
    """Raise the calling thread's niceness to at least :data:`BACKGROUND_NICE`; return it.

    Returns None where per-thread priorities are not available (the work runs anyway).
    """
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None:
        return None
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < BACKGROUND_NICE:
            setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
        return max(current, BACKGROUND_NICE)
    except OSError as exc:  # e.g. a sandbox that forbids it: not worth failing the work
        log.debug("cannot lower the priority of thread %d: %s", tid, exc)
        return None


async def run_in_background(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a worker thread at background priority; return its result.

    Raises:
        whatever ``fn`` raises.
    """
    def work() -> T:
        lower_this_thread()
        return fn()

    return await trio.to_thread.run_sync(work)
