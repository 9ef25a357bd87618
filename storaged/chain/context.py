"""What a transaction sees of its block: height, the parameters in force, the proof verifier."""

from __future__ import annotations

from dataclasses import dataclass, field

from storaged.chain.accounts import Params
from storaged.chain.verifier import NATIVE, ProofVerifier


@dataclass(frozen=True, slots=True)
class Context:
    """The block a transaction is applied in."""

    height: int
    params: Params
    verifier: ProofVerifier = field(default=NATIVE)
