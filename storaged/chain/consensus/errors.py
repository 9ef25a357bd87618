"""Consensus error leaves: what a peer's proposal, vote or certificate did wrong.

Everything a peer sends is under :class:`ConsensusError` (a :class:`RemoteError`): the node
rejects the message and carries on, it never crashes on a peer's bytes.
"""

from __future__ import annotations

from storaged.errors import LocalBugError, RemoteError


class ConsensusError(RemoteError):
    """A consensus message or certificate from a peer is unacceptable."""


class MalformedMessage(ConsensusError):
    """Bytes are not the canonical CBOR encoding of a well-formed consensus message."""


class BadSignature(ConsensusError):
    """An ed25519 signature does not verify over the message's signing payload."""


class UnknownValidator(ConsensusError):
    """The signer is not in the validator set of the message's height."""


class WrongProposer(ConsensusError):
    """A proposal is signed by someone other than the round's proposer."""


class InvalidCertificate(ConsensusError):
    """A commit certificate does not prove 2/3+ of the power precommitted the value."""


class DoubleSignRefused(LocalBugError):
    """This validator was asked to sign a message conflicting with one in its WAL."""
