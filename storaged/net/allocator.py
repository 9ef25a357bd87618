"""Keep glibc from handing frame-sized buffers back to the kernel between frames.

A transfer allocates and frees buffers of up to about 1 MiB per data frame on both ends
(a chunk read from the source, its encoded frame, a received frame's body, the chunks queued
between the reader and the consumer).  glibc serves blocks of that size with ``mmap`` until a
freed one raises its dynamic threshold, and it returns the free top of the heap to the kernel
once that exceeds twice the threshold.  With a queue of chunks freed in arrival order, both
keep happening: each new buffer is memory the kernel must fault in and zero again, page by
page.  ``bench/net.py`` counted 5,500-18,500 minor page faults per 256 MiB push on each side
(and ~0 for a raw libp2p stream, which frees each read at once), costing a quarter of push
throughput.

:func:`tune_allocator` fixes the two thresholds instead: blocks under ``MMAP_THRESHOLD`` come
from the heap, and up to ``TRIM_THRESHOLD`` of free heap top stays mapped.  The price is that
a process keeps up to that much memory it no longer uses after a burst: small for a node whose
transfers alone may buffer ``max_inbound`` windows of 8 MiB.  Blocks larger than the threshold
(sector buffers of the sealer, for instance) still go straight to ``mmap`` and back.

Only glibc is tuned (``mallopt``); elsewhere, or when the user set any glibc malloc variable
in the environment (theirs wins), nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20
"""Blocks below this come from the heap: every buffer of the network path (frames, reads,
chunks of at most 1 MiB) with room to spare."""
TRIM_THRESHOLD = 64 << 20
"""Free memory at the heap top kept mapped: a few transfer windows' worth."""

_tuned: bool | None = None


def _user_configured() -> bool:
    return any(name.startswith("MALLOC_") for name in os.environ) or (
        "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    )


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for this process, once; True if they are set.

    Never raises: an allocator that cannot be tuned only costs speed (logged at debug level).
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.debug("allocator not tuned: not glibc")
        return False
    if _user_configured():
        log.debug("allocator not tuned: MALLOC_* / GLIBC_TUNABLES set by the user")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError) as exc:
        log.debug("allocator not tuned: no mallopt (%s)", exc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    _tuned = bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not _tuned:
        log.debug("allocator not tuned: mallopt refused")
    return _tuned


__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]
