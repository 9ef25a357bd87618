"""Pure-Python twin of the proofs C core: readable, slow, and the specification.

Every function here has the same name, arguments and results as its C counterpart in
``proofs._native``; the tests run both on the same inputs and compare.  The twin is split by
topic (``merkle``, ``sealing``, ...) and this package re-exports every public function, so
``proofs.reference.NAME`` mirrors ``proofs._native.NAME``.
"""

from __future__ import annotations

from proofs.errors import ProofError
from proofs.reference.merkle import (
    blake3_derive_key,
    blake3_hash,
    blake3_keyed_hash,
    blake3_keyed_hash_many,
    merkle_hash_pair,
    merkle_node_context,
    merkle_paths,
    merkle_root,
    merkle_tree,
    merkle_tree_into,
    merkle_verify_paths,
)

__all__ = [
    "ProofError",
    "blake3_derive_key",
    "blake3_hash",
    "blake3_keyed_hash",
    "blake3_keyed_hash_many",
    "merkle_hash_pair",
    "merkle_node_context",
    "merkle_paths",
    "merkle_root",
    "merkle_tree",
    "merkle_tree_into",
    "merkle_verify_paths",
    "xor_bytes",
]


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """Return ``a XOR b``.

    Raises:
        ProofError: the inputs differ in length.
    """
    if len(a) != len(b):
        raise ProofError("xor_bytes: inputs differ in length")
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")
