"""Commit certificates and equivocation evidence: standalone-verifiable byte formats.

Certificate, version 1, canonical CBOR: ``[1, "commit", height, round, value_id, [vote, ...]]``
where each vote is the encoded precommit (see :mod:`messages`), sorted by validator key.  It
proves: validators holding more than 2/3 of the height's power signed a precommit for
``value_id`` at (height, round).  With one-block finality that makes the value final.

Evidence, version 1: ``[1, "evidence", vote_a, vote_b]``: two votes by one validator for the
same (kind, height, round) with different value ids, encoded votes in byte order.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from storaged.chain.consensus.errors import ConsensusError, InvalidCertificate, MalformedMessage
from storaged.chain.consensus.messages import PRECOMMIT, Vote, decode_message
from storaged.chain.consensus.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class Certificate:
    """2/3+ signed precommits for one value at one height."""

    height: int
    round: int
    value_id: bytes
    votes: tuple[Vote, ...]

    def encode(self) -> bytes:
        votes = sorted(self.votes, key=lambda v: v.validator)
        return cbor2.dumps([1, "commit", self.height, self.round, self.value_id,
                            [v.encode() for v in votes]], canonical=True)

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Check every vote and the quorum against ``validators``.

        Raises:
            InvalidCertificate: a vote is not a matching precommit, is duplicated, is signed
                by a non-validator or badly, or the signers hold 2/3 of the power or less.
        """
        seen: set[bytes] = set()
        power = 0
        for v in self.votes:
            if (v.kind, v.height, v.round, v.value_id) != (PRECOMMIT, self.height, self.round,
                                                           self.value_id):
                raise InvalidCertificate("certificate holds a vote for something else")
            if v.validator in seen:
                raise InvalidCertificate("duplicate validator in certificate")
            seen.add(v.validator)
            try:
                power += validators.power(v.validator)
                v.verify(chain_id)
            except ConsensusError as exc:
                raise InvalidCertificate(f"bad vote in certificate: {exc}") from exc
        if not validators.quorum(power):
            raise InvalidCertificate(f"signers hold {power} of {validators.total}: no 2/3+")


def decode_certificate(data: bytes) -> Certificate:
    """Raises: MalformedMessage: not a canonical version-1 certificate."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    if (not isinstance(obj, list) or len(obj) != 6 or obj[:2] != [1, "commit"]
            or type(obj[2]) is not int or type(obj[3]) is not int
            or type(obj[4]) is not bytes or len(obj[4]) != 32 or not isinstance(obj[5], list)):
        raise MalformedMessage("not a version-1 commit certificate")
    votes = []
    for raw in obj[5]:
        if type(raw) is not bytes:
            raise MalformedMessage("certificate vote must be bytes")
        v = decode_message(raw)
        if not isinstance(v, Vote):
            raise MalformedMessage("certificate holds a non-vote")
        votes.append(v)
    cert = Certificate(obj[2], obj[3], obj[4], tuple(votes))
    if cert.encode() != bytes(data):
        raise MalformedMessage("certificate is not in canonical encoding")
    return cert


@dataclass(frozen=True, slots=True)
class Evidence:
    """One validator signed two different votes for the same (kind, height, round)."""

    vote_a: Vote
    vote_b: Vote

    def encode(self) -> bytes:
        a, b = sorted([self.vote_a.encode(), self.vote_b.encode()])
        return cbor2.dumps([1, "evidence", a, b], canonical=True)

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raises: ConsensusError: the votes do not prove an equivocation by a validator."""
        a, b = self.vote_a, self.vote_b
        if (a.validator != b.validator or (a.kind, a.height, a.round) != (b.kind, b.height,
                                                                           b.round)
                or a.value_id == b.value_id):
            raise ConsensusError("evidence votes do not conflict")
        validators.power(a.validator)
        a.verify(chain_id)
        b.verify(chain_id)
