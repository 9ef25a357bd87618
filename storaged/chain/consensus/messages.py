"""Signed consensus messages: proposals and votes.  The byte formats here are a spec.

Wire encoding (canonical CBOR, ``cbor2.dumps(obj, canonical=True)``), version 1:

- Proposal: ``[1, "proposal", height, round, value, valid_round, proposer, signature]``
  (``valid_round`` is -1 when none; ``proposer`` the 32-byte ed25519 public key).
- Vote: ``[1, "vote", kind, height, round, value_id, validator, signature]``
  (``kind`` 1 = prevote, 2 = precommit; ``value_id`` = blake3(value), 32 bytes, or null for nil).

Signing payload: ``tag || u8 len(chain_id) || chain_id (UTF-8) || blake3(body)`` where ``body``
is the canonical CBOR of the encoding above without its final signature element, and the tag is
``b"storaged/consensus/proposal/v1\\0"`` or ``b"storaged/consensus/vote/v1\\0"``.  The chain
id is length-prefixed so no two (chain id, body) pairs give one payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blake3
import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from storaged.chain.consensus.errors import BadSignature, MalformedMessage

VERSION = 1
PREVOTE = 1
PRECOMMIT = 2
PROPOSAL_TAG = b"storaged/consensus/proposal/v1\x00"
VOTE_TAG = b"storaged/consensus/vote/v1\x00"
MAX_ROUND = 1 << 31
MAX_HEIGHT = (1 << 63) - 1


def value_id(value: bytes) -> bytes:
    """The identifier consensus votes on: blake3 of the opaque value."""
    return blake3.blake3(value).digest()


def _payload(tag: bytes, chain_id: str, body: list[Any]) -> bytes:
    cid = chain_id.encode()
    return tag + bytes([len(cid)]) + cid + blake3.blake3(cbor2.dumps(body, canonical=True)).digest()


def _verify(key: bytes, payload: bytes, sig: bytes) -> None:
    try:
        VerifyKey(key).verify(payload, sig)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise BadSignature("signature does not verify") from exc


@dataclass(frozen=True, slots=True)
class Proposal:
    """A round's proposed value, signed by the round's proposer."""

    height: int
    round: int
    value: bytes
    valid_round: int
    proposer: bytes
    signature: bytes

    def body(self) -> list[Any]:
        return [VERSION, "proposal", self.height, self.round, self.value, self.valid_round,
                self.proposer]

    def signing_payload(self, chain_id: str) -> bytes:
        return _payload(PROPOSAL_TAG, chain_id, self.body())

    def encode(self) -> bytes:
        return cbor2.dumps([*self.body(), self.signature], canonical=True)

    def verify(self, chain_id: str) -> None:
        """Raises: BadSignature: the proposer's signature does not verify."""
        _verify(self.proposer, self.signing_payload(chain_id), self.signature)


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit for a value id (or nil, ``value_id is None``)."""

    kind: int
    height: int
    round: int
    value_id: bytes | None
    validator: bytes
    signature: bytes

    def body(self) -> list[Any]:
        return [VERSION, "vote", self.kind, self.height, self.round, self.value_id,
                self.validator]

    def signing_payload(self, chain_id: str) -> bytes:
        return _payload(VOTE_TAG, chain_id, self.body())

    def encode(self) -> bytes:
        return cbor2.dumps([*self.body(), self.signature], canonical=True)

    def verify(self, chain_id: str) -> None:
        """Raises: BadSignature: the validator's signature does not verify."""
        _verify(self.validator, self.signing_payload(chain_id), self.signature)


Message = Proposal | Vote


def sign_proposal(key: SigningKey, chain_id: str, height: int, round_: int, value: bytes,
                  valid_round: int) -> Proposal:
    """Build and sign a proposal with ``key``."""
    unsigned = Proposal(height, round_, value, valid_round, bytes(key.verify_key), b"")
    sig = key.sign(unsigned.signing_payload(chain_id)).signature
    return Proposal(height, round_, value, valid_round, unsigned.proposer, sig)


def sign_vote(key: SigningKey, chain_id: str, kind: int, height: int, round_: int,
              vid: bytes | None) -> Vote:
    """Build and sign a vote with ``key``."""
    unsigned = Vote(kind, height, round_, vid, bytes(key.verify_key), b"")
    sig = key.sign(unsigned.signing_payload(chain_id)).signature
    return Vote(kind, height, round_, vid, unsigned.validator, sig)


def _int(x: object, lo: int, hi: int, what: str) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise MalformedMessage(f"{what} must be an integer in [{lo}, {hi}]")
    return x


def _bytes(x: object, size: int | None, what: str, max_len: int = 1 << 24) -> bytes:
    if type(x) is not bytes or (size is not None and len(x) != size) or len(x) > max_len:
        raise MalformedMessage(f"{what} must be {size if size else 'at most '+str(max_len)} bytes")
    return x


def decode_message(data: bytes, max_value: int = 1 << 24) -> Message:
    """Decode a proposal or vote; checks shape and canonical form, not the signature.

    Raises:
        MalformedMessage: not canonical CBOR, unknown version/type, or a bad field.
    """
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises many types on garbage
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    if not isinstance(obj, list) or len(obj) != 8:
        raise MalformedMessage("a consensus message is an 8-element array")
    if obj[0] != VERSION or type(obj[0]) is not int:
        raise MalformedMessage(f"unsupported message version {obj[0]!r}")
    msg: Message
    if obj[1] == "proposal":
        msg = Proposal(_int(obj[2], 0, MAX_HEIGHT, "height"), _int(obj[3], 0, MAX_ROUND, "round"),
                       _bytes(obj[4], None, "value", max_value),
                       _int(obj[5], -1, MAX_ROUND, "valid_round"),
                       _bytes(obj[6], 32, "proposer"), _bytes(obj[7], 64, "signature"))
        if msg.valid_round >= msg.round:
            raise MalformedMessage("valid_round must be below round")
    elif obj[1] == "vote":
        kind = _int(obj[2], PREVOTE, PRECOMMIT, "kind")
        vid = None if obj[5] is None else _bytes(obj[5], 32, "value_id")
        msg = Vote(kind, _int(obj[3], 0, MAX_HEIGHT, "height"),
                   _int(obj[4], 0, MAX_ROUND, "round"), vid,
                   _bytes(obj[6], 32, "validator"), _bytes(obj[7], 64, "signature"))
    else:
        raise MalformedMessage(f"unknown message type {obj[1]!r}")
    if msg.encode() != bytes(data):
        raise MalformedMessage("message is not in canonical encoding")
    return msg
