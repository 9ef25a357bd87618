from __future__ import annotations

import json
from pathlib import Path

import nacl.signing
import pytest

from storaged.chain import encoding
from storaged.chain.errors import InvalidSignature, MalformedEncoding, WrongChain
from storaged.chain.tx import decode_tx, sign_tx, signing_payload, signing_tag
from tests.chain.helpers import CHAIN, key, pk, transfer

VECTOR = Path(__file__).parent.parent / "vectors" / "chain_tx_v1.json"


def test_golden_vector() -> None:
    v = json.loads(VECTOR.read_text())
    k = nacl.signing.SigningKey(bytes.fromhex(v["seed"]))
    body = {"to": bytes.fromhex(v["body"]["to"]), "amount": v["body"]["amount"]}
    raw = sign_tx(k, v["chain"], v["kind"], v["nonce"], v["fee"], body)
    assert raw.hex() == v["tx"]
    tx = decode_tx(raw, v["chain"])
    assert tx.hash.hex() == v["tx_hash"]
    assert signing_payload(tx.unsigned()).hex() == v["signing_payload"]
    assert (tx.sender, tx.nonce, tx.fee, tx.body) == (bytes(k.verify_key), 7, 3, body)


def test_roundtrip() -> None:
    tx = decode_tx(transfer(1, 2, 50, nonce=4, fee=2), CHAIN)
    assert (tx.kind, tx.sender, tx.nonce, tx.fee) == ("transfer", pk(1), 4, 2)
    assert tx.body == {"to": pk(2), "amount": 50}


def _resign(raw: bytes, mutate: str) -> bytes:
    outer = encoding.decode(raw)
    if mutate == "amount":
        outer["tx"]["body"]["amount"] += 1
    elif mutate == "sig":
        outer["sig"] = bytes([outer["sig"][0] ^ 1]) + outer["sig"][1:]
    elif mutate == "sender":
        outer["tx"]["from"] = pk(9)
    return encoding.encode(outer)


@pytest.mark.parametrize("mutate", ["amount", "sig", "sender"])
def test_tampering_breaks_signature(mutate: str) -> None:
    with pytest.raises(InvalidSignature):
        decode_tx(_resign(transfer(1, 2, 50, nonce=0), mutate), CHAIN)


def test_other_chain_rejected() -> None:
    with pytest.raises(WrongChain):
        decode_tx(transfer(1, 2, 50, nonce=0), "another-chain")


def test_kind_tags_are_distinct() -> None:
    # A signature made for one kind must not verify as another kind with the same fields.
    tags = {signing_tag(k) for k in ("transfer", "escrow_deposit", "escrow_withdraw")}
    assert len(tags) == 3
    raw = sign_tx(key(1), CHAIN, "escrow_deposit", 0, 1, {"amount": 5})
    outer = encoding.decode(raw)
    outer["tx"]["kind"] = "escrow_withdraw"
    with pytest.raises(InvalidSignature):
        decode_tx(encoding.encode(outer), CHAIN)


@pytest.mark.parametrize(
    "patch",
    [
        {"v": 2},
        {"kind": "mint"},
        {"nonce": -1},
        {"fee": 2**64},
        {"from": b"\x01" * 31},
        {"body": {"to": b"\x02" * 32}},
        {"body": {"to": b"\x02" * 32, "amount": 1, "memo": "x"}},
    ],
)
def test_malformed_rejected(patch: dict[str, object]) -> None:
    outer = encoding.decode(transfer(1, 2, 50, nonce=0))
    outer["tx"].update(patch)
    with pytest.raises(MalformedEncoding):
        decode_tx(encoding.encode(outer), CHAIN)
