"""Every LevelDB key in storaged is built here, and only here.

Format: a one-byte table prefix, then fixed-width big-endian unsigned integers and raw hashes,
so that keys of one table sort by their numeric fields and prefix/range scans work.  No key is
ever built from ``repr`` or decimal text.

Prefix table (a prefix is never reused for another table; add new tables at the end of a range):

| prefix | table | owner |
|---|---|---|
| 0x01 | META: schema version and per-store metadata | store |
| 0x10-0x1F | share store index | ``storaged.store.shares`` |
| 0x20-0x2F | chain: blocks, commits, receipts, head | ``storaged.chain`` |
| 0x30-0x3F | chain state entries (accounts, providers, deals, sectors, params, votes) | ``storaged.chain`` |
| 0x40-0x4F | consensus write-ahead log | ``storaged.chain.consensus`` |
| 0x50-0x5F | provider market: local deals, sectors, proving schedule | ``storaged.node`` |
| 0x60-0x6F | client: files, uploads in progress | ``cli`` / ``storaged.node`` |
"""

from __future__ import annotations

from storaged.errors import LocalBugError

META = b"\x01"

U64_MAX = (1 << 64) - 1


def u64(n: int) -> bytes:
    """Encode ``n`` as 8 big-endian bytes.

    Raises:
        LocalBugError: ``n`` is outside 0..2**64-1 (callers validate user input before this).
    """
    if not 0 <= n <= U64_MAX:
        raise LocalBugError(f"u64 key field out of range: {n}")
    return n.to_bytes(8, "big")


def u32(n: int) -> bytes:
    """Encode ``n`` as 4 big-endian bytes.

    Raises:
        LocalBugError: ``n`` is outside 0..2**32-1.
    """
    if not 0 <= n <= 0xFFFFFFFF:
        raise LocalBugError(f"u32 key field out of range: {n}")
    return n.to_bytes(4, "big")


def hash32(h: bytes) -> bytes:
    """Check and return a raw 32-byte hash key field.

    Raises:
        LocalBugError: ``h`` is not 32 bytes.
    """
    if len(h) != 32:
        raise LocalBugError(f"hash key field must be 32 bytes, got {len(h)}")
    return bytes(h)


def meta_key(name: bytes) -> bytes:
    """Key of a metadata record (schema version and the like)."""
    return META + name
