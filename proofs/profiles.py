"""Proof parameter profiles: sector size, layers and challenge counts, chosen by the chain."""

from __future__ import annotations

from dataclasses import dataclass

from proofs.errors import ProofError


@dataclass(frozen=True)
class Profile:
    """One set of sealing and proving parameters."""

    name: str
    sector_size: int
    layers: int
    porep_challenges: int
    post_challenges: int

    def __post_init__(self) -> None:
        size = self.sector_size
        if size < 4096 or size & (size - 1):
            raise ProofError(f"sector size must be a power of two >= 4 KiB, got {size}")
        if self.layers < 1 or self.porep_challenges < 1 or self.post_challenges < 1:
            raise ProofError("layers and challenge counts must be >= 1")

    @property
    def nodes(self) -> int:
        """N: the number of 32-byte nodes in a sector."""
        return self.sector_size // 32


DEVNET = Profile("devnet", 1 << 20, 2, 8, 4)
SMALL = Profile("small", 1 << 30, 4, 128, 10)
DEFAULT = Profile("default", 8 << 30, 4, 256, 10)
PROFILES = {p.name: p for p in (DEVNET, SMALL, DEFAULT)}


def profile(name: str) -> Profile:
    """Return the named profile."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ProofError(f"unknown proof profile {name!r}; known: {sorted(PROFILES)}") from None
