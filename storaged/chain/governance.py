"""Governance: chain parameters change only by a validator-weighted vote, at a later height.

Proposal record (``0x36 || proposal id``, the id is the ``gov_propose`` tx hash)::

    {"param": text, "value": uint, "effective": uint, "votes": [pubkey...] sorted,
     "status": "open" | "passed" | "applied" | "expired"}

Rules: only a validator of the current height proposes or votes; ``effective`` must be at least
``gov_min_delay`` blocks ahead; a proposal passes when the voters' power in the current set is
more than 2/3 of the set's total power (votes count once; power is re-weighed against the set
in force at each vote); the end-of-block cron applies a passed proposal at its effective
height and marks open proposals whose height arrived as expired.  Bounds on values keep a vote
from bricking the chain (e.g. ``max_txs_per_block`` >= 1).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from storaged.chain import accounts, encoding, providers
from storaged.chain.context import Context
from storaged.chain.errors import InvalidTransaction, StateCorrupt, ensure
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx
from storaged.store import schema

MIN_VALUES = {"min_fee": 0, "max_txs_per_block": 1, "min_provider_collateral": 0,
              "gov_min_delay": 1, "proof_profile": 0, "max_sector_size": 4096,
              "ticket_max_age": 1, "seed_delay": 1, "proving_period": 1, "fault_fee_bps": 0,
              "max_faulty_periods": 0, "early_termination_fee_bps": 0,
              "evidence_slash_bps": 0, "unbond_delay": 1}
# Upper bounds where a larger value has no meaning (basis points, profile numbers).
MAX_VALUES = {"proof_profile": 2, "fault_fee_bps": 10_000, "early_termination_fee_bps": 10_000,
              "evidence_slash_bps": 10_000}
PROPOSAL_FIELDS: dict[str, type] = {"param": str, "value": int, "effective": int,
                                    "votes": list, "status": str}


def _load(state: StateOverlay, proposal_id: bytes) -> dict[str, Any] | None:
    raw = state.get(schema.state_proposal_key(proposal_id))
    if raw is None:
        return None
    return encoding.require_map(encoding.decode(raw), PROPOSAL_FIELDS, "proposal")


def _store(state: StateOverlay, proposal_id: bytes, proposal: dict[str, Any]) -> None:
    state.put(schema.state_proposal_key(proposal_id), encoding.encode(proposal))


def _power(state: StateOverlay, height: int) -> dict[bytes, int]:
    return dict(providers.validators(state, height))


def propose(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """gov_propose: open a parameter change; the proposer's own vote is counted.

    Raises:
        InvalidTransaction: not a validator, unknown parameter, value below its floor, or the
            effective height is sooner than ``gov_min_delay``.
    """
    body = tx.body
    power = _power(state, ctx.height)
    ensure(tx.sender in power, InvalidTransaction, "only validators may propose")
    ensure(body["param"] in MIN_VALUES, InvalidTransaction, f"unknown param {body['param']!r}")
    ensure(body["value"] >= MIN_VALUES[body["param"]], InvalidTransaction,
           f"{body['param']} below its floor {MIN_VALUES[body['param']]}")
    ensure(body["value"] <= MAX_VALUES.get(body["param"], body["value"]), InvalidTransaction,
           f"{body['param']} above its ceiling {MAX_VALUES.get(body['param'])}")
    ensure(body["effective"] >= ctx.height + ctx.params.gov_min_delay, InvalidTransaction,
           f"effective height must be >= {ctx.height + ctx.params.gov_min_delay}")
    accounts.store_account(state, tx.sender, sender)
    proposal = {"param": body["param"], "value": body["value"], "effective": body["effective"],
                "votes": [], "status": "open"}
    _add_vote(proposal, tx.sender, power)
    _store(state, tx.hash, proposal)


def vote(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """gov_vote: add the sender's weight to an open proposal.

    Raises:
        InvalidTransaction: not a validator, no such proposal, not open, or already voted.
    """
    pid = tx.body["proposal"]
    ensure(len(pid) == 32, InvalidTransaction, "proposal id must be 32 bytes")
    power = _power(state, ctx.height)
    ensure(tx.sender in power, InvalidTransaction, "only validators may vote")
    proposal = _load(state, pid)
    if proposal is None:
        raise InvalidTransaction("no such proposal")
    ensure(proposal["status"] == "open", InvalidTransaction,
           f"proposal is {proposal['status']}")
    ensure(tx.sender not in proposal["votes"], InvalidTransaction, "already voted")
    accounts.store_account(state, tx.sender, sender)
    _add_vote(proposal, tx.sender, power)
    _store(state, pid, proposal)


def _add_vote(proposal: dict[str, Any], voter: bytes, power: dict[bytes, int]) -> None:
    proposal["votes"] = sorted([*proposal["votes"], voter])
    weight = sum(power.get(v, 0) for v in proposal["votes"])
    if 3 * weight > 2 * sum(power.values()):
        proposal["status"] = "passed"


def apply_due(state: StateOverlay, height: int) -> None:
    """Cron: apply passed proposals effective at ``height``; expire open ones that are due.

    Proposals apply in id order, so two changes of one parameter at one height resolve the
    same way on every node.

    Raises:
        StateCorrupt: a stored proposal is malformed.
    """
    params = accounts.load_params(state)
    changed = False
    for key, _raw in state.scan(schema.STATE_PROPOSAL):
        pid = key[len(schema.STATE_PROPOSAL):]
        proposal = _load(state, pid)
        if proposal is None or proposal["effective"] != height:
            continue
        if proposal["status"] == "passed":
            if proposal["param"] not in MIN_VALUES:
                raise StateCorrupt(f"proposal for unknown param {proposal['param']!r}")
            params = replace(params, **{proposal["param"]: proposal["value"]})
            proposal["status"] = "applied"
            changed = True
        elif proposal["status"] == "open":
            proposal["status"] = "expired"
        _store(state, pid, proposal)
    if changed:
        accounts.store_params(state, params)
