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
:func:`prove_entry` / :func:`verify_entry` give light clients membership proofs against it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import blake3

from storaged.chain.errors import StateProofInvalid
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



@dataclass(frozen=True, slots=True)
class EntryProof:
    """Merkle path of one state entry: its index among ``count`` sorted entries, siblings
    from the leaf up (a level where the node is carried up contributes no sibling).

    Wire form (canonical CBOR): ``{"index": uint, "count": uint, "siblings": [bytes(32)]}``.
    """

    index: int
    count: int
    siblings: tuple[bytes, ...]


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def prove_entry(entries: list[tuple[bytes, bytes]], key: bytes) -> tuple[bytes, EntryProof] | None:
    """The value at ``key`` and its proof against :func:`state_root` of ``entries`` (sorted).

    Returns None when ``key`` is absent (non-membership proofs are not supported yet).
    """
    keys = [k for k, _ in entries]
    pos = bisect.bisect_left(keys, key)
    if pos == len(keys) or keys[pos] != key:
        return None
    level = [leaf_hash(k, v) for k, v in entries]
    index, siblings = pos, []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)] + (
            [level[-1]] if len(level) % 2 else [])
        index //= 2
    return entries[pos][1], EntryProof(pos, len(entries), tuple(siblings))


def verify_entry(root: bytes, key: bytes, value: bytes, proof: EntryProof) -> None:
    """Check that (key, value) is in the state committed to by ``root``.

    Raises:
        StateProofInvalid: the proof is malformed or does not lead to ``root``.
    """
    if not 0 <= proof.index < proof.count:
        raise StateProofInvalid("proof index outside the entry count")
    node, index, width, used = leaf_hash(key, value), proof.index, proof.count, 0
    while width > 1:
        sibling = index ^ 1
        if sibling < width:
            if used == len(proof.siblings):
                raise StateProofInvalid("proof too short")
            other = proof.siblings[used]
            used += 1
            node = _node(other, node) if index % 2 else _node(node, other)
        index, width = index // 2, (width + 1) // 2
    if used != len(proof.siblings) or node != root:
        raise StateProofInvalid("state proof does not match the root")
