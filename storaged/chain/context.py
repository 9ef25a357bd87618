"""What a transaction sees of its block: height and the parameters in force."""

from __future__ import annotations

from dataclasses import dataclass

from storaged.chain.accounts import Params


@dataclass(frozen=True, slots=True)
class Context:
    """The block a transaction is applied in."""

    height: int
    params: Params
