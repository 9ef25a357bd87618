"""PoSt (version 1): window challenges and Merkle openings of the replica.

Challenges: leaf_j = u64 of H_post(randomness[32] || u64 sector || u32 j)[0..8] mod N.

Proof bytes (little-endian), depth D = log2 N, k challenges:

    magic "SDPS" | u8 version (1) | u8 D | u16 0 | u32 k | comm_c[32] | comm_r_last[32]
    then per challenge: replica leaf[32] | D siblings against comm_r_last

The proof carries comm_c and comm_r_last; the verifier checks comm_r = H(comm_c || comm_r_last)
and every opening.  Any mismatch returns False.
"""

from __future__ import annotations

from blake3 import blake3

from proofs.errors import ProofError
from proofs.reference import _sdr_tree as tree
from proofs.reference import sealing
from proofs.reference.graph import check_nodes

PROOF_MAGIC = b"SDPS"
PROOF_VERSION = 1
CHALLENGE_KEY = sealing._key("post challenge")


def post_challenges(randomness: bytes, sector: int, k: int, n_nodes: int) -> list[int]:
    """Return the k challenged replica leaves."""
    if len(randomness) != 32:
        raise ProofError("randomness must be 32 bytes")
    check_nodes(n_nodes)
    out = []
    for j in range(k):
        msg = randomness + sector.to_bytes(8, "little") + j.to_bytes(4, "little")
        out.append(int.from_bytes(blake3(msg, key=CHALLENGE_KEY).digest()[:8], "little") % n_nodes)
    return out


def post_proof_size(n_nodes: int, k: int) -> int:
    """Return the byte length of a proof."""
    return 76 + k * 32 * (1 + check_nodes(n_nodes))


def prove_post(replica: bytes, comm_c: bytes, challenges: list[int]) -> bytes:
    """Return the openings of the challenged leaves of ``replica``."""
    lv = sealing.leaves(replica)
    depth = check_nodes(len(lv))
    if len(comm_c) != 32:
        raise ProofError("comm_c must be 32 bytes")
    rows = tree.build(lv)
    out = [PROOF_MAGIC, bytes([PROOF_VERSION, depth, 0, 0]), len(challenges).to_bytes(4, "little")]
    out += [comm_c, rows[-1][0]]
    for c in challenges:
        if not 0 <= c < len(lv):
            raise ProofError(f"challenge {c} out of range")
        out += [lv[c], tree.path(rows, c)]
    return b"".join(out)


def verify_post(
    comm_r: bytes, sector: int, randomness: bytes, k: int, n_nodes: int, proof: bytes
) -> bool:
    """Return whether ``proof`` opens the challenged leaves of the replica behind comm_r."""
    chals = post_challenges(randomness, sector, k, n_nodes)
    depth = check_nodes(n_nodes)
    if len(proof) != post_proof_size(n_nodes, k):
        return False
    if proof[:12] != PROOF_MAGIC + bytes([PROOF_VERSION, depth, 0, 0]) + k.to_bytes(4, "little"):
        return False
    comm_r_last = proof[44:76]
    if sealing.comm_r(proof[12:44], comm_r_last) != comm_r:
        return False
    step = 32 * (1 + depth)
    for j, c in enumerate(chals):
        at = 76 + j * step
        if not tree.verify(comm_r_last, depth, c, proof[at : at + 32], proof[at + 32 : at + step]):
            return False
    return True


def verify_post_batch(
    items: list[tuple[bytes, int, bytes]], randomness: bytes, k: int, n_nodes: int
) -> list[bool]:
    """Verify many sectors' proofs of one window: items are (comm_r, sector, proof)."""
    return [verify_post(cr, s, randomness, k, n_nodes, p) for cr, s, p in items]
