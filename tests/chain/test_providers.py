from __future__ import annotations

import pytest

from storaged.chain.accounts import Account, Params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.block import decode_block
from storaged.chain.errors import InsufficientFunds, InvalidTransaction
from storaged.chain.providers import Provider, load_provider
from storaged.chain.state import StateOverlay
from storaged.chain.supply import check_supply
from storaged.chain.tx import sign_tx
from storaged.store.kv import MemoryKV
from tests.chain.helpers import CHAIN, GENESIS_TIME, key, pk

LISTING = {"peer_id": "12D3KooWtest", "addrs": ["/ip4/127.0.0.1/tcp/4001"], "price": 7,
           "capacity": 1 << 30}


def _app() -> ChainApp:
    kv = MemoryKV()
    init_genesis(kv, CHAIN, {pk(1): 10_000, pk(2): 50}, Params(min_provider_collateral=100),
                 GENESIS_TIME, {pk(0): Provider(peer_id="genesis", collateral=100, bond=10)})
    return ChainApp(kv, CHAIN)


def _one(app: ChainApp, raw: bytes) -> int:
    """Commit a block with ``raw``; returns how many txs made it in."""
    head = app.head()
    block = app.propose(head.height + 1, head.time + 1, key(0), [raw])
    app.commit(block, b"cert")
    return len(decode_block(block).txs)


def test_register_update_bond_and_validator_delay() -> None:
    app = _app()
    assert app.validators(0) == [(pk(0), 10)]
    reg = sign_tx(key(1), CHAIN, "register_provider", 0, 1, {**LISTING, "collateral": 500})
    assert _one(app, reg) == 1  # height 1
    assert app.account(pk(1)) == Account(balance=10_000 - 1 - 500, nonce=1)
    state = StateOverlay(app.kv)
    assert load_provider(state, pk(1)) == Provider(collateral=500, **LISTING)  # type: ignore[arg-type]
    upd = sign_tx(key(1), CHAIN, "update_provider", 1, 1, {**LISTING, "price": 9})
    assert _one(app, upd) == 1  # height 2
    bond = sign_tx(key(1), CHAIN, "bond", 2, 1, {"amount": 300})
    assert _one(app, bond) == 1  # height 3: the new set takes effect at 5
    state = StateOverlay(app.kv)
    provider = load_provider(state, pk(1))
    assert provider is not None and (provider.price, provider.bond) == (9, 300)
    assert app.account(pk(1)).balance == 10_000 - 3 - 500 - 300
    assert app.validators(4) == [(pk(0), 10)]
    assert app.validators(5) == sorted([(pk(0), 10), (pk(1), 300)])
    check_supply(state)


@pytest.mark.parametrize(
    ("signer", "kind", "body", "error"),
    [
        (1, "register_provider", {**LISTING, "collateral": 99}, InvalidTransaction),
        (2, "register_provider", {**LISTING, "collateral": 100}, InsufficientFunds),
        (1, "register_provider", {**LISTING, "peer_id": "", "collateral": 100},
         InvalidTransaction),
        (1, "register_provider", {**LISTING, "addrs": ["x"] * 17, "collateral": 100},
         InvalidTransaction),
        (1, "update_provider", LISTING, InvalidTransaction),
        (1, "bond", {"amount": 5}, InvalidTransaction),
    ],
)
def test_provider_rules(signer: int, kind: str, body: dict[str, object], error: type) -> None:
    from storaged.chain.accounts import load_params
    from storaged.chain.apply import apply_tx
    from storaged.chain.context import Context
    from storaged.chain.tx import decode_tx

    state = StateOverlay(_app().kv)
    with pytest.raises(error):
        apply_tx(state, decode_tx(sign_tx(key(signer), CHAIN, kind, 0, 1, body), CHAIN),
                 Context(1, load_params(state)))


def test_register_twice_refused() -> None:
    app = _app()
    assert _one(app, sign_tx(key(1), CHAIN, "register_provider", 0, 1,
                             {**LISTING, "collateral": 100})) == 1
    again = sign_tx(key(1), CHAIN, "register_provider", 1, 1, {**LISTING, "collateral": 100})
    assert _one(app, again) == 0  # the proposer leaves the invalid tx out
    assert app.account(pk(1)).nonce == 1
