"""Storage providers (register, update, bond) and the validator set derived from bonds.

Provider record (``0x34 || pubkey``), canonical CBOR::

    {"peer_id": text, "addrs": [text], "price": uint (per GiB per epoch), "capacity": uint
     (bytes), "collateral": uint (locked at registration), "bond": uint (validator stake)}

Validator sets (``0x35 || u64 effective height``): ``[[pubkey, power], ...]`` sorted by key,
power = bond.  The set computed at the end of block h takes effect at h + 2 (consensus at
h + 1 is already running with the old set); a new entry is written only when the set changes.
Collateral and bond are held funds: they count in the supply invariant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from storaged.chain import accounts, encoding
from storaged.chain.context import Context
from storaged.chain.errors import (
    InsufficientFunds,
    InvalidTransaction,
    MalformedEncoding,
    StateCorrupt,
    ensure,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx
from storaged.store import schema

PROVIDER_FIELDS: dict[str, type] = {"peer_id": str, "addrs": list, "price": int,
                                    "capacity": int, "collateral": int, "bond": int}
MAX_ADDRS = 16
MAX_TEXT = 256
VALIDATOR_DELAY = 2


@dataclass(slots=True)
class Provider:
    """A registered storage provider."""

    peer_id: str
    addrs: list[str] = field(default_factory=list)
    price: int = 0
    capacity: int = 0
    collateral: int = 0
    bond: int = 0


def load_provider(state: StateOverlay, public_key: bytes) -> Provider | None:
    """The provider registered under ``public_key``, if any. Raises StateCorrupt if malformed."""
    raw = state.get(schema.state_provider_key(public_key))
    if raw is None:
        return None
    try:
        return Provider(**encoding.require_map(encoding.decode(raw), PROVIDER_FIELDS, "provider"))
    except MalformedEncoding as exc:
        raise StateCorrupt(f"stored provider is malformed: {exc}") from exc


def store_provider(state: StateOverlay, public_key: bytes, provider: Provider) -> None:
    """Stage a provider record."""
    state.put(schema.state_provider_key(public_key), encoding.encode(asdict(provider)))


def held_by_providers(state: StateOverlay) -> int:
    """Sum of all collateral and bonds (for the supply invariant)."""
    total = 0
    for key, _raw in state.scan(schema.STATE_PROVIDER):
        p = load_provider(state, key[len(schema.STATE_PROVIDER):])
        total += p.collateral + p.bond if p else 0
    return total


def _check_listing(body: dict[str, Any]) -> None:
    ensure(0 < len(body["peer_id"]) <= MAX_TEXT, InvalidTransaction, "bad peer_id length")
    addrs = body["addrs"]
    ensure(len(addrs) <= MAX_ADDRS, InvalidTransaction, f"more than {MAX_ADDRS} addrs")
    ensure(all(isinstance(a, str) and 0 < len(a) <= MAX_TEXT for a in addrs),
           InvalidTransaction, "addrs must be non-empty short text")


def register(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """register_provider: list the sender as a provider, locking its collateral.

    Raises:
        InvalidTransaction: already registered, bad listing, collateral below the minimum.
        InsufficientFunds: balance below the collateral.
    """
    body = tx.body
    _check_listing(body)
    ensure(load_provider(state, tx.sender) is None, InvalidTransaction, "already registered")
    params = ctx.params
    ensure(body["collateral"] >= params.min_provider_collateral, InvalidTransaction,
           f"collateral {body['collateral']} < minimum {params.min_provider_collateral}")
    ensure(sender.balance >= body["collateral"], InsufficientFunds,
           f"balance {sender.balance} < collateral {body['collateral']}")
    sender.balance -= body["collateral"]
    accounts.store_account(state, tx.sender, sender)
    store_provider(state, tx.sender, Provider(
        peer_id=body["peer_id"], addrs=list(body["addrs"]), price=body["price"],
        capacity=body["capacity"], collateral=body["collateral"]))


def update(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """update_provider: change listing fields (not collateral or bond).

    Raises:
        InvalidTransaction: not registered or bad listing.
    """
    _check_listing(tx.body)
    provider = load_provider(state, tx.sender)
    if provider is None:
        raise InvalidTransaction("not a registered provider")
    provider.peer_id, provider.addrs = tx.body["peer_id"], list(tx.body["addrs"])
    provider.price, provider.capacity = tx.body["price"], tx.body["capacity"]
    accounts.store_account(state, tx.sender, sender)
    store_provider(state, tx.sender, provider)


def bond(state: StateOverlay, tx: Tx, sender: accounts.Account, ctx: Context) -> None:
    """bond: move balance into the provider's validator bond (power from h + 2).

    Raises:
        InvalidTransaction: not registered or zero amount.
        InsufficientFunds: balance below the amount.
    """
    amount = tx.body["amount"]
    ensure(amount > 0, InvalidTransaction, "bond amount must be positive")
    provider = load_provider(state, tx.sender)
    if provider is None:
        raise InvalidTransaction("only registered providers can bond")
    ensure(sender.balance >= amount, InsufficientFunds, f"balance {sender.balance} < {amount}")
    sender.balance -= amount
    provider.bond += amount
    accounts.store_account(state, tx.sender, sender)
    store_provider(state, tx.sender, provider)


def validators(state: StateOverlay, height: int) -> list[tuple[bytes, int]]:
    """The validator set (public key, power) sorted by key, in force at ``height``.

    Raises:
        StateCorrupt: no set recorded at or before ``height``.
    """
    for _key, raw in state.scan(schema.STATE_VALIDATORS,
                                start=schema.state_validators_key(height), reverse=True):
        return [(bytes(k), int(p)) for k, p in encoding.decode(raw)]
    raise StateCorrupt(f"no validator set at height {height}")


def bonded_set(state: StateOverlay) -> list[tuple[bytes, int]]:
    """Every provider with a positive bond, as (public key, power) sorted by key."""
    out = []
    for key, _raw in state.scan(schema.STATE_PROVIDER):
        pk = key[len(schema.STATE_PROVIDER):]
        p = load_provider(state, pk)
        if p is not None and p.bond > 0:
            out.append((pk, p.bond))
    return out


def update_validator_set(state: StateOverlay, height: int) -> None:
    """End-of-block: schedule the bonded set for ``height + 2`` if it changed."""
    new = bonded_set(state)
    if new and new != validators(state, height + VALIDATOR_DELAY - 1):
        state.put(schema.state_validators_key(height + VALIDATOR_DELAY),
                  encoding.encode([[k, p] for k, p in new]))


def init_validators(state: StateOverlay, bonded: list[tuple[bytes, int]]) -> None:
    """Genesis: the set in force from height 0 (the genesis providers' bonds)."""
    state.put(schema.state_validators_key(0), encoding.encode([[k, p] for k, p in bonded]))
