"""Sealing, PoRep and PoSt for the provider and the chain: typed wrappers over the C core.

The byte formats and the normative algorithms are in ``proofs.reference.{graph,sealing,porep,
post}``; this module runs the hot parts (labelling, Merkle trees) in C and produces results
bit-identical to the twin (the tests compare them).  PoRep verification runs in C
(``sd_porep_verify``), and so do PoSt challenges and verification (``sd_post_verify``).
Bad parameters raise ProofError; a bad proof makes ``verify_*`` return False.

Every function that can run long releases the GIL (the C labelling and tree building do), so
providers can seal on worker threads (``trio.to_thread.run_sync``).
"""

from __future__ import annotations

from collections.abc import Sequence

import proofs
from proofs import merkle
from proofs.errors import ProofError
from proofs.profiles import Profile
from proofs.reference import porep as _porep
from proofs.reference import post as _post
from proofs.reference.sealing import MAX_BATCH, Commitments, check_batch, comm_r, replica_id

__all__ = [
    "MAX_BATCH",
    "Commitments",
    "comm_d",
    "comm_r",
    "porep_challenges",
    "post_challenges",
    "prove_porep",
    "prove_post",
    "replica_id",
    "seal",
    "seal_batch",
    "unseal",
    "unseal_batch",
    "verify_porep",
    "verify_post",
    "verify_post_batch",
]

porep_challenges = _porep.porep_challenges


def _native() -> object:
    if proofs.native is None:
        raise ProofError("sealing needs the C backend (STORAGED_PROOFS_BACKEND=c)")
    return proofs.native


def _nodes(buf: bytes | bytearray | memoryview) -> int:
    size = len(memoryview(buf).cast("B"))
    if size % 32 or size < 64 or (size // 32) & (size // 32 - 1):
        raise ProofError(f"sector size must be 32 * a power of two >= 2, got {size} bytes")
    return size // 32


def _root(leaves: bytes | bytearray | memoryview) -> bytes:
    # Root only: a stored tree would be a fresh 32N-byte buffer to page-fault in.
    return merkle.merkle_root_of(leaves)


def comm_d(data: bytes | bytearray | memoryview) -> bytes:
    """Return the Merkle root of a sector's data."""
    _nodes(data)
    return _root(data)


def seal(
    data: bytes | bytearray | memoryview, rid: bytes, layers: int, out: bytearray | memoryview
) -> Commitments:
    """Seal ``data`` under ``rid`` into the caller's writable ``out``; return the commitments.

    Memory beyond the two buffers: two layers and the column digests (3 x the sector size).
    """
    n = _nodes(data)
    cols, _ = _native().sdr_label(rid, n, layers, data, out, True, [])  # type: ignore[attr-defined]
    cd, cc, crl = _root(data), _root(cols), _root(out)
    return Commitments(cd, cc, crl, comm_r(cc, crl))


def unseal(
    replica: bytes | bytearray | memoryview, rid: bytes, layers: int, out: bytearray | memoryview
) -> None:
    """Write the data behind ``replica`` into ``out`` (the same labelling work as a seal)."""
    n = _nodes(replica)
    _native().sdr_label(rid, n, layers, replica, out, False, [])  # type: ignore[attr-defined]


BATCH_MIN = 3
"""Fewer sectors than this are sealed one after the other: the 8-lane kernel costs the same
per node whatever the batch size, and one sector alone labels at about 0.35-0.4 of a full
batch's rate (docs/proofs.md), so batches of 1 or 2 gain nothing and take more memory."""


def _batch_nodes(
    bufs: Sequence[bytes | bytearray | memoryview], rids: Sequence[bytes],
    outs: Sequence[bytearray | memoryview],
) -> int:
    check_batch([len(memoryview(b).cast("B")) for b in bufs], len(rids))
    if len(outs) != len(bufs):
        raise ProofError(f"{len(bufs)} sectors but {len(outs)} output buffers")
    return _nodes(bufs[0])


def seal_batch(
    datas: Sequence[bytes | bytearray | memoryview],
    rids: Sequence[bytes],
    layers: int,
    outs: Sequence[bytearray | memoryview],
) -> list[Commitments]:
    """Seal up to ``MAX_BATCH`` sectors of one size at once, ``datas[i]`` under ``rids[i]``
    into ``outs[i]``; return their commitments in order.

    The results equal ``seal`` of each sector alone; batches of fewer than ``BATCH_MIN``
    sectors are sealed one by one.  The C core runs one sector per lane of
    8-way AVX2 compressions, reading the shared parents of all sectors with one load per
    message word (about 3x the labels per second of one core sealing one sector; see
    docs/proofs.md).  Memory beyond the buffers: two lane-interleaved layers of 8 x the sector
    size whatever the batch size, plus each sector's column digests.  Releases the GIL.

    Raises:
        ProofError: the batch is empty or has more than ``MAX_BATCH`` sectors, sizes differ,
            the counts of datas, rids and outs differ, or a size, replica id or layer count
            is invalid.
    """
    n = _batch_nodes(datas, rids, outs)
    if len(datas) < BATCH_MIN:
        return [seal(d, r, layers, o) for d, r, o in zip(datas, rids, outs, strict=True)]
    cols = _native().sdr_label_batch(list(rids), n, layers, list(datas), list(outs), True)  # type: ignore[attr-defined]
    res = []
    for data, col, out in zip(datas, cols, outs, strict=True):
        cd, cc, crl = _root(data), _root(col), _root(out)
        res.append(Commitments(cd, cc, crl, comm_r(cc, crl)))
    return res


def unseal_batch(
    replicas: Sequence[bytes | bytearray | memoryview],
    rids: Sequence[bytes],
    layers: int,
    outs: Sequence[bytearray | memoryview],
) -> None:
    """Write the data behind each of up to ``MAX_BATCH`` replicas into ``outs[i]`` at once.

    Raises:
        ProofError: like ``seal_batch``.
    """
    n = _batch_nodes(replicas, rids, outs)
    _native().sdr_label_batch(list(rids), n, layers, list(replicas), list(outs), False)  # type: ignore[attr-defined]


def prove_porep(
    data: bytes | bytearray | memoryview,
    replica: bytes | bytearray | memoryview,
    rid: bytes,
    layers: int,
    sector: int,
    seed: bytes,
    k: int,
) -> bytes:
    """Relabel the sector keeping the challenged columns; return proof bytes (porep format v1)."""
    n = _nodes(data)
    if _nodes(replica) != n:
        raise ProofError("data and replica differ in length")
    chals = porep_challenges(seed, sector, k, n)
    opened = [p for c in chals for p in _porep._parents(n, c)]
    scratch = bytearray(32 * n)
    cols, kept = _native().sdr_label(rid, n, layers, None, scratch, True, opened)  # type: ignore[attr-defined]
    del scratch
    depth = n.bit_length() - 1
    c_tree, d_tree, r_tree = (
        merkle.merkle_tree(cols),
        merkle.merkle_tree(data),
        merkle.merkle_tree(replica),
    )
    c_paths = merkle.merkle_paths(cols, c_tree, 0, opened)
    d_paths = merkle.merkle_paths(data, d_tree, 0, chals)
    r_paths = merkle.merkle_paths(replica, r_tree, 0, chals)
    dv, rv = memoryview(data).cast("B"), memoryview(replica).cast("B")
    col_len, path_len = 32 * layers, 32 * depth
    out = [
        _porep.PROOF_MAGIC,
        bytes([_porep.PROOF_VERSION, layers, depth, 0]),
        k.to_bytes(4, "little"),
    ]
    out += [merkle.merkle_root(cols, c_tree), merkle.merkle_root(replica, r_tree)]
    for j, c in enumerate(chals):
        out.append(c.to_bytes(8, "little"))
        for i in range(15):
            o = 15 * j + i
            out += [
                kept[o * col_len : (o + 1) * col_len],
                c_paths[o * path_len : (o + 1) * path_len],
            ]
        out += [bytes(dv[32 * c : 32 * c + 32]), d_paths[j * path_len : (j + 1) * path_len]]
        out += [bytes(rv[32 * c : 32 * c + 32]), r_paths[j * path_len : (j + 1) * path_len]]
    return b"".join(out)


def verify_porep(
    comm_d: bytes,
    comm_r: bytes,
    rid: bytes,
    n_nodes: int,
    layers: int,
    sector: int,
    seed: bytes,
    k: int,
    proof: bytes,
) -> bool:
    """Return whether ``proof`` (porep format v1) is valid; the C twin of the reference check."""
    chals = porep_challenges(seed, sector, k, n_nodes)
    ok: bool = _native().porep_verify(comm_d, comm_r, rid, n_nodes, layers, chals, proof)  # type: ignore[attr-defined]
    return ok


def post_challenges(randomness: bytes, sector: int, k: int, n_nodes: int) -> list[int]:
    """Return the k challenged replica leaves of ``sector`` (C twin of the reference).

    Raises ProofError if randomness is not 32 bytes or n_nodes not a power of two >= 2.
    """
    out: list[int] = _native().post_challenges(randomness, sector, k, n_nodes)  # type: ignore[attr-defined]
    return out


def verify_post(
    comm_r: bytes, sector: int, randomness: bytes, k: int, n_nodes: int, proof: bytes
) -> bool:
    """Return whether ``proof`` (post format v1) opens the challenged leaves behind comm_r.

    Runs in C with the GIL released.  Raises ProofError on bad parameters (randomness not
    32 bytes, n_nodes not a power of two >= 2); any defect of the proof returns False.
    """
    ok: bool = _native().verify_post(comm_r, sector, randomness, k, n_nodes, proof)  # type: ignore[attr-defined]
    return ok


def verify_post_batch(
    items: Sequence[tuple[bytes, int, bytes]], randomness: bytes, k: int, n_nodes: int
) -> list[bool]:
    """Verify many sectors' proofs of one window: items are (comm_r, sector, proof).

    One C call with the GIL released for the whole batch; raises like ``verify_post``.
    """
    out: list[bool] = _native().verify_post_batch(list(items), randomness, k, n_nodes)  # type: ignore[attr-defined]
    return out


def prove_post(
    replica: bytes | bytearray | memoryview, comm_c: bytes, challenges: Sequence[int]
) -> bytes:
    """Return the PoSt proof (post format v1) opening ``challenges`` of ``replica``."""
    n = _nodes(replica)
    if len(comm_c) != 32:
        raise ProofError("comm_c must be 32 bytes")
    tree = merkle.merkle_tree(replica)
    paths = merkle.merkle_paths(replica, tree, 0, list(challenges))
    depth = n.bit_length() - 1
    rv = memoryview(replica).cast("B")
    out = [_post.PROOF_MAGIC, bytes([_post.PROOF_VERSION, depth, 0, 0])]
    out += [len(challenges).to_bytes(4, "little"), comm_c, merkle.merkle_root(replica, tree)]
    for j, c in enumerate(challenges):
        out += [bytes(rv[32 * c : 32 * c + 32]), paths[32 * depth * j : 32 * depth * (j + 1)]]
    return b"".join(out)


def seal_profile(
    profile: Profile, data: bytes | bytearray | memoryview, rid: bytes
) -> tuple[bytearray, Commitments]:
    """Seal a full sector of ``profile`` into a new buffer."""
    if len(memoryview(data).cast("B")) != profile.sector_size:
        raise ProofError(f"{profile.name} sectors are {profile.sector_size} bytes")
    out = bytearray(profile.sector_size)
    return out, seal(data, rid, profile.layers, out)
