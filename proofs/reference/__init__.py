"""Pure-Python twin of the proofs C core: readable, slow, and the specification.

Every function here has the same name, arguments and results as its C counterpart in
``proofs._native``; the tests run both on the same inputs and compare.  The twin is split by
topic (``merkle``, ``sealing``, ...) and this package re-exports every public function, so
``proofs.reference.NAME`` mirrors ``proofs._native.NAME``.
"""

from __future__ import annotations

from proofs.errors import ProofError
from proofs.reference.graph import drg_parents, expander_parents
from proofs.reference.merkle import (
    blake3_derive_key,
    blake3_hash,
    blake3_keyed_hash,
    blake3_keyed_hash_many,
    merkle_hash_pair,
    merkle_node_context,
    merkle_paths,
    merkle_root,
    merkle_root_of,
    merkle_tree,
    merkle_tree_into,
    merkle_verify_paths,
)
from proofs.reference.porep import porep_challenges, porep_proof_size, prove_porep, verify_porep
from proofs.reference.post import (
    post_challenges,
    post_proof_size,
    prove_post,
    verify_post,
    verify_post_batch,
)
from proofs.reference.sealing import (
    Commitments,
    comm_d,
    comm_r,
    replica_id,
    seal,
    seal_batch,
    unseal,
)

__all__ = [
    "Commitments",
    "ProofError",
    "blake3_derive_key",
    "blake3_hash",
    "blake3_keyed_hash",
    "blake3_keyed_hash_many",
    "comm_d",
    "comm_r",
    "drg_parents",
    "expander_parents",
    "merkle_hash_pair",
    "merkle_node_context",
    "merkle_paths",
    "merkle_root",
    "merkle_root_of",
    "merkle_tree",
    "merkle_tree_into",
    "merkle_verify_paths",
    "porep_challenges",
    "porep_proof_size",
    "post_challenges",
    "post_proof_size",
    "prove_porep",
    "prove_post",
    "replica_id",
    "seal",
    "seal_batch",
    "unseal",
    "verify_porep",
    "verify_post",
    "verify_post_batch",
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
