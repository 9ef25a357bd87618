"""End-of-block cron: the state changes every block makes after its transactions, in order.

Order (fixed; each step sees the previous ones):

0. close proving periods whose last height is this block: pay proven periods, mark missed
   ones FAULTY with a fee, TERMINATED_FAULT past ``max_faulty_periods``, COMPLETED after the
   last period (:func:`storaged.chain.periods.close_periods`);
1. expire deals not activated by their start epoch (:func:`deals.expire_unactivated`);
2. release unbonds due at this height (:func:`slashing.release_unbonds`);
3. schedule the next validator set (bonded providers, effective at h + 2);
4. apply governance changes due at h + 1, so the next block runs under them;
5. check the supply invariant.

The proposer runs the same function, so its state root matches validators'.
"""

from __future__ import annotations

from storaged.chain import deals, governance, periods, providers, slashing
from storaged.chain.state import StateOverlay
from storaged.chain.supply import check_supply


def end_of_block(state: StateOverlay, height: int) -> None:
    """Run the end-of-block steps for the block at ``height``.

    Raises:
        StateCorrupt: the supply invariant fails or an index is inconsistent (a bug).
    """
    periods.close_periods(state, height)
    deals.expire_unactivated(state, height)
    slashing.release_unbonds(state, height)
    providers.update_validator_set(state, height)
    governance.apply_due(state, height + 1)
    check_supply(state)
