"""Signed transactions: byte format, signing payload, decoding.

Wire format, version 1 (canonical CBOR, see :mod:`storaged.chain.encoding`)::

    SignedTx = {"tx": Tx, "sig": bytes(64)}
    Tx = {"v": 1, "chain": text, "kind": text, "from": bytes(32) ed25519 public key,
          "nonce": uint, "fee": uint, "body": Body[kind]}

Bodies by kind (all amounts are unsigned integers below 2**64):

| kind | body |
|---|---|
| ``transfer`` | ``{"to": bytes(32), "amount": uint}`` |
| ``escrow_deposit`` | ``{"amount": uint}`` (balance -> escrow) |
| ``escrow_withdraw`` | ``{"amount": uint}`` (unlocked escrow -> balance) |
| ``update_provider`` | ``{"peer_id": text, "addrs": [text], "price": uint, "capacity": uint}`` |
| ``register_provider`` | the ``update_provider`` fields plus ``"collateral": uint`` |
| ``bond`` | ``{"amount": uint}`` (balance -> validator bond) |
| ``gov_propose`` | ``{"param": text, "value": uint, "effective": uint height}`` |
| ``publish_deal`` | ``{"proposal": map, "client_sig": bytes(64), "provider_sig": bytes(64)}`` |
| ``gov_vote`` | ``{"proposal": bytes(32) tx hash of the gov_propose}`` |
| ``precommit_sector`` | ``{"sector", "deal", "ticket_height": uint, "comm_r": bytes(32)}`` |
| ``provecommit_sector`` | ``{"sector": uint, "proof": bytes}`` (PoRep, porep format v1) |
| ``submit_post`` | ``{"posts": [{"sector": uint, "period": uint, "proof": bytes}, ...]}`` (<= 64) |
| ``declare_fault`` | ``{"sectors": [uint, ...]}`` (<= 64) |
| ``terminate_deal`` | ``{"deal": uint}`` |
| ``report_evidence`` | ``{"evidence": bytes}`` (anyone; consensus equivocation evidence) |
| ``unbond`` | ``{"amount": uint}`` (bond -> balance after ``unbond_delay`` blocks) |

Sector rules: :mod:`storaged.chain.sectors`; evidence and unbonding:
:mod:`storaged.chain.slashing`.

Signature: ed25519 (PyNaCl) over ``tag(kind) || chain_id_utf8 || blake3(encode(Tx))`` where
``tag(kind) = b"storaged-tx-" + kind + b"-v1\\x00"``.  A distinct tag per kind means a signature
can never be replayed as another kind of message (blocks, votes, deal proposals use their own).
The tx hash (its id) is ``blake3(encode(SignedTx))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from storaged.chain import encoding
from storaged.chain.errors import InvalidSignature, MalformedEncoding, WrongChain, ensure

TX_VERSION = 1
U64_LIMIT = 1 << 64

BODY_FIELDS: dict[str, dict[str, type]] = {
    "transfer": {"to": bytes, "amount": int},
    "escrow_deposit": {"amount": int},
    "escrow_withdraw": {"amount": int},
    "register_provider": {"peer_id": str, "addrs": list, "price": int, "capacity": int,
                          "collateral": int},
    "update_provider": {"peer_id": str, "addrs": list, "price": int, "capacity": int},
    "bond": {"amount": int},
    "gov_propose": {"param": str, "value": int, "effective": int},
    "gov_vote": {"proposal": bytes},
    "publish_deal": {"proposal": dict, "client_sig": bytes, "provider_sig": bytes},
    "precommit_sector": {"sector": int, "deal": int, "comm_r": bytes, "ticket_height": int},
    "provecommit_sector": {"sector": int, "proof": bytes},
    "submit_post": {"posts": list},
    "declare_fault": {"sectors": list},
    "terminate_deal": {"deal": int},
    "report_evidence": {"evidence": bytes},
    "unbond": {"amount": int},
}
TX_FIELDS: dict[str, type] = {
    "v": int, "chain": str, "kind": str, "from": bytes, "nonce": int, "fee": int, "body": dict,
}


def signing_tag(kind: str) -> bytes:
    """Domain-separation tag for transactions of ``kind``."""
    return b"storaged-tx-" + kind.encode() + b"-v1\x00"


@dataclass(frozen=True, slots=True)
class Tx:
    """A decoded, signature-checked transaction."""

    chain: str
    kind: str
    sender: bytes
    nonce: int
    fee: int
    body: dict[str, Any]
    sig: bytes
    raw: bytes
    hash: bytes

    def unsigned(self) -> dict[str, Any]:
        """The ``Tx`` map that the signature covers."""
        return _unsigned(self.chain, self.kind, self.sender, self.nonce, self.fee, self.body)


def _unsigned(
    chain: str, kind: str, sender: bytes, nonce: int, fee: int, body: dict[str, Any]
) -> dict[str, Any]:
    return {"v": TX_VERSION, "chain": chain, "kind": kind, "from": sender,
            "nonce": nonce, "fee": fee, "body": body}


def signing_payload(unsigned: dict[str, Any]) -> bytes:
    """The bytes an ed25519 key signs for the unsigned transaction map."""
    kind: str = unsigned["kind"]
    chain: str = unsigned["chain"]
    return signing_tag(kind) + chain.encode() + encoding.digest(encoding.encode(unsigned))


def sign_tx(
    key: nacl.signing.SigningKey, chain: str, kind: str, nonce: int, fee: int,
    body: dict[str, Any],
) -> bytes:
    """Build and sign a transaction; returns its wire bytes (a ``SignedTx``)."""
    unsigned = _unsigned(chain, kind, bytes(key.verify_key), nonce, fee, body)
    sig = key.sign(signing_payload(unsigned)).signature
    return encoding.encode({"tx": unsigned, "sig": bytes(sig)})


def _check_uint(value: int, what: str) -> None:
    ensure(0 <= value < U64_LIMIT, MalformedEncoding, f"{what} out of u64 range")


def decode_tx(raw: bytes, chain_id: str) -> Tx:
    """Decode and authenticate a transaction (stateless checks only).

    Raises:
        MalformedEncoding: not canonical CBOR, wrong shape, version, kind or field range.
        WrongChain: signed for another chain.
        InvalidSignature: the signature does not verify for ``from``.
    """
    outer = encoding.require_map(encoding.decode(raw), {"tx": dict, "sig": bytes}, "SignedTx")
    tx = encoding.require_map(outer["tx"], TX_FIELDS, "Tx")
    ensure(tx["v"] == TX_VERSION, MalformedEncoding, f"unknown tx version {tx['v']}")
    ensure(tx["kind"] in BODY_FIELDS, MalformedEncoding, f"unknown tx kind {tx['kind']!r}")
    body = encoding.require_map(tx["body"], BODY_FIELDS[tx["kind"]], tx["kind"])
    ensure(len(tx["from"]) == 32, MalformedEncoding, "sender must be a 32-byte key")
    ensure(len(outer["sig"]) == 64, MalformedEncoding, "signature must be 64 bytes")
    _check_uint(tx["nonce"], "nonce")
    _check_uint(tx["fee"], "fee")
    for name, kind in BODY_FIELDS[tx["kind"]].items():
        if kind is int:
            _check_uint(body[name], name)
        elif name == "to":
            ensure(len(body[name]) == 32, MalformedEncoding, "recipient must be a 32-byte key")
    ensure(tx["chain"] == chain_id, WrongChain, f"tx for chain {tx['chain']!r}")
    try:
        nacl.signing.VerifyKey(tx["from"]).verify(signing_payload(tx), outer["sig"])
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise InvalidSignature("transaction signature does not verify") from exc
    return Tx(chain=tx["chain"], kind=tx["kind"], sender=tx["from"], nonce=tx["nonce"],
              fee=tx["fee"], body=body, sig=outer["sig"], raw=bytes(raw),
              hash=encoding.digest(raw))
