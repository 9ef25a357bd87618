"""Minimal binary Merkle helper used by the sealing twin until ``proofs.reference.merkle`` lands.

Same construction as the pinned C API (merkle.h): raw 32-byte leaves, node = keyed BLAKE3 of
left || right under a derive_key context key, power-of-two leaf counts.  Kept private so the
sealing twin can be swapped onto the shared Merkle twin with a one-line import change.
"""

from __future__ import annotations

from blake3 import blake3

NODE_CONTEXT = "storaged 2026-11 merkle node v1"  # must equal proofs.reference.merkle's
_NODE_KEY = blake3(b"", derive_key_context=NODE_CONTEXT).digest()


def hash_pair(left: bytes, right: bytes) -> bytes:
    """Return the parent of two 32-byte nodes."""
    return blake3(left + right, key=_NODE_KEY).digest()


def build(leaves: list[bytes]) -> list[list[bytes]]:
    """Return every row of the tree, leaves first, root row last."""
    rows = [leaves]
    while len(rows[-1]) > 1:
        prev = rows[-1]
        rows.append([hash_pair(prev[i], prev[i + 1]) for i in range(0, len(prev), 2)])
    return rows


def path(rows: list[list[bytes]], index: int) -> bytes:
    """Return the sibling hashes of leaf ``index``, bottom-up."""
    out = []
    for row in rows[:-1]:
        out.append(row[index ^ 1])
        index >>= 1
    return b"".join(out)


def verify(root: bytes, depth: int, index: int, leaf: bytes, sibs: bytes) -> bool:
    """Return whether ``leaf`` at ``index`` with path ``sibs`` hashes up to ``root``."""
    if len(sibs) != 32 * depth or not 0 <= index < (1 << depth):
        return False
    node = leaf
    for d in range(depth):
        sib = sibs[32 * d : 32 * d + 32]
        node = hash_pair(sib, node) if (index >> d) & 1 else hash_pair(node, sib)
    return node == root
