"""The interface between consensus and the application (the chain) it orders values for.

Consensus decides on opaque ``value: bytes`` identified by ``blake3(value)``.  The application:

- ``validators(height)``: the :class:`ValidatorSet` for that height (set changes, e.g. effective
  at h+2, are the application's business; consensus takes what it returns).
- ``propose(height, round)``: a value to propose when this node is the round's proposer.
- ``validate(height, value)``: return None if honest validators may vote for ``value`` at
  ``height``; raise a :class:`storaged.errors.RemoteError` leaf otherwise.  Must be pure and
  deterministic: every honest node must reach the same verdict.
- ``commit(height, value, certificate)``: called by the shell for every decided height, in
  order, exactly once; persists value and certificate atomically.
"""

from __future__ import annotations

from typing import Protocol

from storaged.chain.consensus.certificate import Certificate
from storaged.chain.consensus.validators import ValidatorSet


class ConsensusApp(Protocol):
    """What consensus needs from the chain."""

    def validators(self, height: int) -> ValidatorSet: ...

    def propose(self, height: int, round_: int) -> bytes: ...

    def validate(self, height: int, value: bytes) -> None: ...

    def commit(self, height: int, value: bytes, certificate: Certificate) -> None: ...
