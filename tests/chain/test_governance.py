from __future__ import annotations

import pytest

from storaged.chain.accounts import Params, load_params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.apply import apply_tx
from storaged.chain.block import decode_block
from storaged.chain.context import Context
from storaged.chain.errors import InvalidTransaction
from storaged.chain.providers import Provider
from storaged.chain.state import StateOverlay
from storaged.chain.tx import decode_tx, sign_tx
from storaged.store.kv import MemoryKV
from tests.chain.helpers import CHAIN, GENESIS_TIME, key, pk

PARAMS = Params(min_fee=1, max_txs_per_block=100, min_provider_collateral=10, gov_min_delay=3)


def _app() -> ChainApp:
    # Validators 0, 1, 2 with power 40, 30, 30: any two of them hold > 2/3 only if one is 0.
    vals = {pk(0): 40, pk(1): 30, pk(2): 30}
    kv = MemoryKV()
    init_genesis(kv, CHAIN, {pk(i): 1000 for i in range(4)}, PARAMS, GENESIS_TIME,
                 {k: Provider(peer_id="v", collateral=10, bond=b) for k, b in vals.items()})
    return ChainApp(kv, CHAIN)


def _block(app: ChainApp, txs: list[bytes]) -> int:
    head = app.head()
    block = app.propose(head.height + 1, head.time + 1, key(0), txs)
    app.commit(block, b"cert")
    return len(decode_block(block).txs)


def _params(app: ChainApp) -> Params:
    return load_params(StateOverlay(app.kv))


def test_passed_proposal_takes_effect_at_its_height() -> None:
    app = _app()
    prop = sign_tx(key(1), CHAIN, "gov_propose", 0, 1,
                   {"param": "min_fee", "value": 5, "effective": 5})
    pid = decode_tx(prop, CHAIN).hash
    assert _block(app, [prop]) == 1  # h1: 30 of 100
    assert _block(app, [sign_tx(key(2), CHAIN, "gov_vote", 0, 1, {"proposal": pid})]) == 1
    assert _params(app).min_fee == 1  # h2: 60 of 100, not > 2/3 yet
    assert _block(app, [sign_tx(key(0), CHAIN, "gov_vote", 0, 1, {"proposal": pid})]) == 1
    assert _params(app).min_fee == 1  # h3: passed (100), effective at 5
    _block(app, [])  # h4: cron applies it for height 5
    assert _params(app).min_fee == 5
    cheap = sign_tx(key(3), CHAIN, "transfer", 0, 1, {"to": pk(0), "amount": 1})
    assert _block(app, [cheap]) == 0  # h5: fee 1 < 5 is left out


def test_unpassed_proposal_expires() -> None:
    app = _app()
    prop = sign_tx(key(0), CHAIN, "gov_propose", 0, 1,
                   {"param": "max_txs_per_block", "value": 1, "effective": 4})
    pid = decode_tx(prop, CHAIN).hash
    _block(app, [prop])
    for _ in range(3):
        _block(app, [])
    assert _params(app).max_txs_per_block == 100
    late = sign_tx(key(1), CHAIN, "gov_vote", 0, 1, {"proposal": pid})
    assert _block(app, [late]) == 0  # expired: the vote is refused


@pytest.mark.parametrize(
    ("signer", "body", "match"),
    [
        (3, {"param": "min_fee", "value": 2, "effective": 10}, "only validators"),
        (0, {"param": "nope", "value": 2, "effective": 10}, "unknown param"),
        (0, {"param": "max_txs_per_block", "value": 0, "effective": 10}, "floor"),
        (0, {"param": "min_fee", "value": 2, "effective": 3}, "effective height"),
    ],
)
def test_proposal_rules(signer: int, body: dict[str, object], match: str) -> None:
    state = StateOverlay(_app().kv)
    raw = sign_tx(key(signer), CHAIN, "gov_propose", 0, 1, body)
    with pytest.raises(InvalidTransaction, match=match):
        apply_tx(state, decode_tx(raw, CHAIN), Context(1, PARAMS))


def test_double_vote_and_unknown_proposal_refused() -> None:
    state = StateOverlay(_app().kv)
    ctx = Context(1, PARAMS)
    prop = sign_tx(key(1), CHAIN, "gov_propose", 0, 1,
                   {"param": "min_fee", "value": 2, "effective": 10})
    apply_tx(state, decode_tx(prop, CHAIN), ctx)
    pid = decode_tx(prop, CHAIN).hash
    with pytest.raises(InvalidTransaction, match="already voted"):
        apply_tx(state, decode_tx(sign_tx(key(1), CHAIN, "gov_vote", 1, 1, {"proposal": pid}),
                                  CHAIN), ctx)
    with pytest.raises(InvalidTransaction, match="no such proposal"):
        apply_tx(state, decode_tx(sign_tx(key(2), CHAIN, "gov_vote", 0, 1,
                                          {"proposal": b"\x01" * 32}), CHAIN), ctx)
