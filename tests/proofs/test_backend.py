"""The C backend is live unless the twin is asked for, and both agree."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

import proofs
from proofs import reference


def test_backend_is_c_unless_python_requested() -> None:
    expected = os.environ.get("STORAGED_PROOFS_BACKEND", "c")
    assert expected == proofs.BACKEND
    if expected == "c":
        assert proofs.native is not None
        assert proofs.impl is proofs.native


@given(
    st.binary(max_size=300).flatmap(
        lambda a: st.tuples(st.just(a), st.binary(min_size=len(a), max_size=len(a)))
    )
)
def test_xor_matches_twin(pair: tuple[bytes, bytes]) -> None:
    a, b = pair
    assert proofs.xor_bytes(a, b) == reference.xor_bytes(a, b)
    assert proofs.xor_bytes(proofs.xor_bytes(a, b), b) == a


def test_xor_length_mismatch_is_proof_error() -> None:
    for impl in (proofs.impl, reference):
        try:
            impl.xor_bytes(b"ab", b"a")
        except proofs.ProofError as exc:
            assert "length" in str(exc)
        else:
            raise AssertionError("no ProofError for unequal lengths")
