"""SDR sealing (version 1): replica ids, layer labels, columns and commitments.

Byte formats (all integers little-endian; every hash is keyed BLAKE3 under a key derived with
derive_key("storaged proofs v1 key", <name>), so no two uses can collide):

* replica_id = H_replica(u16 len(provider) || provider || u64 sector || comm_d[32] || ticket[32]).
* label(l, v) = H_label(header[64] || 6 same-layer parent labels || 8 layer l-1 parent labels),
  header = replica_id[32] || u64 l || u64 v || 16 zero bytes: 512 bytes, 8 BLAKE3 blocks.
  Missing parents (node 0's same-layer slots, layer 1's expander slots) are 32 zero bytes.
  Layers are numbered 1..L.
* column digest c(v) = chain over the node's labels: c_0 = 32 zero bytes,
  c_l = H_column(c_(l-1) || label(l, v)), c(v) = c_L.  The chain lets the sealer fold each layer
  into a running 32-byte state per node, so sealing holds only the previous layer, the current
  layer and the column states (3 x 32 N bytes) whatever L is.
* comm_d = Merkle root of the data (32-byte leaves); comm_c = root of the column digests;
  comm_r_last = root of the replica; comm_r = H_comm_r(comm_c || comm_r_last).
* replica = data XOR label(L, .).

Batch sealing (``seal_batch``) seals up to ``MAX_BATCH`` sectors of one size and layer count
together; it is defined as sealing each sector alone, so its results are exactly those of
``seal`` per sector (the C core runs the sectors in the lanes of 8-way SIMD compressions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from blake3 import blake3

from proofs.errors import ProofError
from proofs.reference import _sdr_tree as tree
from proofs.reference.graph import check_nodes, drg_parents, expander_parents

SEAL_VERSION = 1
MAX_BATCH = 8
"""The most sectors one batch seal takes (one per lane of an 8-way compression)."""
_KEY_CTX = "storaged proofs v1 key"
ZERO = bytes(32)


def _key(name: str) -> bytes:
    return blake3(name.encode(), derive_key_context=_KEY_CTX).digest()


REPLICA_KEY = _key("replica id")
LABEL_KEY = _key("label")
COLUMN_KEY = _key("column")
COMM_R_KEY = _key("comm_r")


@dataclass(frozen=True)
class Commitments:
    """The public commitments of a sealed sector."""

    comm_d: bytes
    comm_c: bytes
    comm_r_last: bytes
    comm_r: bytes


def replica_id(provider: bytes, sector: int, comm_d: bytes, ticket: bytes) -> bytes:
    """Return the 32-byte replica id binding a replica to its provider, sector, data and ticket."""
    if len(provider) > 0xFFFF:
        raise ProofError("provider id longer than 65535 bytes")
    if not 0 <= sector < 1 << 64:
        raise ProofError(f"sector number {sector} out of range")
    if len(comm_d) != 32 or len(ticket) != 32:
        raise ProofError("comm_d and ticket must be 32 bytes each")
    msg = len(provider).to_bytes(2, "little") + provider + sector.to_bytes(8, "little")
    return blake3(msg + comm_d + ticket, key=REPLICA_KEY).digest()


def comm_r(comm_c: bytes, comm_r_last: bytes) -> bytes:
    """Return comm_r = H(comm_c || comm_r_last)."""
    return blake3(comm_c + comm_r_last, key=COMM_R_KEY).digest()


def label(rid: bytes, layer: int, v: int, drg: Iterable[bytes], exp: Iterable[bytes]) -> bytes:
    """Return label(layer, v) from the 6 same-layer and 8 previous-layer parent labels."""
    drg_l = list(drg)
    exp_l = list(exp)
    drg_l += [ZERO] * (6 - len(drg_l))
    exp_l += [ZERO] * (8 - len(exp_l))
    header = rid + layer.to_bytes(8, "little") + v.to_bytes(8, "little") + bytes(16)
    return blake3(header + b"".join(drg_l) + b"".join(exp_l), key=LABEL_KEY).digest()


def column_step(state: bytes, lab: bytes) -> bytes:
    """Fold one layer's label into a node's running column digest."""
    return blake3(state + lab, key=COLUMN_KEY).digest()


def column_digest(labels: Iterable[bytes]) -> bytes:
    """Return the column digest of a node's labels, layer 1 first."""
    state = ZERO
    for lab in labels:
        state = column_step(state, lab)
    return state


def leaves(data: bytes) -> list[bytes]:
    """Split a sector into 32-byte leaves (its node count must be a power of two >= 2)."""
    if len(data) % 32:
        raise ProofError(f"sector size {len(data)} is not a multiple of 32")
    check_nodes(len(data) // 32)
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def comm_d(data: bytes) -> bytes:
    """Return the Merkle root of the data."""
    return tree.build(leaves(data))[-1][0]


def label_layers(
    rid: bytes, n_nodes: int, n_layers: int, keep: Iterable[int] = ()
) -> tuple[list[bytes], list[bytes], dict[int, list[bytes]]]:
    """Label every layer; return (last layer, column digests, {v: column} for v in keep)."""
    if len(rid) != 32:
        raise ProofError("replica id must be 32 bytes")
    if n_layers < 1:
        raise ProofError(f"layer count must be >= 1, got {n_layers}")
    check_nodes(n_nodes)
    want = set(keep)
    cols: dict[int, list[bytes]] = {v: [] for v in want}
    states = [ZERO] * n_nodes
    prev: list[bytes] = []
    for layer in range(1, n_layers + 1):
        cur: list[bytes] = []
        for v in range(n_nodes):
            drg = [cur[p] for p in drg_parents(n_nodes, v)]
            exp = [prev[p] for p in expander_parents(n_nodes, v)] if prev else []
            cur.append(label(rid, layer, v, drg, exp))
        for v in range(n_nodes):
            states[v] = column_step(states[v], cur[v])
        for v in want:
            cols[v].append(cur[v])
        prev = cur
    return prev, states, cols


def seal(data: bytes, rid: bytes, n_layers: int) -> tuple[bytes, Commitments]:
    """Seal ``data`` under ``rid``; return the replica and its commitments."""
    lv = leaves(data)
    last, states, _ = label_layers(rid, len(lv), n_layers)
    replica = b"".join(
        bytes(a ^ b for a, b in zip(d, k, strict=True)) for d, k in zip(lv, last, strict=True)
    )
    cd = tree.build(lv)[-1][0]
    cc = tree.build(states)[-1][0]
    crl = tree.build(leaves(replica))[-1][0]
    return replica, Commitments(cd, cc, crl, comm_r(cc, crl))


def check_batch(sizes: Sequence[int], n_rids: int) -> None:
    """Check the shape of a batch: 1..MAX_BATCH sectors of one size, one replica id each.

    Raises:
        ProofError: the batch is empty or too large, the sizes differ, or the replica ids
            are not one per sector.
    """
    if not 1 <= len(sizes) <= MAX_BATCH:
        raise ProofError(f"a seal batch is 1..{MAX_BATCH} sectors, got {len(sizes)}")
    if n_rids != len(sizes):
        raise ProofError(f"{len(sizes)} sectors but {n_rids} replica ids")
    if len(set(sizes)) != 1:
        raise ProofError(f"sectors in a batch must be the same size, got {sorted(set(sizes))}")


def seal_batch(
    datas: Sequence[bytes], rids: Sequence[bytes], n_layers: int
) -> list[tuple[bytes, Commitments]]:
    """Seal several sectors of one size at once: ``[seal(d, r, n_layers) for d, r in ...]``.

    Raises:
        ProofError: see ``check_batch``, and whatever ``seal`` raises.
    """
    check_batch([len(d) for d in datas], len(rids))
    return [seal(d, r, n_layers) for d, r in zip(datas, rids, strict=True)]


def unseal(replica: bytes, rid: bytes, n_layers: int) -> bytes:
    """Recompute the last layer and return the data (replica XOR last layer)."""
    lv = leaves(replica)
    last, _, _ = label_layers(rid, len(lv), n_layers)
    return b"".join(
        bytes(a ^ b for a, b in zip(r, k, strict=True)) for r, k in zip(lv, last, strict=True)
    )
