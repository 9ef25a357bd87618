"""PoRep (version 1): challenges, proof bytes, proving and verification.

Challenges: c_j = 1 + (u64 of H_porep(seed[32] || u64 sector || u32 j)[0..8]) mod (N - 1), so node 0
(which has no same-layer parents) is never challenged.

Proof bytes (little-endian), for L layers, depth D = log2 N and k challenges:

    magic "SDRP" | u8 version (1) | u8 L | u8 D | u8 0 | u32 k | comm_c[32] | comm_r_last[32]
    then per challenge j:
      u64 node c_j
      15 openings of columns, in order: c_j, its 6 same-layer parents, its 8 expander parents;
        each = L labels (32 bytes each, layer 1 first) | D sibling hashes against comm_c
      data leaf[32] | D siblings against comm_d
      replica leaf[32] | D siblings against comm_r_last

The verifier recomputes every label of the challenged column from the parents' columns, checks
each column against comm_c, the leaves against comm_d and comm_r_last, replica = data XOR the
last label, and comm_r = H(comm_c || comm_r_last).  Any mismatch returns False.
"""

from __future__ import annotations

from blake3 import blake3

from proofs.errors import ProofError
from proofs.reference import _sdr_tree as tree
from proofs.reference import sealing
from proofs.reference.graph import check_nodes, drg_parents, expander_parents

PROOF_MAGIC = b"SDRP"
PROOF_VERSION = 1
_HEADER = 12 + 64
CHALLENGE_KEY = sealing._key("porep challenge")


def porep_challenges(seed: bytes, sector: int, k: int, n_nodes: int) -> list[int]:
    """Return the k challenged nodes (each in [1, N))."""
    if len(seed) != 32:
        raise ProofError("seed must be 32 bytes")
    check_nodes(n_nodes)
    out = []
    for j in range(k):
        h = blake3(seed + sector.to_bytes(8, "little") + j.to_bytes(4, "little"), key=CHALLENGE_KEY)
        out.append(1 + int.from_bytes(h.digest()[:8], "little") % (n_nodes - 1))
    return out


def _parents(n_nodes: int, v: int) -> list[int]:
    return [v, *drg_parents(n_nodes, v), *expander_parents(n_nodes, v)]


def porep_proof_size(n_nodes: int, n_layers: int, k: int) -> int:
    """Return the byte length of a proof."""
    d = check_nodes(n_nodes)
    return _HEADER + k * (8 + 15 * 32 * (n_layers + d) + 2 * 32 * (1 + d))


def prove_porep(
    data: bytes, replica: bytes, rid: bytes, n_layers: int, sector: int, seed: bytes, k: int
) -> bytes:
    """Recompute the layers (keeping only the challenged columns) and return the proof bytes."""
    data_leaves = sealing.leaves(data)
    rep_leaves = sealing.leaves(replica)
    n = len(data_leaves)
    if len(rep_leaves) != n:
        raise ProofError("data and replica differ in length")
    chals = porep_challenges(seed, sector, k, n)
    need = {p for c in chals for p in _parents(n, c)}
    _, states, cols = sealing.label_layers(rid, n, n_layers, need)
    c_rows = tree.build(states)
    d_rows = tree.build(data_leaves)
    r_rows = tree.build(rep_leaves)
    depth = check_nodes(n)
    out = [PROOF_MAGIC, bytes([PROOF_VERSION, n_layers, depth, 0]), k.to_bytes(4, "little")]
    out += [c_rows[-1][0], r_rows[-1][0]]
    for c in chals:
        out.append(c.to_bytes(8, "little"))
        for p in _parents(n, c):
            out += [*cols[p], tree.path(c_rows, p)]
        out += [data_leaves[c], tree.path(d_rows, c), rep_leaves[c], tree.path(r_rows, c)]
    return b"".join(out)


def verify_porep(
    comm_d: bytes,
    comm_r: bytes,
    rid: bytes,
    n_nodes: int,
    n_layers: int,
    sector: int,
    seed: bytes,
    k: int,
    proof: bytes,
) -> bool:
    """Return whether ``proof`` proves the replica behind comm_r seals comm_d under rid."""
    chals = porep_challenges(seed, sector, k, n_nodes)
    depth = check_nodes(n_nodes)
    if len(proof) != porep_proof_size(n_nodes, n_layers, k):
        return False
    if proof[:4] != PROOF_MAGIC or proof[4:8] != bytes([PROOF_VERSION, n_layers, depth, 0]):
        return False
    if int.from_bytes(proof[8:12], "little") != k:
        return False
    comm_c, comm_r_last = proof[12:44], proof[44:76]
    if sealing.comm_r(comm_c, comm_r_last) != comm_r:
        return False
    pos = _HEADER
    col_len, path_len = 32 * n_layers, 32 * depth

    def take(size: int) -> bytes:
        nonlocal pos
        pos += size
        return proof[pos - size : pos]

    for c in chals:
        if int.from_bytes(take(8), "little") != c:
            return False
        columns: dict[int, list[bytes]] = {}
        order = _parents(n_nodes, c)
        opened = []
        for p in order:
            raw = take(col_len)
            col = [raw[i : i + 32] for i in range(0, col_len, 32)]
            if not tree.verify(comm_c, depth, p, sealing.column_digest(col), take(path_len)):
                return False
            columns[p] = col
            opened.append(col)
        drg, exp = order[1:7], order[7:]
        for layer in range(1, n_layers + 1):
            want = sealing.label(
                rid,
                layer,
                c,
                [columns[p][layer - 1] for p in drg],
                [columns[p][layer - 2] for p in exp] if layer > 1 else [],
            )
            if opened[0][layer - 1] != want:
                return False
        d_leaf, d_path = take(32), take(path_len)
        r_leaf, r_path = take(32), take(path_len)
        if not tree.verify(comm_d, depth, c, d_leaf, d_path):
            return False
        if not tree.verify(comm_r_last, depth, c, r_leaf, r_path):
            return False
        last = opened[0][n_layers - 1]
        if bytes(a ^ b for a, b in zip(d_leaf, last, strict=True)) != r_leaf:
            return False
    return True
