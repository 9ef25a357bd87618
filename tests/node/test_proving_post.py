"""PoSt from the stored replica tree: byte-identical to proofs.seal.prove_post, verified by
the chain's check, and robust to a lost or damaged tree (rebuilt) or replica (refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proofs import seal as proofs_seal
from proofs.profiles import DEVNET
from storaged.errors import NotFound
from storaged.node.proving import prove_from_store
from storaged.node.sectors import SectorStore, tree_drop, tree_size
from storaged.store.kv import MemoryKV
from tests.node.conftest import overwrite

PROVIDER = b"p" * 32


def sealed(store: SectorStore, size: int) -> tuple[bytes, proofs_seal.Commitments]:
    data = os.urandom(size)
    rid = proofs_seal.replica_id(PROVIDER, 0, proofs_seal.comm_d(data), b"t" * 32)
    comms = store.write_replica(0, size, lambda out: proofs_seal.seal(data, rid, 2, out))
    assert store.write_tree(0, size) == comms.comm_r_last
    return store.replica_path(0).read_bytes(), comms


@pytest.mark.parametrize("size", [4 << 10, 64 << 10])
def test_post_from_the_tree_matches_the_reference(tmp_path: Path, size: int) -> None:
    store = SectorStore(tmp_path, MemoryKV())
    replica, comms = sealed(store, size)
    assert store.tree_path(0).stat().st_size == tree_size(size) < size
    randomness = os.urandom(32)
    k, n = DEVNET.post_challenges, size // 32
    chals = proofs_seal.post_challenges(randomness, 0, k, n)
    proof = prove_from_store(store, 0, size, comms.comm_c, comms.comm_r_last, chals)
    assert proof == proofs_seal.prove_post(replica, comms.comm_c, chals)
    assert proofs_seal.verify_post(comms.comm_r, 0, randomness, k, n, proof)
    assert tree_drop(size) >= 1


def test_a_lost_or_damaged_tree_is_rebuilt_a_damaged_replica_is_refused(tmp_path: Path) -> None:
    size = 32 << 10
    store = SectorStore(tmp_path, MemoryKV())
    replica, comms = sealed(store, size)
    chals = list(range(0, size // 32, 97))
    expected = proofs_seal.prove_post(replica, comms.comm_c, chals)

    store.tree_path(0).unlink()
    assert prove_from_store(store, 0, size, comms.comm_c, comms.comm_r_last, chals) == expected
    assert store.tree_path(0).exists()

    overwrite(store.tree_path(0), 0, b"\x00" * (tree_size(size) // 2))
    assert prove_from_store(store, 0, size, comms.comm_c, comms.comm_r_last, chals) == expected

    overwrite(store.replica_path(0), 32 * chals[3], b"\x01" * 32)  # a challenged leaf rots
    assert prove_from_store(store, 0, size, comms.comm_c, comms.comm_r_last, chals) is None

    store.remove_replica(0)
    assert not store.tree_path(0).exists()
    with pytest.raises(NotFound):
        prove_from_store(store, 0, size, comms.comm_c, comms.comm_r_last, chals)
