"""Storage deals: publish (funds locked) and expiry of deals never activated.

Deal proposal v1 (canonical CBOR), signed by BOTH parties, each over
``b"storaged-deal-proposal-v1\\x00" || chain_id_utf8 || blake3(encode(proposal))``::

    {"piece": bytes(32) piece commitment, "size": uint bytes, "client": bytes(32),
     "provider": bytes(32), "price": uint per epoch, "start": uint, "end": uint,
     "collateral": uint provider collateral}

``publish_deal`` tx body: ``{"proposal": map, "client_sig": bytes(64), "provider_sig":
bytes(64)}``, sent by the provider.  On publish the client's payment ``price * (end - start)``
moves from its free escrow to ``locked``, and so does the provider's collateral.

The proposal's ``piece`` is ``proofs.seal.comm_d`` of the zero-padded piece and ``size`` the
padded size: a power of two from 4096 to ``params.max_sector_size`` (one deal per sector of
exactly that size).

Deal record (``0x38 || u64 id``)::

    {"proposal": map, "state": text, "history": [[state, reason, height], ...],
     "sector": uint | null (the provider's sector number once precommitted),
     "settled": uint (client payment already paid to the provider or refunded),
     "burned": uint (collateral burned so far)}

Party index (``0x3C || party || u64 id`` -> b""): every deal under its client and provider.

A sector fault or recovery is a sector state (see :mod:`storaged.chain.sectors`); the deal
stays ACTIVE and its history gets ``[ACTIVE, "sector n FAULTY: reason", height]``.

States: PUBLISHED -> ACTIVE (PoRep verified, :mod:`storaged.chain.sectors`) -> COMPLETED
(at the end: collateral left returns to the provider's escrow) | TERMINATED_EARLY (provider
quits) | TERMINATED_FAULT (too many faulty periods).  A deal not activated by its start epoch
becomes EXPIRED_UNACTIVATED in the cron: the client's payment returns to its free escrow and
the provider's collateral is burned (slashed).  Epochs are block heights.
"""

from __future__ import annotations

from typing import Any

import nacl.exceptions
import nacl.signing

from storaged.chain import accounts, encoding
from storaged.chain.context import Context
from storaged.chain.errors import (
    InsufficientFunds,
    InvalidSignature,
    InvalidTransaction,
    MalformedEncoding,
    StateCorrupt,
    ensure,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx
from storaged.store import schema

PROPOSAL_TAG = b"storaged-deal-proposal-v1\x00"
PROPOSAL_FIELDS: dict[str, type] = {"piece": bytes, "size": int, "client": bytes,
                                    "provider": bytes, "price": int, "start": int, "end": int,
                                    "collateral": int}
DEAL_FIELDS: dict[str, type] = {"proposal": dict, "state": str, "history": list,
                                "sector": object, "settled": int, "burned": int}
PUBLISHED = "PUBLISHED"
EXPIRED_UNACTIVATED = "EXPIRED_UNACTIVATED"
ACTIVE = "ACTIVE"
COMPLETED = "COMPLETED"
TERMINATED_EARLY = "TERMINATED_EARLY"
TERMINATED_FAULT = "TERMINATED_FAULT"
MIN_SIZE = 4096


def proposal_payload(chain_id: str, proposal: dict[str, Any]) -> bytes:
    """The bytes client and provider each sign."""
    return PROPOSAL_TAG + chain_id.encode() + encoding.digest(encoding.encode(proposal))


def sign_proposal(key: nacl.signing.SigningKey, chain_id: str, proposal: dict[str, Any]) -> bytes:
    """One party's signature over a deal proposal."""
    return bytes(key.sign(proposal_payload(chain_id, proposal)).signature)


def payment(proposal: dict[str, Any]) -> int:
    """The client's total payment for the deal."""
    return int(proposal["price"]) * (int(proposal["end"]) - int(proposal["start"]))


def _verify(key: bytes, payload: bytes, sig: bytes, who: str) -> None:
    try:
        nacl.signing.VerifyKey(key).verify(payload, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise InvalidSignature(f"deal proposal: bad {who} signature") from exc


def publish(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """publish_deal: check both signatures and lock payment and collateral.

    Raises:
        MalformedEncoding: the proposal has the wrong shape.
        InvalidSignature: a party's signature does not verify.
        InvalidTransaction: sender is not the provider, bad sizes or epochs, or the start is
            not in the future.
        InsufficientFunds: the client's free escrow cannot cover the payment, or the
            provider's cannot cover the collateral.
    """
    p = encoding.require_map(tx.body["proposal"], PROPOSAL_FIELDS, "proposal")
    for name in ("piece", "client", "provider"):
        ensure(len(p[name]) == 32, MalformedEncoding, f"proposal.{name} must be 32 bytes")
    for name in ("size", "price", "start", "end", "collateral"):
        ensure(0 <= p[name] < 1 << 64, MalformedEncoding, f"proposal.{name} out of range")
    ensure(tx.sender == p["provider"], InvalidTransaction, "only the provider publishes")
    ensure(p["client"] != p["provider"], InvalidTransaction, "client and provider must differ")
    size = p["size"]
    ensure(MIN_SIZE <= size <= ctx.params.max_sector_size and size & (size - 1) == 0,
           InvalidTransaction,
           f"deal size {size} is not a power of two in 4096..{ctx.params.max_sector_size}")
    ensure(p["start"] > ctx.height, InvalidTransaction, "deal start must be in the future")
    ensure(p["end"] > p["start"], InvalidTransaction, "deal end must follow its start")
    payload = proposal_payload(tx.chain, p)
    _verify(p["client"], payload, tx.body["client_sig"], "client")
    _verify(p["provider"], payload, tx.body["provider_sig"], "provider")
    ensure(sender.escrow >= p["collateral"], InsufficientFunds,
           f"provider free escrow {sender.escrow} < collateral {p['collateral']}")
    sender.escrow -= p["collateral"]
    sender.locked += p["collateral"]
    accounts.store_account(state, tx.sender, sender)
    client = accounts.load_account(state, p["client"])
    ensure(client.escrow >= payment(p), InsufficientFunds,
           f"client free escrow {client.escrow} < payment {payment(p)}")
    client.escrow -= payment(p)
    client.locked += payment(p)
    accounts.store_account(state, p["client"], client)
    raw_next = state.get(schema.STATE_DEAL_NEXT_ID)
    deal_id = 0 if raw_next is None else int.from_bytes(raw_next, "big")
    state.put(schema.STATE_DEAL_NEXT_ID, schema.u64(deal_id + 1))
    store_deal(state, deal_id, {"proposal": p, "state": PUBLISHED,
                                "history": [[PUBLISHED, "published", ctx.height]],
                                "sector": None, "settled": 0, "burned": 0})
    state.put(schema.state_deal_party_key(p["client"], deal_id), b"")
    state.put(schema.state_deal_party_key(p["provider"], deal_id), b"")
    state.put(schema.state_deal_pending_key(p["start"], deal_id), b"")


def load_deal(state: StateOverlay, deal_id: int) -> dict[str, Any] | None:
    """The deal record, if any. Raises StateCorrupt if malformed."""
    raw = state.get(schema.state_deal_key(deal_id))
    if raw is None:
        return None
    try:
        deal = encoding.require_map(encoding.decode(raw), DEAL_FIELDS, "deal")
        ensure(deal["sector"] is None or type(deal["sector"]) is int, MalformedEncoding,
               "deal.sector must be an integer or null")
        return deal
    except MalformedEncoding as exc:
        raise StateCorrupt(f"stored deal {deal_id} is malformed: {exc}") from exc


def store_deal(state: StateOverlay, deal_id: int, deal: dict[str, Any]) -> None:
    """Stage a deal record."""
    state.put(schema.state_deal_key(deal_id), encoding.encode(deal))


def _expire_sector(state: StateOverlay, provider: bytes, number: int, height: int) -> None:
    raw = state.get(schema.state_sector_key(provider, number))
    if raw is None:
        raise StateCorrupt(f"deal names missing sector {number}")
    rec = encoding.decode(raw)
    rec["state"] = "EXPIRED"
    rec["history"].append(["EXPIRED", "deal not activated by its start", height])
    state.put(schema.state_sector_key(provider, number), encoding.encode(rec))


def expire_unactivated(state: StateOverlay, height: int) -> None:
    """Cron: deals still PUBLISHED at their start epoch expire; refund client, slash provider.

    Raises:
        StateCorrupt: the pending index names a missing deal.
    """
    due = []
    for key, _ in state.scan(schema.STATE_DEAL_PENDING):
        start = int.from_bytes(key[1:9], "big")
        if start > height:
            break  # the index is ordered by start epoch
        due.append((key, int.from_bytes(key[9:17], "big")))
    if not due:
        return
    totals = accounts.load_totals(state)
    for key, deal_id in due:
        deal = load_deal(state, deal_id)
        if deal is None:
            raise StateCorrupt(f"pending index names missing deal {deal_id}")
        p = deal["proposal"]
        client = accounts.load_account(state, p["client"])
        client.locked -= payment(p)
        client.escrow += payment(p)
        accounts.store_account(state, p["client"], client)
        provider = accounts.load_account(state, p["provider"])
        provider.locked -= p["collateral"]
        accounts.store_account(state, p["provider"], provider)
        totals.burned += p["collateral"]
        deal["settled"], deal["burned"] = payment(p), p["collateral"]
        deal["state"] = EXPIRED_UNACTIVATED
        deal["history"].append([EXPIRED_UNACTIVATED, "not activated by start epoch", height])
        store_deal(state, deal_id, deal)
        if deal["sector"] is not None:
            _expire_sector(state, p["provider"], deal["sector"], height)
        state.delete(key)
    accounts.store_totals(state, totals)
