from __future__ import annotations

from storaged.chain.deals import PUBLISHED, sign_proposal
from storaged.chain.settlement import EmbeddedSettlement, Settlement
from tests.chain.helpers import CHAIN, commit_txs, key, make_app, pk


def test_market_flow_through_the_interface() -> None:
    app = make_app({1: 1000, 2: 1000})
    chain: Settlement = EmbeddedSettlement(app)
    commit_txs(app, [chain.deposit_tx(key(1), 100, 1), chain.deposit_tx(key(2), 100, 1)])
    assert chain.height() == 1
    assert chain.account(pk(1)).escrow == 100
    p = {"piece": b"\x05" * 32, "size": 4096, "client": pk(1), "provider": pk(2), "price": 2,
         "start": 10, "end": 20, "collateral": 30}
    tx = chain.publish_deal_tx(key(2), p, sign_proposal(key(1), CHAIN, p),
                               sign_proposal(key(2), CHAIN, p), 1)
    commit_txs(app, [tx])
    deal = chain.deal(0)
    assert deal is not None and deal["state"] == PUBLISHED and deal["proposal"] == p
    assert (chain.account(pk(1)).locked, chain.account(pk(2)).locked) == (20, 30)
    assert chain.deal(1) is None
    r = chain.randomness(b"porep-seed", 2, b"\x00")
    assert len(r) == 32 and r != chain.randomness(b"porep-seed", 1, b"\x00")
