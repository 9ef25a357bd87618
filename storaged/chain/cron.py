"""End-of-block cron: the state changes every block makes after its transactions, in order.

Order (fixed; each step sees the previous ones): (0) expire deals not activated by their
start epoch; (1) schedule the next validator set
(bonded providers, effective at h + 2); (2) apply governance changes due at h + 1, so the
next block runs under them; (3) check the supply invariant.  The remaining deal steps
(close proving deadlines, settle payments) are not built yet and will go
before (1).  The proposer runs the same function, so its state root matches validators'.
"""

from __future__ import annotations

from storaged.chain import deals, governance, providers
from storaged.chain.state import StateOverlay
from storaged.chain.supply import check_supply


def end_of_block(state: StateOverlay, height: int) -> None:
    """Run the end-of-block steps for the block at ``height``.

    Raises:
        StateCorrupt: the supply invariant fails (a bug).
    """
    deals.expire_unactivated(state, height)
    providers.update_validator_set(state, height)
    governance.apply_due(state, height + 1)
    check_supply(state)
