"""The supply invariant: every unit minted is held somewhere or burned, exactly."""

from __future__ import annotations

from storaged.chain import accounts, providers, slashing
from storaged.chain.errors import StateCorrupt
from storaged.chain.state import StateOverlay
from storaged.store import schema


def check_supply(state: StateOverlay) -> None:
    """Verify sum(balance + escrow + locked) + collateral, bonds, pending unbonds + burned
    == minted.

    Raises:
        StateCorrupt: the invariant does not hold (a bug in a transition, never a peer's fault).
    """
    held = 0
    for key, _raw in state.scan(schema.STATE_ACCOUNT):
        held += accounts.load_account(state, key[len(schema.STATE_ACCOUNT):]).total()
    held += providers.held_by_providers(state)
    held += slashing.pending_unbonds(state)
    totals = accounts.load_totals(state)
    if held + totals.burned != totals.minted:
        raise StateCorrupt(f"supply broken: held {held} + burned {totals.burned} "
                           f"!= minted {totals.minted}")
