"""End-of-block settlement of PoSt periods (the cron's first step).

For every sector whose current period's last height is this block (the post-due index):

- proven (a PoSt for that period was included and the sector is ACTIVE): the period's
  payment, ``price * blocks in the period``, moves from the client's ``locked`` to the
  provider's balance; the faulty streak resets.
- not proven, the sector FAULTY (declared or missed before), or a fault declared during the
  period (even if a PoSt for the period then recovered it): an unproven ACTIVE sector becomes
  FAULTY with reason ``"missed PoSt period p"``; ``fault_fee_bps`` of the deal's collateral
  is burned (capped at what is left) and the period's payment returns to the client's
  escrow.  More than ``max_faulty_periods`` faulty periods in a row: TERMINATED_FAULT (the
  remaining collateral burned, the client's unsettled payment refunded).

Otherwise the sector is scheduled for its next period; after the last one, for ``end``: at
height ``end`` a deal still ACTIVE is COMPLETED and the collateral left returns to the
provider's escrow.
"""

from __future__ import annotations

from typing import Any

from storaged.chain import accounts, deals, sectors
from storaged.chain.accounts import Params
from storaged.chain.errors import StateCorrupt
from storaged.chain.state import StateOverlay
from storaged.store import schema

_KEY_LEN = 1 + 8 + 32 + 8


def _due(state: StateOverlay, height: int) -> list[tuple[bytes, bytes, int]]:
    out = []
    for key, _ in state.scan(schema.STATE_POST_DUE):
        if len(key) != _KEY_LEN:
            raise StateCorrupt("malformed post-due index key")
        close = int.from_bytes(key[1:9], "big")
        if close > height:
            break  # ordered by close height
        if close < height:
            raise StateCorrupt(f"post-due entry for height {close} left behind at {height}")
        out.append((key, key[9:41], int.from_bytes(key[41:49], "big")))
    return out


def close_periods(state: StateOverlay, height: int) -> None:
    """Settle every proving period whose last height is ``height``.

    Raises:
        StateCorrupt: the index names a missing sector or deal, or an entry was skipped.
    """
    params = accounts.load_params(state)
    for key, provider, number in _due(state, height):
        state.delete(key)
        rec = sectors.load_sector(state, provider, number)
        if rec is None:
            raise StateCorrupt(f"post-due index names missing sector {number}")
        deal = deals.load_deal(state, rec["deal"])
        if deal is None:
            raise StateCorrupt(f"sector {number} names missing deal {rec['deal']}")
        _close_one(state, params, provider, number, rec, deal, height)


def _declared_within(rec: dict[str, Any], first: int, last: int) -> bool:
    """A fault was declared for the sector at a height in [first, last] (its history is in
    height order, so only its tail is read: at most one recovery fits in a period)."""
    for state_name, reason, height in reversed(rec["history"]):
        if height < first:
            return False
        if state_name == sectors.FAULTY and height <= last and reason == sectors.DECLARED:
            return True
    return False


def _close_one(state: StateOverlay, params: Params, provider: bytes, number: int,
               rec: dict[str, Any], deal: dict[str, Any], height: int) -> None:
    p = deal["proposal"]
    if height >= p["end"]:
        # the completion entry scheduled after the last period
        sectors.end_deal(state, rec["deal"], deal, deals.COMPLETED, "deal ended", height, burn=0)
        return
    length = rec["period_len"]
    period = sectors.period_at(p, height, length)
    first, last = sectors.period_bounds(p, period, length)
    due = int(p["price"]) * (last - first + 1)
    client = accounts.load_account(state, p["client"])
    client.locked -= due
    proven = rec["state"] == sectors.ACTIVE and rec["proven"] == period
    if proven and not _declared_within(rec, first, last):
        paid = accounts.load_account(state, provider)
        paid.balance += due
        accounts.store_account(state, provider, paid)
        rec["streak"] = 0
    else:
        client.escrow += due
        if rec["state"] == sectors.ACTIVE and not proven:
            reason = f"missed PoSt period {period}"
            sectors._transition(rec, sectors.FAULTY, reason, height)
            deal["history"].append([deal["state"], f"sector {number} FAULTY: {reason}", height])
        fee = min(p["collateral"] * params.fault_fee_bps // sectors.BPS,
                  p["collateral"] - deal["burned"])
        owner = accounts.load_account(state, provider)
        owner.locked -= fee
        accounts.store_account(state, provider, owner)
        totals = accounts.load_totals(state)
        totals.burned += fee
        accounts.store_totals(state, totals)
        deal["burned"] += fee
        rec["streak"] += 1
    accounts.store_account(state, p["client"], client)
    deal["settled"] += due
    sectors.store_sector(state, provider, number, rec)
    deals.store_deal(state, rec["deal"], deal)
    if rec["streak"] > params.max_faulty_periods:
        sectors.end_deal(state, rec["deal"], deal, deals.TERMINATED_FAULT,
                         f"faulty for {rec['streak']} periods in a row", height,
                         burn=p["collateral"] - deal["burned"])
    elif last + 1 >= p["end"]:
        state.put(schema.state_post_due_key(p["end"], provider, number), b"")
    else:
        _, next_close = sectors.period_bounds(p, period + 1, length)
        state.put(schema.state_post_due_key(next_close, provider, number), b"")
