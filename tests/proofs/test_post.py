"""PoSt twin: honest proofs verify, tampering and wrong sectors fail, batch form agrees."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import reference as ref

N, L, K = 128, 2, 4
RAND = b"\x09" * 32


@cache
def _sealed(sector: int) -> tuple[bytes, ref.Commitments]:
    data = bytes((i * 13 + sector) & 0xFF for i in range(32 * N))
    rid = ref.replica_id(b"prov", sector, ref.comm_d(data), bytes(32))
    return ref.seal(data, rid, L)


def _proof(sector: int) -> bytes:
    replica, c = _sealed(sector)
    return ref.prove_post(replica, c.comm_c, ref.post_challenges(RAND, sector, K, N))


def test_honest_proof_verifies() -> None:
    proof = _proof(1)
    assert len(proof) == ref.post_proof_size(N, K)
    assert ref.verify_post(_sealed(1)[1].comm_r, 1, RAND, K, N, proof)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_rejected(data: st.DataObject) -> None:
    proof = bytearray(_proof(1))
    bit = data.draw(st.integers(0, 8 * len(proof) - 1))
    proof[bit // 8] ^= 1 << (bit % 8)
    assert not ref.verify_post(_sealed(1)[1].comm_r, 1, RAND, K, N, bytes(proof))


def test_other_sector_or_randomness_rejected() -> None:
    proof = _proof(1)
    assert not ref.verify_post(_sealed(2)[1].comm_r, 2, RAND, K, N, proof)
    assert not ref.verify_post(_sealed(1)[1].comm_r, 1, b"\x0a" * 32, K, N, proof)


def test_batch_matches_single() -> None:
    items = [(_sealed(s)[1].comm_r, s, _proof(s)) for s in (1, 2, 3)]
    items.append((items[0][0], 1, items[1][2]))  # sector 2's proof presented for sector 1
    assert ref.verify_post_batch(items, RAND, K, N) == [True, True, True, False]


def test_challenges_in_range() -> None:
    assert all(0 <= c < 8 for c in ref.post_challenges(RAND, 5, 100, 8))
