"""The SDR parent graph (version 1): the normative definition.

A sector of N = 2**depth nodes is labelled in L layers.  Node v of layer l has 14 parents:

* 6 in the same layer (``drg_parents``): parent 0 is v - 1; parents 1..5 are drawn by bucket
  sampling (a distance d in [1, min(v, 2**b)] for a bucket b drawn in [1, bitlen(v)]), which makes
  the graph depth-robust: short and long back-edges at every scale.  Every parent is < v.  Node 0
  has no earlier node; its six slots are empty (hashed as 32 zero bytes).
* 8 in layer l - 1 (``expander_parents``): edge slot 8v + k (k < 8) is mapped through a keyed
  bijection ``perm`` of [0, 8N), and the parent is perm(8v + k) // 8.  Because ``perm`` is a
  bijection and node u owns the 8 images 8u..8u+7, every node of layer l - 1 is a parent exactly
  8 times (in-degree exactly 8).  Layer 1 has no previous layer: its 8 slots are empty.

Everything is deterministic from (GRAPH_VERSION, N): parents are computed on the fly, never
stored.  All per-node randomness comes from one keyed BLAKE3 per node.
"""

from __future__ import annotations

from functools import cache

from blake3 import blake3

from proofs.errors import ProofError

GRAPH_VERSION = 1
DRG_DEGREE = 6
EXP_DEGREE = 8
PERM_ROUNDS = 4
_KEY_CTX = "storaged proofs v1 key"
_DRG_KEY = blake3(b"storaged sdr v1 drg", derive_key_context=_KEY_CTX).digest()
_EXP_KEY = blake3(b"storaged sdr v1 expander", derive_key_context=_KEY_CTX).digest()


def check_nodes(n_nodes: int) -> int:
    """Return log2(n_nodes), or raise ProofError if it is not a power of two >= 2."""
    if n_nodes < 2 or n_nodes & (n_nodes - 1):
        raise ProofError(f"node count must be a power of two >= 2, got {n_nodes}")
    return n_nodes.bit_length() - 1


def drg_parents(n_nodes: int, v: int) -> list[int]:
    """Return the 6 same-layer parents of node v (empty list for node 0)."""
    check_nodes(n_nodes)
    if not 0 <= v < n_nodes:
        raise ProofError(f"node {v} out of range for {n_nodes} nodes")
    if v == 0:
        return []
    seed = blake3(n_nodes.to_bytes(8, "little") + v.to_bytes(8, "little"), key=_DRG_KEY).digest()
    out = [v - 1]
    m = v.bit_length()
    for i in range(1, DRG_DEGREE):
        r = int.from_bytes(seed[6 * (i - 1) : 6 * i], "little")
        bucket = 1 + (r & 0xFFFF) % m
        upper = min(v, 1 << bucket)
        out.append(v - (1 + (r >> 16) % upper))
    return out


@cache
def _perm_keys(n_nodes: int) -> list[tuple[int, int]]:
    seed = blake3(n_nodes.to_bytes(8, "little"), key=_EXP_KEY).digest()
    keys = []
    for r in range(PERM_ROUNDS):
        add = int.from_bytes(seed[8 * r : 8 * r + 4], "little")
        mul = int.from_bytes(seed[8 * r + 4 : 8 * r + 8], "little") | 1
        keys.append((add, mul))
    return keys


def perm(n_nodes: int, x: int) -> int:
    """The keyed bijection of [0, 8N): rounds of add, multiply by an odd key, xor-shift."""
    bits = check_nodes(n_nodes) + 3
    mask = (1 << bits) - 1
    shift = (bits + 1) // 2
    for add, mul in _perm_keys(n_nodes):
        x = (x + add) & mask
        x = (x * mul) & mask
        x ^= x >> shift
    return x


def expander_parents(n_nodes: int, v: int) -> list[int]:
    """Return the 8 parents of node v in the previous layer."""
    check_nodes(n_nodes)
    if not 0 <= v < n_nodes:
        raise ProofError(f"node {v} out of range for {n_nodes} nodes")
    return [perm(n_nodes, EXP_DEGREE * v + k) // EXP_DEGREE for k in range(EXP_DEGREE)]
