from __future__ import annotations

from typing import Any

import pytest

from storaged.chain.accounts import Account, load_params, load_totals
from storaged.chain.app import ChainApp
from storaged.chain.apply import apply_tx
from storaged.chain.block import decode_block
from storaged.chain.context import Context
from storaged.chain.deals import (
    EXPIRED_UNACTIVATED,
    PUBLISHED,
    load_deal,
    sign_proposal,
)
from storaged.chain.errors import InsufficientFunds, InvalidSignature, InvalidTransaction
from storaged.chain.state import StateOverlay
from storaged.chain.supply import check_supply
from storaged.chain.tx import decode_tx, sign_tx
from tests.chain.helpers import CHAIN, key, make_app, pk

CLIENT, PROVIDER = 1, 2


def _proposal(**over: Any) -> dict[str, Any]:
    p = {"piece": b"\x11" * 32, "size": 1 << 20, "client": pk(CLIENT), "provider": pk(PROVIDER),
         "price": 3, "start": 4, "end": 14, "collateral": 50}
    p.update(over)
    return p


def _publish_tx(p: dict[str, Any], nonce: int, signer: int = PROVIDER,
                client_key: int = CLIENT) -> bytes:
    body = {"proposal": p, "client_sig": sign_proposal(key(client_key), CHAIN, p),
            "provider_sig": sign_proposal(key(PROVIDER), CHAIN, p)}
    return sign_tx(key(signer), CHAIN, "publish_deal", nonce, 1, body)


def _funded() -> ChainApp:
    app = make_app({CLIENT: 1000, PROVIDER: 1000})
    txs = [sign_tx(key(CLIENT), CHAIN, "escrow_deposit", 0, 1, {"amount": 100}),
           sign_tx(key(PROVIDER), CHAIN, "escrow_deposit", 0, 1, {"amount": 80})]
    _block(app, txs)  # height 1
    return app


def _block(app: ChainApp, txs: list[bytes]) -> int:
    head = app.head()
    block = app.propose(head.height + 1, head.time + 1, key(0), txs)
    app.commit(block, b"cert")
    return len(decode_block(block).txs)


def test_publish_locks_then_expiry_refunds_client_and_slashes_provider() -> None:
    app = _funded()
    assert _block(app, [_publish_tx(_proposal(), nonce=1)]) == 1  # height 2
    # payment 3 * (14 - 4) = 30 locked from the client; collateral 50 from the provider;
    # provider balance 1000 - 80 deposit - 2 fees
    assert app.account(pk(CLIENT)) == Account(balance=899, nonce=1, escrow=70, locked=30)
    assert app.account(pk(PROVIDER)) == Account(balance=918, nonce=2, escrow=30, locked=50)
    deal = load_deal(StateOverlay(app.kv), 0)
    assert deal is not None and deal["state"] == PUBLISHED
    burned_before = load_totals(StateOverlay(app.kv)).burned
    _block(app, [])  # height 3: start is 4, still pending
    assert app.account(pk(CLIENT)).locked == 30
    _block(app, [])  # height 4: start epoch reached without activation
    assert app.account(pk(CLIENT)) == Account(balance=899, nonce=1, escrow=100, locked=0)
    assert app.account(pk(PROVIDER)) == Account(balance=918, nonce=2, escrow=30, locked=0)
    state = StateOverlay(app.kv)
    assert load_totals(state).burned == burned_before + 50
    deal = load_deal(state, 0)
    assert deal is not None and deal["state"] == EXPIRED_UNACTIVATED
    assert deal["history"] == [[PUBLISHED, "published", 2],
                               [EXPIRED_UNACTIVATED, "not activated by start epoch", 4]]
    check_supply(state)


@pytest.mark.parametrize(
    ("proposal", "signer", "client_key", "error"),
    [
        (_proposal(), CLIENT, CLIENT, InvalidTransaction),  # only the provider publishes
        (_proposal(), PROVIDER, 3, InvalidSignature),  # client did not sign this
        (_proposal(start=1), PROVIDER, CLIENT, InvalidTransaction),  # start not in future
        (_proposal(end=4), PROVIDER, CLIENT, InvalidTransaction),
        (_proposal(price=20), PROVIDER, CLIENT, InsufficientFunds),  # 200 > client escrow 100
        (_proposal(collateral=81), PROVIDER, CLIENT, InsufficientFunds),
    ],
)
def test_publish_rules(
    proposal: dict[str, Any], signer: int, client_key: int, error: type
) -> None:
    app = _funded()
    state = StateOverlay(app.kv)
    raw = _publish_tx(proposal, nonce=1, signer=signer, client_key=client_key)
    with pytest.raises(error):
        apply_tx(state, decode_tx(raw, CHAIN), Context(2, load_params(state)))
