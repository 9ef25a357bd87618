"""Account, totals and parameter entries of the chain state, and their byte formats.

State entries (canonical CBOR values, keys from :mod:`storaged.store.schema`):

- account (``0x30 || pubkey``): ``{"balance": uint, "nonce": uint, "escrow": uint,
  "locked": uint}``; ``escrow`` is free escrow, ``locked`` is escrow committed to deals.
  An account with all four fields zero is not stored.
- totals (``0x31``): ``{"minted": uint, "burned": uint}``.  Invariant, checked after every
  block: sum(balance + escrow + locked) + burned == minted.
- params (``0x32``): see :class:`Params`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from storaged.chain import encoding
from storaged.chain.errors import MalformedEncoding, StateCorrupt
from storaged.chain.state import StateOverlay
from storaged.store import schema

ACCOUNT_FIELDS: dict[str, type] = {"balance": int, "nonce": int, "escrow": int, "locked": int}
TOTALS_FIELDS: dict[str, type] = {"minted": int, "burned": int}
PARAMS_FIELDS: dict[str, type] = {
    "min_fee": int, "max_txs_per_block": int, "min_provider_collateral": int,
    "gov_min_delay": int, "proof_profile": int, "max_sector_size": int, "ticket_max_age": int,
    "seed_delay": int, "proving_period": int, "fault_fee_bps": int, "max_faulty_periods": int,
    "early_termination_fee_bps": int, "evidence_slash_bps": int, "unbond_delay": int,
}


@dataclass(slots=True)
class Account:
    """One account's funds and next nonce."""

    balance: int = 0
    nonce: int = 0
    escrow: int = 0
    locked: int = 0

    def total(self) -> int:
        """All funds the account holds, free or locked."""
        return self.balance + self.escrow + self.locked


@dataclass(slots=True)
class Totals:
    """Chain-wide money supply bookkeeping."""

    minted: int = 0
    burned: int = 0


@dataclass(frozen=True, slots=True)
class Params:
    """Chain parameters (changed only by governance).

    ``min_fee`` is burned per transaction; ``max_txs_per_block`` bounds block size so a flood
    of transactions cannot make a block arbitrarily slow to apply; a provider locks at least
    ``min_provider_collateral`` when it registers; a governance change takes effect at least
    ``gov_min_delay`` blocks after it is proposed.

    Sector and proof parameters (all integers; see :mod:`storaged.chain.sectors`):

    - ``proof_profile``: layers and challenge counts, 0 devnet, 1 small, 2 default
      (:data:`PROOF_PROFILES` names the :mod:`proofs.profiles` entry); the sector size is
      the deal's ``size``, a power of two from 4 KiB to ``max_sector_size``.
    - ``ticket_max_age``: a precommit's ticket height is at most this many blocks old.
    - ``seed_delay``: the PoRep seed is drawn at precommit height + ``seed_delay``.
    - ``proving_period``: blocks per PoSt period (periods are aligned to the deal start).
    - ``fault_fee_bps``: basis points of the deal's collateral burned per faulty period.
    - ``max_faulty_periods``: more consecutive faulty periods terminate the deal.
    - ``early_termination_fee_bps``: collateral burned when a provider terminates a deal.
    - ``evidence_slash_bps``: bond burned from an equivocating validator.
    - ``unbond_delay``: blocks between ``unbond`` and the funds' return to the balance.
    """

    min_fee: int = 1
    max_txs_per_block: int = 5000
    min_provider_collateral: int = 100
    gov_min_delay: int = 10
    proof_profile: int = 0
    max_sector_size: int = 256 << 20
    ticket_max_age: int = 20
    seed_delay: int = 2
    proving_period: int = 10
    fault_fee_bps: int = 500
    max_faulty_periods: int = 3
    early_termination_fee_bps: int = 2000
    evidence_slash_bps: int = 1000
    unbond_delay: int = 20


PROOF_PROFILES = {0: "devnet", 1: "small", 2: "default"}


def _load(state: StateOverlay, key: bytes, fields: dict[str, type], what: str) -> dict[str, int]:
    raw = state.get(key)
    if raw is None:
        return {}
    try:
        return encoding.require_map(encoding.decode(raw), fields, what)
    except MalformedEncoding as exc:
        raise StateCorrupt(f"stored {what} is malformed: {exc}") from exc


def load_account(state: StateOverlay, public_key: bytes) -> Account:
    """The account of ``public_key`` (an empty one if never funded).

    Raises:
        StateCorrupt: the stored entry is malformed.
    """
    return Account(**_load(state, schema.state_account_key(public_key), ACCOUNT_FIELDS, "account"))


def store_account(state: StateOverlay, public_key: bytes, account: Account) -> None:
    """Stage ``account``; an all-zero account is deleted so it leaves no state entry."""
    key = schema.state_account_key(public_key)
    if account == Account():
        state.delete(key)
    else:
        state.put(key, encoding.encode(asdict(account)))


def load_totals(state: StateOverlay) -> Totals:
    """Chain-wide totals. Raises StateCorrupt if malformed."""
    return Totals(**_load(state, schema.STATE_TOTALS, TOTALS_FIELDS, "totals"))


def store_totals(state: StateOverlay, totals: Totals) -> None:
    """Stage the chain-wide totals."""
    state.put(schema.STATE_TOTALS, encoding.encode(asdict(totals)))


def load_params(state: StateOverlay) -> Params:
    """Chain parameters. Raises StateCorrupt if missing or malformed."""
    fields = _load(state, schema.STATE_PARAMS, PARAMS_FIELDS, "params")
    if not fields:
        raise StateCorrupt("chain parameters missing (no genesis?)")
    return Params(**fields)


def store_params(state: StateOverlay, params: Params) -> None:
    """Stage the chain parameters."""
    state.put(schema.STATE_PARAMS, encoding.encode(asdict(params)))
