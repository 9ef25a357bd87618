"""PoSt in C: challenges, verify_post and verify_post_batch equal the twin, good and tampered."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proofs
from proofs import reference as ref
from proofs import seal as S
from proofs.errors import ProofError

# Under STORAGED_PROOFS_BACKEND=python there is no C to compare (test_backend asserts C is live
# in the default run).
pytestmark = pytest.mark.skipif(proofs.native is None, reason="C backend not loaded")

N, L, K = 256, 2, 5
RAND = b"\x5a" * 32


@cache
def _sealed(sector: int) -> tuple[bytes, ref.Commitments]:
    data = bytes((i * 7 + 3 * sector) & 0xFF for i in range(32 * N))
    rid = ref.replica_id(b"prov", sector, ref.comm_d(data), bytes(32))
    out = bytearray(len(data))
    comms = S.seal(data, rid, L, out)
    return bytes(out), comms


@cache
def _proof(sector: int) -> bytes:
    replica, c = _sealed(sector)
    return S.prove_post(replica, c.comm_c, S.post_challenges(RAND, sector, K, N))


@settings(max_examples=40, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 40),
    st.integers(1, 40),
)
def test_challenges_equal_twin(rand: bytes, sector: int, k: int, depth: int) -> None:
    n = 1 << depth
    assert S.post_challenges(rand, sector, k, n) == ref.post_challenges(rand, sector, k, n)


def test_honest_proofs_verify_in_c_and_twin() -> None:
    for s in (1, 2):
        proof, comm_r = _proof(s), _sealed(s)[1].comm_r
        assert S.verify_post(comm_r, s, RAND, K, N, proof)
        assert ref.verify_post(comm_r, s, RAND, K, N, proof)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_tampered_proofs_equal_twin(data: st.DataObject) -> None:
    proof = bytearray(_proof(1))
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "none"]))
    if how == "flip":
        bit = data.draw(st.integers(0, 8 * len(proof) - 1))
        proof[bit // 8] ^= 1 << (bit % 8)
    elif how == "truncate":
        del proof[data.draw(st.integers(0, len(proof) - 1)) :]
    elif how == "extend":
        proof += data.draw(st.binary(min_size=1, max_size=64))
    sector = data.draw(st.sampled_from([1, 1, 2]))
    k = data.draw(st.sampled_from([K, K, K - 1, K + 1, 0]))
    comm_r = _sealed(1)[1].comm_r
    args = (comm_r, sector, RAND, k, N, bytes(proof))
    c_ok = S.verify_post(*args)
    assert c_ok == ref.verify_post(*args)
    assert c_ok == (how == "none" and sector == 1 and k == K)


def test_batch_equals_single_and_twin() -> None:
    items = [(_sealed(s)[1].comm_r, s, _proof(s)) for s in (1, 2, 3)]
    items.append((items[0][0], 1, items[1][2]))  # sector 2's proof presented for sector 1
    items.append((items[2][0][:31], 3, items[2][2]))  # short comm_r
    want = [True, True, True, False, False]
    assert S.verify_post_batch(items, RAND, K, N) == want
    assert ref.verify_post_batch(items, RAND, K, N) == want
    assert [S.verify_post(cr, s, RAND, K, N, p) for cr, s, p in items] == want
    assert S.verify_post_batch([], RAND, K, N) == []


def test_bad_parameters_raise_like_twin() -> None:
    proof = _proof(1)
    for fn in (S.verify_post, ref.verify_post):
        with pytest.raises(ProofError, match="32 bytes"):
            fn(bytes(32), 1, bytes(31), K, N, proof)
        with pytest.raises(ProofError, match="power of two"):
            fn(bytes(32), 1, RAND, K, N - 1, proof)
        with pytest.raises(OverflowError):
            fn(bytes(32), -1, RAND, K, N, proof)
        for n in (-N, N + (1 << 64), 0):  # never wrapped into a valid count
            with pytest.raises(ProofError, match="power of two"):
                fn(bytes(32), 1, RAND, K, n, proof)
    with pytest.raises(ProofError, match="power of two"):
        S.verify_post_batch([(bytes(32), 1, proof)], RAND, K, 3)
    with pytest.raises(TypeError):
        S.verify_post_batch([(bytes(32), 1)], RAND, K, N)  # type: ignore[list-item]
