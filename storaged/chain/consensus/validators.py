"""Validator sets: voting power, the 2/3+ quorum rule and proposer selection."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from storaged.chain.consensus.errors import UnknownValidator
from storaged.errors import LocalBugError


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """Validators of one height: (ed25519 public key, power), sorted by key."""

    members: tuple[tuple[bytes, int], ...]

    @classmethod
    def of(cls, powers: Iterable[tuple[bytes, int]]) -> ValidatorSet:
        """Raises: LocalBugError: empty set, duplicate key, bad key size or power <= 0."""
        members = tuple(sorted(powers))
        keys = [k for k, _ in members]
        if not members or len(set(keys)) != len(keys):
            raise LocalBugError("validator set must be non-empty with distinct keys")
        if any(len(k) != 32 or p <= 0 for k, p in members):
            raise LocalBugError("validator keys are 32 bytes with positive power")
        return cls(members)

    @property
    def total(self) -> int:
        return sum(p for _, p in self.members)

    def power(self, key: bytes) -> int:
        """Raises: UnknownValidator: ``key`` is not in the set."""
        for k, p in self.members:
            if k == key:
                return p
        raise UnknownValidator(f"{key.hex()[:16]} is not a validator")

    def contains(self, key: bytes) -> bool:
        return any(k == key for k, _ in self.members)

    def quorum(self, power: int) -> bool:
        """More than two thirds of the total power (integer math)."""
        return power * 3 > self.total * 2

    def one_third(self, power: int) -> bool:
        """More than one third (f+1): at least one honest validator is among them."""
        return power * 3 > self.total

    def proposer(self, height: int, round_: int) -> bytes:
        """Weighted round robin over slots: validator i owns ``power_i`` of ``total`` slots.

        Slot ``((height + round) * stride) mod total`` is walked over the cumulative powers
        (validators sorted by key).  ``stride`` is coprime with ``total``, so each window of
        ``total`` consecutive (height + round) values visits every slot exactly once: every
        validator proposes exactly ``power`` times per window, and the stride (near the golden
        ratio of ``total``) spreads its turns instead of giving them back to back.
        Deterministic from the set alone, so every honest node agrees on it.
        """
        slot = ((height + round_) * self._stride()) % self.total
        for key, p in self.members:
            if slot < p:
                return key
            slot -= p
        raise LocalBugError("unreachable: slot beyond total power")

    def _stride(self) -> int:
        total = self.total
        s = max(1, (total * 618) // 1000)
        while math.gcd(s, total) != 1:
            s += 1
        return s
