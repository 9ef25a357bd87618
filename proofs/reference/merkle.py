"""Pure-Python twin of the C BLAKE3 binding and Merkle trees (``proofs/csrc/merkle.c``): the spec.

Tree format v1:

* ``n_leaves`` is a power of two >= 1; leaves are raw 32-byte values (never hashed).
* An internal node is ``blake3(left || right, key=NODE_KEY)`` where
  ``NODE_KEY = blake3(b"", derive_key_context=NODE_CONTEXT)``.  Nodes are keyed and 64 bytes
  long, leaves 32 bytes, so a leaf can never be mistaken for a node.
* The stored tree is rows ``drop+1 .. depth`` bottom-up, each row left to right, the root last;
  row ``r`` holds ``n_leaves >> r`` nodes.  The lowest ``drop`` internal rows are left out and
  rebuilt from the leaves when a leaf of their subtree is opened.
* A path is ``depth`` sibling nodes, bottom-up (leaf's sibling first); a batch of paths is their
  concatenation in the order of the indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

from proofs.errors import ProofError

NODE_CONTEXT = "storaged 2026-11 merkle node v1"
"""The derive_key context of the node key; versioned, since changing it changes every root."""

NODE_KEY = blake3.blake3(b"", derive_key_context=NODE_CONTEXT).digest()


def blake3_hash(data: bytes) -> bytes:
    """BLAKE3 hash (32 bytes)."""
    return blake3.blake3(data).digest()


def blake3_keyed_hash(key: bytes, data: bytes) -> bytes:
    """BLAKE3 keyed hash (32 bytes) under a 32-byte key."""
    if len(key) != 32:
        raise ProofError(f"blake3_keyed_hash: key must be 32 bytes, got {len(key)}")
    return blake3.blake3(data, key=key).digest()


def blake3_derive_key(context: str, material: bytes) -> bytes:
    """BLAKE3 derive_key (32 bytes)."""
    if "\0" in context:
        raise ProofError("blake3_derive_key: context must not contain NUL characters")
    return blake3.blake3(material, derive_key_context=context).digest()


def blake3_keyed_hash_many(key: bytes, data: bytes, count: int) -> bytes:
    """Keyed hashes of ``count`` equal-length messages that concatenate to ``data``."""
    if len(key) != 32:
        raise ProofError(f"blake3_keyed_hash_many: key must be 32 bytes, got {len(key)}")
    if count < 0:
        raise ProofError(f"blake3_keyed_hash_many: count must be >= 0, got {count}")
    if (len(data) != 0) if count == 0 else (len(data) % count != 0):
        raise ProofError(
            f"blake3_keyed_hash_many: {len(data)} bytes do not split into {count} equal messages"
        )
    size = len(data) // count if count else 0
    return b"".join(blake3_keyed_hash(key, data[i * size : (i + 1) * size]) for i in range(count))


def merkle_node_context() -> str:
    """The derive_key context string of the node key."""
    return NODE_CONTEXT


def merkle_hash_pair(left: bytes, right: bytes) -> bytes:
    """The parent of two 32-byte nodes."""
    if len(left) != 32 or len(right) != 32:
        raise ProofError(
            f"merkle_hash_pair: nodes must be 32 bytes, got {len(left)} and {len(right)}"
        )
    return blake3.blake3(left + right, key=NODE_KEY).digest()


def _depth(n: int) -> int:
    return n.bit_length() - 1


def _check_leaves(leaves: bytes, drop: int, fn: str) -> int:
    if len(leaves) == 0 or len(leaves) % 32:
        raise ProofError(
            f"{fn}: leaves must be a non-empty multiple of 32 bytes, got {len(leaves)}"
        )
    n = len(leaves) // 32
    if n & (n - 1):
        raise ProofError(f"{fn}: number of leaves must be a power of two, got {n}")
    d = _depth(n)
    if drop < 0 or (drop != 0 if d == 0 else drop >= d):
        raise ProofError(f"{fn}: drop must be in [0, {d or 1}) for {n} leaves, got {drop}")
    return n


def _next_row(row: bytes) -> bytes:
    return b"".join(
        merkle_hash_pair(row[i : i + 32], row[i + 32 : i + 64]) for i in range(0, len(row), 64)
    )


def _rows(leaves: bytes) -> list[bytes]:
    """All rows, leaves first, root last."""
    rows = [bytes(leaves)]
    while len(rows[-1]) > 32:
        rows.append(_next_row(rows[-1]))
    return rows


def merkle_tree(leaves: bytes, drop: int = 0) -> bytes:
    """The stored tree: rows drop+1 .. depth, bottom-up (empty for a single leaf)."""
    _check_leaves(leaves, drop, "merkle_tree")
    return b"".join(_rows(leaves)[drop + 1 :])


def merkle_tree_into(leaves: bytes, out: bytearray | memoryview, drop: int = 0) -> None:
    """Build the tree into ``out``, a writable buffer of exactly the tree's size."""
    tree = merkle_tree(leaves, drop)
    if len(out) != len(tree):
        raise ProofError(
            f"merkle_tree_into: out must be {len(tree)} bytes for {len(leaves) // 32} leaves "
            f"with drop {drop}, got {len(out)}"
        )
    out[:] = tree


def _check_tree(tree: bytes, n: int, drop: int, fn: str) -> None:
    want = ((n >> drop) - 1) * 32
    if len(tree) != want:
        raise ProofError(
            f"{fn}: tree must be {want} bytes for {n} leaves with drop {drop}, got {len(tree)}"
        )


def merkle_root(leaves: bytes, tree: bytes, drop: int = 0) -> bytes:
    """The root of a built tree (the leaf itself for a single leaf)."""
    n = _check_leaves(leaves, drop, "merkle_root")
    _check_tree(tree, n, drop, "merkle_root")
    return bytes(leaves[:32]) if n == 1 else bytes(tree[-32:])


def merkle_root_of(leaves: bytes) -> bytes:
    """The root over ``leaves`` (what ``merkle_root(leaves, merkle_tree(leaves))`` returns)."""
    _check_leaves(leaves, 0, "merkle_root_of")
    return bytes(_rows(leaves)[-1])


def _check_indices(indices: Sequence[int], n: int, fn: str) -> None:
    for i, index in enumerate(indices):
        if not isinstance(index, int):
            raise TypeError(f"{fn}: indices[{i}] is not an int")
        if not 0 <= index < n:
            raise ProofError(f"{fn}: index {index} out of range for {n} leaves")


def merkle_paths(leaves: bytes, tree: bytes, drop: int, indices: Sequence[int]) -> bytes:
    """The concatenated opening paths of ``indices``."""
    n = _check_leaves(leaves, drop, "merkle_paths")
    _check_tree(tree, n, drop, "merkle_paths")
    _check_indices(indices, n, "merkle_paths")
    d = _depth(n)
    # The twin rebuilds every row from the leaves: simple, and independent of the stored tree.
    rows = _rows(leaves)
    out = []
    for index in indices:
        for r in range(d):
            sib = (index >> r) ^ 1
            out.append(rows[r][32 * sib : 32 * sib + 32])
    return b"".join(out)


def merkle_verify_paths(
    root: bytes, n_leaves: int, indices: Sequence[int], leaf_values: bytes, paths: bytes
) -> bool:
    """True if every leaf value with its path hashes up to ``root``."""
    fn = "merkle_verify_paths"
    if len(root) != 32:
        raise ProofError(f"{fn}: root must be 32 bytes, got {len(root)}")
    if n_leaves < 1 or n_leaves & (n_leaves - 1):
        raise ProofError(f"{fn}: n_leaves must be a power of two >= 1, got {n_leaves}")
    _check_indices(indices, n_leaves, fn)
    d = _depth(n_leaves)
    k = len(indices)
    if len(leaf_values) != 32 * k:
        raise ProofError(
            f"{fn}: leaf_values must be {32 * k} bytes for {k} indices, got {len(leaf_values)}"
        )
    if len(paths) != 32 * d * k:
        raise ProofError(
            f"{fn}: paths must be {32 * d * k} bytes ({k} paths of depth {d}), got {len(paths)}"
        )
    ok = True
    for j, index in enumerate(indices):
        cur = bytes(leaf_values[32 * j : 32 * j + 32])
        for r in range(d):
            sib = bytes(paths[32 * (d * j + r) : 32 * (d * j + r + 1)])
            cur = merkle_hash_pair(sib, cur) if (index >> r) & 1 else merkle_hash_pair(cur, sib)
        ok &= cur == root
    return ok
