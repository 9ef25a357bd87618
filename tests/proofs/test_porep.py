"""PoRep twin: honest proofs verify; every kind of tampering is rejected."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import reference as ref

N, L, K, SECTOR = 128, 2, 3, 7
SEED = bytes(range(32))
TICKET = b"\x05" * 32


@cache
def _sealed(provider: bytes = b"prov-A") -> tuple[bytes, bytes, bytes, ref.Commitments, bytes]:
    data = bytes((i * 31) & 0xFF for i in range(32 * N))
    rid = ref.replica_id(provider, SECTOR, ref.comm_d(data), TICKET)
    replica, comms = ref.seal(data, rid, L)
    proof = ref.prove_porep(data, replica, rid, L, SECTOR, SEED, K)
    return data, replica, rid, comms, proof


def _verify(
    proof: bytes,
    rid: bytes | None = None,
    sector: int = SECTOR,
    comm_r: bytes | None = None,
    comm_d: bytes | None = None,
) -> bool:
    _, _, rid0, c, _ = _sealed()
    return ref.verify_porep(
        comm_d or c.comm_d, comm_r or c.comm_r, rid or rid0, N, L, sector, SEED, K, proof
    )


def test_honest_proof_verifies_and_has_documented_size() -> None:
    proof = _sealed()[4]
    assert len(proof) == ref.porep_proof_size(N, L, K)
    assert _verify(proof)


def test_challenges_avoid_node_zero_and_depend_on_inputs() -> None:
    a = ref.porep_challenges(SEED, 1, 64, 4)
    assert all(1 <= c < 4 for c in a)
    assert ref.porep_challenges(SEED, 1, 8, 1 << 20) != ref.porep_challenges(SEED, 2, 8, 1 << 20)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_rejected(data: st.DataObject) -> None:
    proof = bytearray(_sealed()[4])
    # Skip the reserved header byte 7 only if it is ever ignored; it is checked, so any bit counts.
    bit = data.draw(st.integers(0, 8 * len(proof) - 1))
    proof[bit // 8] ^= 1 << (bit % 8)
    assert not _verify(bytes(proof))


@pytest.mark.parametrize(
    "region", ["label", "column_path", "data_leaf", "replica_leaf", "challenge_index", "comm_c"]
)
def test_flip_in_each_region_rejected(region: int) -> None:
    proof = bytearray(_sealed()[4])
    col = 32 * L + 32 * 7  # one column opening: L labels + a depth-7 path
    start = {
        "comm_c": 12,
        "challenge_index": 76,
        "label": 84,
        "column_path": 84 + 32 * L,
        "data_leaf": 84 + 15 * col,
        "replica_leaf": 84 + 15 * col + 32 * 8,
    }[region]
    proof[start] ^= 0x10
    assert not _verify(bytes(proof))


def test_wrong_commitments_replica_id_sector_provider_rejected() -> None:
    _, _, rid, c, proof = _sealed()
    flip = bytes([c.comm_r[0] ^ 1]) + c.comm_r[1:]
    assert not _verify(proof, comm_r=flip)
    assert not _verify(proof, comm_d=bytes([c.comm_d[0] ^ 1]) + c.comm_d[1:])
    assert not _verify(proof, rid=bytes([rid[0] ^ 1]) + rid[1:])
    assert not _verify(proof, sector=SECTOR + 1)
    # Provider B presenting A's replica: B's replica id differs, so the labels do not match.
    _, _, rid_b, _, _ = _sealed(b"prov-B")
    assert not _verify(proof, rid=rid_b)


def test_truncated_or_wrong_version_rejected() -> None:
    proof = _sealed()[4]
    assert not _verify(proof[:-1])
    assert not _verify(proof[:4] + b"\x02" + proof[5:])


def test_proof_from_unsealed_data_rejected() -> None:
    # A lazy prover who stores the data and fakes the replica with random labels fails.
    data, _, rid, _, _ = _sealed()
    fake = bytes(b ^ 0x55 for b in data)
    proof = ref.prove_porep(data, fake, rid, L, SECTOR, SEED, K)
    assert not _verify(proof)
