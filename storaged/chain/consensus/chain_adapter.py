"""Adapter from :class:`storaged.chain.app.ChainApp` to the :class:`ConsensusApp` interface.

The chain's proposer needs what consensus does not know: this validator's key (for the VRF
beacon), the wall clock (block time) and the mempool.  They are injected, so the adapter stays
testable with a fake clock and a list for a mempool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nacl.signing import SigningKey

from storaged.chain.app import ChainApp
from storaged.chain.consensus.certificate import Certificate
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.errors import InvalidBlock


class ChainConsensusApp:
    """:class:`ConsensusApp` over a :class:`ChainApp`."""

    def __init__(self, chain: ChainApp, key: SigningKey, clock: Callable[[], int],
                 mempool: Callable[[], Iterable[bytes]]) -> None:
        self.chain = chain
        self.key = key
        self.clock = clock
        self.mempool = mempool

    def validators(self, height: int) -> ValidatorSet:
        """Raises: StateCorrupt: the chain has no set for ``height``."""
        return ValidatorSet.of(self.chain.validators(height))

    def propose(self, height: int, round_: int) -> bytes:
        """A block at ``height``; its time is the clock, but always after the parent's."""
        time = max(self.clock(), self.chain.head().time + 1)
        return self.chain.propose(height, time, self.key, self.mempool())

    def validate(self, height: int, value: bytes) -> None:
        """Raises: ChainError: the block breaks a chain rule or is not for ``height``."""
        head = self.chain.head()
        if head.height + 1 != height:
            raise InvalidBlock(f"asked to validate height {height} on head {head.height}")
        self.chain.validate(value)

    def commit(self, height: int, value: bytes, certificate: Certificate) -> None:
        """Persist the block with its encoded certificate (one chain batch)."""
        self.chain.commit(value, certificate.encode())
