"""Chain error leaves.

A transaction or block that breaks a chain rule came from a user or a peer, not from a bug
here, so :class:`ChainError` sits under :class:`storaged.errors.RemoteError`.  Each rule raises
its own leaf so callers (mempool, consensus, CLI) can tell why a transaction was refused.
"""

from __future__ import annotations

from storaged.errors import IntegrityError, LocalBugError, RemoteError


class ChainError(RemoteError):
    """A transaction or block breaks a chain rule."""


class MalformedEncoding(ChainError):
    """Bytes are not the canonical CBOR encoding of a well-formed chain object."""


class InvalidSignature(ChainError):
    """An ed25519 signature does not verify over its signing payload."""


class WrongChain(ChainError):
    """The object names another chain id."""


class BadNonce(ChainError):
    """The transaction's nonce is not the sender's next nonce (replay or gap)."""


class InsufficientFunds(ChainError):
    """The sender's balance (or escrow) cannot cover the amount plus the fee."""


class FeeTooLow(ChainError):
    """The transaction offers less than the minimum fee in the chain parameters."""


class InvalidTransaction(ChainError):
    """A transaction field breaks a rule (bad amount, unknown kind, self-transfer...)."""


class UnknownObject(InvalidTransaction):
    """The transaction names a deal, sector or account record the chain does not have."""


class InvalidState(InvalidTransaction):
    """The deal or sector is not in a state that allows this transition."""


class InvalidProof(InvalidTransaction):
    """A PoRep, PoSt or equivocation proof does not verify."""


class WrongPeriod(InvalidTransaction):
    """A PoSt is outside its proving period's window, or the period is already proven."""


class DuplicateEvidence(InvalidTransaction):
    """This equivocation evidence was already used to slash."""


class InvalidBlock(ChainError):
    """A block header breaks a rule (height, parent, time, state root, tx limit...)."""


class StateCorrupt(LocalBugError):
    """Stored chain state fails its own invariants (totals do not add up, bad entry)."""


class StateProofInvalid(IntegrityError):
    """A state entry's Merkle proof does not lead to the committed state root."""


def ensure(condition: bool, error: type[ChainError], message: str) -> None:
    """Raise ``error(message)`` unless ``condition`` holds: the one way chain rules are checked.

    Raises:
        ChainError: the given leaf, when ``condition`` is false.
    """
    if not condition:
        raise error(message)
