"""Chain state: a write overlay over the KV, and the state root that commits to all of it.

Applying a block reads through a :class:`StateOverlay` and writes only into it; nothing touches
the KV until :meth:`StateOverlay.write_to` adds the changes to the block's one atomic batch.  A
rejected block is simply dropped with its overlay, so it changes nothing.

State root (version 1): a binary blake3 Merkle tree over every state entry (keys under prefixes
0x30-0x3F) in key order::

    leaf = blake3(0x00 || u16be(len(key)) || key || value)
    node = blake3(0x01 || left || right)   (an odd last node is carried up unchanged)
    root of no entries = blake3(0x02)

It is recomputed from the full entry set each block (O(entries)); see docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import blake3

from storaged.store import schema
from storaged.store.kv import WriteBatch

_EMPTY_ROOT = blake3.blake3(b"\x02").digest()


class StateReader(Protocol):
    """What an overlay reads through: a KV, or another overlay."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


def _state_prefixes() -> list[bytes]:
    return [bytes([p]) for p in range(schema.CHAIN_STATE_FIRST, schema.CHAIN_STATE_LAST + 1)]


class StateOverlay:
    """Pending state writes on top of a KV snapshot of committed state."""

    def __init__(self, kv: StateReader) -> None:
        self._kv = kv
        self._writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        """The current value at ``key`` (pending writes first)."""
        if key in self._writes:
            return self._writes[key]
        return self._kv.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """Stage a write."""
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        """Stage a deletion."""
        self._writes[key] = None

    def child(self) -> StateOverlay:
        """A nested overlay whose writes land here only on :meth:`merge_into` (per-tx undo)."""
        return StateOverlay(self)

    def merge_into(self, parent: StateOverlay) -> None:
        """Move this overlay's writes into ``parent``."""
        parent._writes.update(self._writes)

    def scan_entries(self) -> Iterator[tuple[bytes, bytes]]:
        """Every state entry (committed merged with pending), in key order."""
        merged: dict[bytes, bytes] = {}
        for prefix in _state_prefixes():
            for key, value in self._kv.scan(prefix):
                merged[key] = value
        for key, maybe in self._writes.items():
            if key[0] < schema.CHAIN_STATE_FIRST or key[0] > schema.CHAIN_STATE_LAST:
                continue
            if maybe is None:
                merged.pop(key, None)
            else:
                merged[key] = maybe
        for key in sorted(merged):
            yield key, merged[key]

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """Pending writes in key order (None = delete)."""
        return sorted(self._writes.items())

    def write_to(self, batch: WriteBatch) -> None:
        """Add every pending write to an open KV batch."""
        for key, value in self.changes():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)

    def root(self) -> bytes:
        """The state root over committed plus pending entries."""
        return state_root(self.scan_entries())

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """KV-compatible scan (so overlays nest); merges pending writes."""
        merged = dict(self._kv.scan(prefix, start=start, reverse=reverse))
        for key, maybe in self._writes.items():
            if not key.startswith(prefix):
                continue
            if start is not None and ((key < start) if not reverse else (key > start)):
                continue
            if maybe is None:
                merged.pop(key, None)
            else:
                merged[key] = maybe
        for key in sorted(merged, reverse=reverse):
            yield key, merged[key]


def leaf_hash(key: bytes, value: bytes) -> bytes:
    """Merkle leaf of one state entry."""
    return blake3.blake3(b"\x00" + len(key).to_bytes(2, "big") + key + value).digest()


def state_root(entries: Iterator[tuple[bytes, bytes]]) -> bytes:
    """Merkle root over (key, value) entries given in key order."""
    level = [leaf_hash(k, v) for k, v in entries]
    if not level:
        return _EMPTY_ROOT
    while len(level) > 1:
        nxt = [blake3.blake3(b"\x01" + level[i] + level[i + 1]).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]

