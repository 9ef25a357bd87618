"""Row-list view of the Merkle tree for the sealing twin (readable indexing by node).

The node hash is ``proofs.reference.merkle.merkle_hash_pair`` (the tree format spec); this helper
only keeps rows as lists of 32-byte nodes so the PoRep/PoSt twins read like the spec.
"""

from __future__ import annotations

from proofs.reference.merkle import merkle_hash_pair as hash_pair


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
