from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storaged.chain import vrf

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "chain_vrf_rfc9381.json").read_text()
)["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["alpha"] or "empty")
def test_rfc9381_vectors(v: dict[str, str]) -> None:
    sk, pk, alpha = (bytes.fromhex(v[k]) for k in ("sk", "pk", "alpha"))
    if v["h"]:
        assert vrf.encode_to_curve(pk, alpha).hex() == v["h"]
    pi = vrf.prove(sk, alpha)
    assert pi.hex() == v["pi"]
    assert vrf.verify(pk, pi, alpha).hex() == v["beta"]
    assert vrf.proof_to_hash(pi).hex() == v["beta"]


def test_every_byte_of_the_proof_matters() -> None:
    v = VECTORS[1]
    pk, alpha, pi = (bytes.fromhex(v[k]) for k in ("pk", "alpha", "pi"))
    for i in range(len(pi)):
        bad = bytearray(pi)
        bad[i] ^= 0x01
        with pytest.raises(vrf.InvalidVrfProof):
            vrf.verify(pk, bytes(bad), alpha)


def test_wrong_alpha_key_and_lengths_rejected() -> None:
    v0, v1 = VECTORS[0], VECTORS[1]
    pi = bytes.fromhex(v0["pi"])
    with pytest.raises(vrf.InvalidVrfProof):
        vrf.verify(bytes.fromhex(v0["pk"]), pi, b"x")
    with pytest.raises(vrf.InvalidVrfProof):
        vrf.verify(bytes.fromhex(v1["pk"]), pi, b"")
    with pytest.raises(vrf.InvalidVrfProof):
        vrf.verify(bytes(32), pi, b"")  # identity-ish / small-order key
    with pytest.raises(vrf.InvalidVrfProof):
        vrf.verify(bytes.fromhex(v0["pk"]), pi[:-1], b"")


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64))
def test_prove_verify_roundtrip(seed: bytes, alpha: bytes) -> None:
    import nacl.signing

    pk = bytes(nacl.signing.SigningKey(seed).verify_key)
    pi = vrf.prove(seed, alpha)
    assert vrf.verify(pk, pi, alpha) == vrf.proof_to_hash(pi)
    assert vrf.prove(seed, alpha) == pi  # unique: one proof per (key, input)
