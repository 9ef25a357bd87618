"""Validator accountability: equivocation evidence (slash) and unbonding (delayed exit).

- ``report_evidence`` (anyone): ``{"evidence": bytes}``, an encoded
  :class:`storaged.chain.consensus.certificate.Evidence` (``[1, "evidence", vote_a,
  vote_b]``): two signed votes of one validator for one (kind, height, round) with different
  values.  Checked against the validator set in force at the votes' height;
  ``evidence_slash_bps`` of the validator's bond is burned, and the same share of every
  unbond of that validator still pending that was made at or after the equivocation's height
  (that stake was bonded when the validator equivocated, so unbonding right after cannot
  dodge the slash).  Used evidence is recorded (``0x3D || blake3(evidence)`` -> u64 height)
  so it slashes once.
- ``unbond`` (a provider): ``{"amount": uint}`` leaves the bond now (the validator set follows
  at h + 2) and waits in ``0x3E || u64 release height || pubkey || u64 start height`` -> u64
  amount; the cron returns it to the balance at ``height + unbond_delay``.  Pending unbonds
  are held funds in the supply invariant.  Evidence reported after an unbond's release finds
  nothing left to slash there: ``unbond_delay`` is how long a validator stays answerable.
"""

from __future__ import annotations

import blake3
import cbor2

from storaged.chain import accounts, providers
from storaged.chain.consensus.certificate import Evidence
from storaged.chain.consensus.errors import ConsensusError
from storaged.chain.consensus.messages import Vote, decode_message
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.context import Context
from storaged.chain.errors import (
    DuplicateEvidence,
    InsufficientFunds,
    InvalidProof,
    InvalidTransaction,
    MalformedEncoding,
    StateCorrupt,
    ensure,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx
from storaged.errors import LocalBugError
from storaged.store import schema

BPS = 10_000


def decode_evidence(data: bytes) -> Evidence:
    """Decode canonical version-1 evidence bytes.

    Raises:
        MalformedEncoding: not ``[1, "evidence", vote, vote]`` in canonical CBOR.
    """
    try:
        obj = cbor2.loads(data)
        ensure(isinstance(obj, list) and len(obj) == 4 and obj[:2] == [1, "evidence"]
               and type(obj[2]) is bytes and type(obj[3]) is bytes,
               MalformedEncoding, "not version-1 evidence")
        a, b = decode_message(obj[2]), decode_message(obj[3])
    except (ConsensusError, ValueError, cbor2.CBORDecodeError) as exc:
        raise MalformedEncoding(f"evidence does not decode: {exc}") from exc
    ensure(isinstance(a, Vote) and isinstance(b, Vote), MalformedEncoding,
           "evidence must hold two votes")
    assert isinstance(a, Vote) and isinstance(b, Vote)  # narrowed for mypy by the ensure
    evidence = Evidence(a, b)
    ensure(evidence.encode() == bytes(data), MalformedEncoding, "evidence is not canonical")
    return evidence


def report_evidence(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """report_evidence: burn ``evidence_slash_bps`` of an equivocating validator's bond.

    Raises:
        MalformedEncoding: the evidence does not decode.
        DuplicateEvidence: already used.
        InvalidProof: the votes do not prove an equivocation by a validator of that height.
        InvalidTransaction: the validator is no longer a provider.
    """
    data = tx.body["evidence"]
    evidence = decode_evidence(data)
    key = schema.state_evidence_key(blake3.blake3(data).digest())
    ensure(state.get(key) is None, DuplicateEvidence, "evidence already used")
    vote = evidence.vote_a
    try:
        vset = ValidatorSet.of(providers.validators(state, vote.height))
        evidence.verify(tx.chain, vset)
    except (ConsensusError, LocalBugError, StateCorrupt) as exc:
        raise InvalidProof(f"evidence does not prove an equivocation: {exc}") from exc
    provider = providers.load_provider(state, vote.validator)
    ensure(provider is not None, InvalidTransaction, "the equivocating validator is gone")
    assert provider is not None
    bps = ctx.params.evidence_slash_bps
    slash = provider.bond * bps // BPS
    provider.bond -= slash
    providers.store_provider(state, vote.validator, provider)
    slash += _slash_pending_unbonds(state, vote.validator, vote.height, bps)
    accounts.store_account(state, tx.sender, sender)  # after the fee: sender may be anyone
    totals = accounts.load_totals(state)
    totals.burned += slash
    accounts.store_totals(state, totals)
    state.put(key, schema.u64(ctx.height))


def _slash_pending_unbonds(state: StateOverlay, validator: bytes, since: int, bps: int) -> int:
    """Cut ``bps`` from each pending unbond of ``validator`` made at height ``since`` or later
    (votes for height h are cast before block h applies, so an unbond in block h was still
    bonded stake then); returns the total cut (the caller burns it)."""
    cuts = []
    for key, raw in state.scan(schema.STATE_UNBOND):
        if _unbond_owner(key) == validator and _unbond_start(key) >= since:
            amount = int.from_bytes(raw, "big")
            cuts.append((key, amount, amount * bps // BPS))
    for key, amount, cut in cuts:
        if cut == amount:
            state.delete(key)
        else:
            state.put(key, schema.u64(amount - cut))
    return sum(cut for _key, _amount, cut in cuts)


def _unbond_owner(key: bytes) -> bytes:
    return key[9:41]


def _unbond_start(key: bytes) -> int:
    """The height the unbond was made at; 0 for a key written before start heights were
    recorded (41 bytes): such an unbond keeps the rule it was made under, not slashable."""
    return int.from_bytes(key[41:49], "big") if len(key) == 49 else 0


def unbond(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """unbond: move ``amount`` of the bond to a pending unbond, released after the delay.

    Raises:
        InvalidTransaction: zero amount or not a provider.
        InsufficientFunds: the bond is smaller than the amount.
    """
    amount = tx.body["amount"]
    ensure(amount > 0, InvalidTransaction, "unbond amount must be positive")
    provider = providers.load_provider(state, tx.sender)
    ensure(provider is not None, InvalidTransaction, "only providers have a bond")
    assert provider is not None
    ensure(provider.bond >= amount, InsufficientFunds, f"bond {provider.bond} < {amount}")
    provider.bond -= amount
    providers.store_provider(state, tx.sender, provider)
    accounts.store_account(state, tx.sender, sender)
    key = schema.state_unbond_key(ctx.height + ctx.params.unbond_delay, tx.sender, ctx.height)
    raw = state.get(key)
    pending = 0 if raw is None else int.from_bytes(raw, "big")
    state.put(key, schema.u64(pending + amount))


def pending_unbonds(state: StateOverlay) -> int:
    """Sum of all pending unbonds (held funds for the supply invariant)."""
    return sum(int.from_bytes(raw, "big") for _key, raw in state.scan(schema.STATE_UNBOND))


def release_unbonds(state: StateOverlay, height: int) -> None:
    """Cron: unbonds whose release height is ``height`` (or earlier) go back to the balance."""
    due = []
    for key, raw in state.scan(schema.STATE_UNBOND):
        if int.from_bytes(key[1:9], "big") > height:
            break
        due.append((key, _unbond_owner(key), int.from_bytes(raw, "big")))
    for key, who, amount in due:
        account = accounts.load_account(state, who)
        account.balance += amount
        accounts.store_account(state, who, account)
        state.delete(key)
