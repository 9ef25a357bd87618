"""Sectors: precommit, PoRep (provecommit), PoSt periods, faults, early termination.

One deal per sector; the sector's size is the deal's ``size`` (a power of two, 4 KiB ..
``params.max_sector_size``) and its ``comm_d`` is the proposal's ``piece``.

Sector record (``0x3A || provider(32) || u64 number``), canonical CBOR::

    {"state": text, "deal": uint, "comm_d": bytes(32), "comm_r": bytes(32), "size": uint,
     "ticket_height": uint, "precommit_height": uint, "seed_height": uint,
     "proven": int (last proven period, -1 before the first), "streak": uint (consecutive
     faulty periods), "period_len": uint (``proving_period`` fixed at precommit, so a
     governance change never moves a live sector's periods), "history": [[state, reason,
     height], ...]}

States: PRECOMMITTED -> ACTIVE (PoRep verified) -> FAULTY (missed or declared) -> ACTIVE
(recovered by a PoSt) ...; final: COMPLETED, TERMINATED_EARLY, TERMINATED_FAULT, EXPIRED.

Randomness (:func:`storaged.chain.randomness.randomness`):

- ticket of height t: ``randomness(b"ticket", t, b"")``; replica id =
  ``proofs.seal.replica_id(provider, number, comm_d, ticket)``.
- PoRep seed: ``randomness(b"porep-seed", seed_height, provider || u64be(number))``.
- PoSt period p of a deal (P = the sector's ``period_len``) covers heights ``[start + p*P,
  min(start + (p+1)*P, end))``; its challenge randomness is ``randomness(b"post",
  start + p*P - 1, provider || u64be(number))`` and the challenged leaves are
  ``proofs.seal.post_challenges(that, number, k_post, size // 32)``.

Post-due index (``0x3B || u64 close || provider || u64 number`` -> b""): one entry per
sector with a live deal, keyed by the last height of its current period, so the cron only
touches sectors whose period closes in this block.
"""

from __future__ import annotations

from typing import Any

from proofs import seal
from proofs.profiles import Profile, profile
from storaged.chain import accounts, deals, encoding, randomness
from storaged.chain.accounts import PROOF_PROFILES, Params
from storaged.chain.context import Context
from storaged.chain.errors import (
    InvalidProof,
    InvalidState,
    InvalidTransaction,
    MalformedEncoding,
    StateCorrupt,
    UnknownObject,
    WrongPeriod,
    ensure,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx
from storaged.store import schema

PRECOMMITTED = "PRECOMMITTED"
ACTIVE = "ACTIVE"
FAULTY = "FAULTY"
DECLARED = "declared by the provider"  # the history reason of a declare_fault transition
SECTOR_FIELDS: dict[str, type] = {
    "state": str, "deal": int, "comm_d": bytes, "comm_r": bytes, "size": int,
    "ticket_height": int, "precommit_height": int, "seed_height": int, "proven": int,
    "streak": int, "period_len": int, "history": list,
}
MAX_POSTS = 64
TICKET_TAG = b"ticket"
SEED_TAG = b"porep-seed"
POST_TAG = b"post"
BPS = 10_000


def proof_profile(params: Params) -> Profile:
    """The proof profile (layers, challenge counts) the parameters select.

    Raises:
        StateCorrupt: ``proof_profile`` names no profile (governance bounds it).
    """
    name = PROOF_PROFILES.get(params.proof_profile)
    if name is None:
        raise StateCorrupt(f"unknown proof profile number {params.proof_profile}")
    return profile(name)


def load_sector(state: StateOverlay, provider: bytes, number: int) -> dict[str, Any] | None:
    """The sector record, if any. Raises StateCorrupt if malformed."""
    raw = state.get(schema.state_sector_key(provider, number))
    if raw is None:
        return None
    try:
        return encoding.require_map(encoding.decode(raw), SECTOR_FIELDS, "sector")
    except MalformedEncoding as exc:
        raise StateCorrupt(f"stored sector is malformed: {exc}") from exc


def store_sector(state: StateOverlay, provider: bytes, number: int, rec: dict[str, Any]) -> None:
    """Stage a sector record."""
    state.put(schema.state_sector_key(provider, number), encoding.encode(rec))


def _entropy(provider: bytes, number: int) -> bytes:
    return provider + schema.u64(number)


def ticket(state: StateOverlay, height: int) -> bytes:
    """The ticket randomness of ``height`` (what a replica id is bound to)."""
    return randomness.randomness(state, TICKET_TAG, height, b"")


def replica_id_of(state: StateOverlay, provider: bytes, number: int,
                  rec: dict[str, Any]) -> bytes:
    """The replica id the sector is sealed under."""
    return seal.replica_id(provider, number, rec["comm_d"], ticket(state, rec["ticket_height"]))


def porep_seed(state: StateOverlay, provider: bytes, number: int, seed_height: int) -> bytes:
    """The PoRep challenge seed of a precommitted sector."""
    return randomness.randomness(state, SEED_TAG, seed_height, _entropy(provider, number))


def period_bounds(proposal: dict[str, Any], period: int, length: int) -> tuple[int, int]:
    """(first, last) height of proving period ``period`` of a deal (last cut at ``end - 1``)."""
    first = int(proposal["start"]) + period * length
    return first, min(first + length, int(proposal["end"])) - 1


def period_at(proposal: dict[str, Any], height: int, length: int) -> int:
    """The proving period containing ``height`` (a height inside the deal)."""
    return (height - int(proposal["start"])) // length


def post_randomness(state: StateOverlay, proposal: dict[str, Any], provider: bytes, number: int,
                    period: int, length: int) -> bytes:
    """The challenge randomness of one period (drawn the block before it opens)."""
    first, _ = period_bounds(proposal, period, length)
    return randomness.randomness(state, POST_TAG, first - 1, _entropy(provider, number))


def post_challenges(state: StateOverlay, proposal: dict[str, Any], provider: bytes, number: int,
                    period: int, params: Params, length: int) -> list[int]:
    """The challenged leaves of period ``period`` (periods of ``length`` blocks)."""
    rand = post_randomness(state, proposal, provider, number, period, length)
    return seal.post_challenges(rand, number, proof_profile(params).post_challenges,
                                int(proposal["size"]) // 32)


def _transition(rec: dict[str, Any], new: str, reason: str, height: int) -> None:
    rec["state"] = new
    rec["history"].append([new, reason, height])


def note(state: StateOverlay, deal_id: int, deal: dict[str, Any], reason: str,
         height: int) -> None:
    """Record a sector fault or recovery in the deal's history (the deal stays ACTIVE)."""
    deal["history"].append([deal["state"], reason, height])
    deals.store_deal(state, deal_id, deal)


def _deal(state: StateOverlay, deal_id: int) -> dict[str, Any]:
    deal = deals.load_deal(state, deal_id)
    if deal is None:
        raise UnknownObject(f"no deal {deal_id}")
    return deal


def precommit(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """precommit_sector: reserve a sector number for a published deal with its comm_r.

    Raises:
        UnknownObject: no such deal.
        InvalidState: the deal is not PUBLISHED or already has a sector.
        InvalidTransaction: sender is not the deal's provider, the number is used, bad
            comm_r length, or the ticket height is uncommitted or older than
            ``ticket_max_age``.
    """
    body, params = tx.body, ctx.params
    number, deal_id = body["sector"], body["deal"]
    deal = _deal(state, deal_id)
    p = deal["proposal"]
    ensure(p["provider"] == tx.sender, InvalidTransaction, "only the deal's provider seals it")
    ensure(deal["state"] == deals.PUBLISHED, InvalidState, f"deal {deal_id} is {deal['state']}")
    ensure(deal["sector"] is None, InvalidState, f"deal {deal_id} already has a sector")
    ensure(len(body["comm_r"]) == 32, InvalidTransaction, "comm_r must be 32 bytes")
    ensure(load_sector(state, tx.sender, number) is None, InvalidTransaction,
           f"sector number {number} already used")
    t = body["ticket_height"]
    ensure(t < ctx.height, InvalidTransaction, f"ticket height {t} is not committed")
    ensure(ctx.height - t <= params.ticket_max_age, InvalidTransaction,
           f"ticket height {t} older than {params.ticket_max_age} blocks")
    seed_height = ctx.height + params.seed_delay
    ensure(seed_height < p["start"], InvalidTransaction,
           f"seed height {seed_height} not before the deal start {p['start']}")
    store_sector(state, tx.sender, number, {
        "state": PRECOMMITTED, "deal": deal_id, "comm_d": p["piece"], "comm_r": body["comm_r"],
        "size": p["size"], "ticket_height": t, "precommit_height": ctx.height,
        "seed_height": seed_height, "proven": -1, "streak": 0,
        "period_len": params.proving_period,
        "history": [[PRECOMMITTED, "precommitted", ctx.height]]})
    deal["sector"] = number
    deals.store_deal(state, deal_id, deal)
    accounts.store_account(state, tx.sender, sender)


def provecommit(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """provecommit_sector: verify the PoRep; the sector and its deal become ACTIVE.

    Raises:
        UnknownObject: no such sector.
        InvalidState: the sector is not PRECOMMITTED.
        InvalidTransaction: before the seed height or at/after the deal start.
        InvalidProof: the PoRep does not verify.
    """
    number = tx.body["sector"]
    rec = load_sector(state, tx.sender, number)
    if rec is None:
        raise UnknownObject(f"no sector {number} of this provider")
    ensure(rec["state"] == PRECOMMITTED, InvalidState, f"sector {number} is {rec['state']}")
    deal = _deal(state, rec["deal"])
    p = deal["proposal"]
    ensure(ctx.height >= rec["seed_height"], InvalidTransaction,
           f"PoRep at {ctx.height} before the seed height {rec['seed_height']}")
    ensure(ctx.height < p["start"], InvalidTransaction,
           f"PoRep at {ctx.height} not before the deal start {p['start']}")
    # check_tx runs at head + 1 before that block's beacon exists: the seed must be drawn.
    ensure(state.get(schema.state_beacon_key(rec["seed_height"])) is not None,
           InvalidTransaction, f"PoRep seed of height {rec['seed_height']} not drawn yet")
    prof = proof_profile(ctx.params)
    ok = ctx.verifier.verify_porep(
        rec["comm_d"], rec["comm_r"], replica_id_of(state, tx.sender, number, rec),
        rec["size"] // 32, prof.layers, number,
        porep_seed(state, tx.sender, number, rec["seed_height"]), prof.porep_challenges,
        tx.body["proof"])
    ensure(ok, InvalidProof, f"PoRep of sector {number} does not verify")
    _transition(rec, ACTIVE, "PoRep verified", ctx.height)
    store_sector(state, tx.sender, number, rec)
    deal["state"] = deals.ACTIVE
    deal["history"].append([deals.ACTIVE, f"sector {number} proven", ctx.height])
    deals.store_deal(state, rec["deal"], deal)
    state.delete(schema.state_deal_pending_key(p["start"], rec["deal"]))
    _, close = period_bounds(p, 0, rec["period_len"])
    state.put(schema.state_post_due_key(close, tx.sender, number), b"")
    accounts.store_account(state, tx.sender, sender)


def submit_post(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """submit_post: PoSt proofs for open periods; a FAULTY sector recovers.

    Raises:
        MalformedEncoding: an entry has the wrong shape.
        InvalidTransaction: no entries or more than 64.
        UnknownObject: no such sector.
        InvalidState: the sector is not ACTIVE or FAULTY.
        WrongPeriod: the block is outside the period, or the period is already proven.
        InvalidProof: a proof does not verify (the whole tx is refused).
    """
    posts = tx.body["posts"]
    ensure(0 < len(posts) <= MAX_POSTS, InvalidTransaction, f"1..{MAX_POSTS} posts per tx")
    params = ctx.params
    prof = proof_profile(params)
    for raw in posts:
        entry = encoding.require_map(raw, {"sector": int, "period": int, "proof": bytes}, "post")
        number, period = entry["sector"], entry["period"]
        ensure(0 <= number < 1 << 64 and 0 <= period < 1 << 32, MalformedEncoding,
               "post sector or period out of range")
        rec = load_sector(state, tx.sender, number)
        if rec is None:
            raise UnknownObject(f"no sector {number} of this provider")
        ensure(rec["state"] in (ACTIVE, FAULTY), InvalidState,
               f"sector {number} is {rec['state']}")
        deal = _deal(state, rec["deal"])
        p = deal["proposal"]
        first, last = period_bounds(p, period, rec["period_len"])
        ensure(first <= ctx.height <= last, WrongPeriod,
               f"period {period} of sector {number} is open at heights {first}..{last}")
        ensure(period > rec["proven"], WrongPeriod, f"period {period} already proven")
        rand = post_randomness(state, p, tx.sender, number, period, rec["period_len"])
        ok = ctx.verifier.verify_post(rec["comm_r"], number, rand, prof.post_challenges,
                                      rec["size"] // 32, entry["proof"])
        ensure(ok, InvalidProof, f"PoSt of sector {number} period {period} does not verify")
        rec["proven"] = period
        if rec["state"] == FAULTY:
            _transition(rec, ACTIVE, f"recovered by PoSt period {period}", ctx.height)
            note(state, rec["deal"], deal, f"sector {number} ACTIVE: recovered by PoSt period "
                 f"{period}", ctx.height)
        store_sector(state, tx.sender, number, rec)
    accounts.store_account(state, tx.sender, sender)


def declare_fault(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """declare_fault: the provider lost sectors' data; they are FAULTY from now.

    The fee is charged when the period closes, as for a missed proof.

    Raises:
        InvalidTransaction: no sectors, more than 64, or repeated numbers.
        UnknownObject: no such sector.
        InvalidState: a sector is not ACTIVE.
    """
    numbers = tx.body["sectors"]
    ensure(0 < len(numbers) <= MAX_POSTS, InvalidTransaction, f"1..{MAX_POSTS} sectors")
    ensure(all(type(n) is int and 0 <= n < 1 << 64 for n in numbers),
           MalformedEncoding, "sector numbers must be u64 integers")
    ensure(len(set(numbers)) == len(numbers), InvalidTransaction, "repeated sector number")
    for number in numbers:
        rec = load_sector(state, tx.sender, number)
        if rec is None:
            raise UnknownObject(f"no sector {number} of this provider")
        ensure(rec["state"] == ACTIVE, InvalidState, f"sector {number} is {rec['state']}")
        _transition(rec, FAULTY, DECLARED, ctx.height)
        note(state, rec["deal"], _deal(state, rec["deal"]),
             f"sector {number} FAULTY: {DECLARED}", ctx.height)
        store_sector(state, tx.sender, number, rec)
    accounts.store_account(state, tx.sender, sender)


def terminate(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """terminate_deal: the provider ends an ACTIVE deal early.

    ``early_termination_fee_bps`` of the collateral is burned, the client's unpaid remainder
    refunded to its escrow, the rest of the collateral returned to the provider's escrow.

    Raises:
        UnknownObject: no such deal.
        InvalidTransaction: sender is not the deal's provider.
        InvalidState: the deal is not ACTIVE.
    """
    deal_id = tx.body["deal"]
    deal = _deal(state, deal_id)
    p = deal["proposal"]
    ensure(p["provider"] == tx.sender, InvalidTransaction, "only the deal's provider terminates")
    ensure(deal["state"] == deals.ACTIVE, InvalidState, f"deal {deal_id} is {deal['state']}")
    accounts.store_account(state, tx.sender, sender)
    fee = min(p["collateral"] * ctx.params.early_termination_fee_bps // BPS,
              p["collateral"] - deal["burned"])
    end_deal(state, deal_id, deal, deals.TERMINATED_EARLY, "terminated by the provider",
             ctx.height, burn=fee)


def end_deal(state: StateOverlay, deal_id: int, deal: dict[str, Any], new: str, reason: str,
             height: int, burn: int) -> None:
    """Finish an active deal: burn ``burn`` of the collateral, return the rest to the
    provider's escrow, refund the client's unsettled payment; the sector ends with it."""
    p = deal["proposal"]
    provider = accounts.load_account(state, p["provider"])
    left = p["collateral"] - deal["burned"]
    provider.locked -= left
    provider.escrow += left - burn
    accounts.store_account(state, p["provider"], provider)
    client = accounts.load_account(state, p["client"])
    unsettled = deals.payment(p) - deal["settled"]
    client.locked -= unsettled
    client.escrow += unsettled
    accounts.store_account(state, p["client"], client)
    totals = accounts.load_totals(state)
    totals.burned += burn
    accounts.store_totals(state, totals)
    deal["burned"] += burn
    deal["settled"] += unsettled
    deal["state"] = new
    deal["history"].append([new, reason, height])
    deals.store_deal(state, deal_id, deal)
    number = deal["sector"]
    if number is not None:
        rec = load_sector(state, p["provider"], number)
        if rec is None:
            raise StateCorrupt(f"deal {deal_id} names missing sector {number}")
        _transition(rec, new, reason, height)
        store_sector(state, p["provider"], number, rec)
        period = period_at(p, height, rec["period_len"])
        _, close = period_bounds(p, max(period, 0), rec["period_len"])
        state.delete(schema.state_post_due_key(close, p["provider"], number))
        state.delete(schema.state_post_due_key(p["end"], p["provider"], number))
