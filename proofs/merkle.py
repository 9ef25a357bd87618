"""Typed Merkle tree entry points over the live proofs backend (``proofs.impl``).

Format (v1, specified in ``proofs/reference/merkle.py`` and docs/proofs.md): binary tree over
raw 32-byte leaves, node = keyed BLAKE3 of left || right under the key derived from
``NODE_CONTEXT``; the stored tree is rows ``drop+1 .. depth`` bottom-up, root last; a path is
``depth`` sibling nodes bottom-up; a batch of paths is their concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import proofs
from proofs.reference.merkle import NODE_CONTEXT

__all__ = [
    "NODE_CONTEXT",
    "depth",
    "merkle_hash_pair",
    "merkle_paths",
    "merkle_root",
    "merkle_root_of",
    "merkle_tree",
    "merkle_tree_into",
    "merkle_verify_paths",
    "path_size",
]

Buffer = bytes | bytearray | memoryview


def depth(n_leaves: int) -> int:
    """log2(n_leaves) (the number of nodes in a path)."""
    return n_leaves.bit_length() - 1


def path_size(n_leaves: int) -> int:
    """Bytes in one opening path of a tree with ``n_leaves`` leaves."""
    return 32 * depth(n_leaves)


def merkle_hash_pair(left: Buffer, right: Buffer) -> bytes:
    """The parent node of two 32-byte nodes."""
    out: bytes = proofs.impl.merkle_hash_pair(left, right)
    return out


def merkle_tree(leaves: Buffer, drop: int = 0) -> bytes:
    """Build the tree over ``leaves`` (a power of two of 32-byte leaves), lowest ``drop`` rows
    left out. Releases the GIL in the C backend.

    Raises:
        ProofError: bad leaf buffer size or ``drop`` out of range.
    """
    out: bytes = proofs.impl.merkle_tree(leaves, drop)
    return out


def merkle_tree_into(leaves: Buffer, out: bytearray | memoryview, drop: int = 0) -> None:
    """Build the tree into ``out`` (exactly the tree's size; e.g. an mmap'd file), GIL released.

    Raises:
        ProofError: bad leaf buffer size, ``drop`` out of range, or ``out`` of the wrong size.
    """
    proofs.impl.merkle_tree_into(leaves, out, drop)


def merkle_root(leaves: Buffer, tree: Buffer, drop: int = 0) -> bytes:
    """The root of a tree built by :func:`merkle_tree` with the same ``drop``."""
    out: bytes = proofs.impl.merkle_root(leaves, tree, drop)
    return out


def merkle_root_of(leaves: Buffer) -> bytes:
    """The root over ``leaves`` without storing the tree (C: GIL released, no large buffer).

    Raises:
        ProofError: bad leaf buffer size.
    """
    out: bytes = proofs.impl.merkle_root_of(leaves)
    return out


def merkle_paths(leaves: Buffer, tree: Buffer, drop: int, indices: Sequence[int]) -> bytes:
    """Concatenated opening paths for ``indices`` (each ``path_size(n_leaves)`` bytes).

    Raises:
        ProofError: bad sizes or an index out of range.
    """
    out: bytes = proofs.impl.merkle_paths(leaves, tree, drop, indices)
    return out


def merkle_verify_paths(
    root: Buffer, n_leaves: int, indices: Sequence[int], leaf_values: Buffer, paths: Buffer
) -> bool:
    """True iff every ``leaf_values[i]`` at ``indices[i]`` with its path hashes to ``root``.

    Raises:
        ProofError: malformed arguments (sizes, ``n_leaves``, an index out of range).
    """
    ok: bool = proofs.impl.merkle_verify_paths(root, n_leaves, indices, leaf_values, paths)
    return ok
