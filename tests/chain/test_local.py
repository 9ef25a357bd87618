"""LocalChain: the one-validator ChainAccess used by node-logic tests."""

from __future__ import annotations

import pytest
import trio

from storaged.chain.access import NotCommitted
from storaged.chain.errors import BadNonce
from storaged.chain.local import LocalChain
from storaged.chain.mempool import MAX_NONCE_GAP
from tests.chain.helpers import key, make_app, pk, transfer


async def test_submit_commit_and_wait_height() -> None:
    chain = LocalChain(make_app({0: 1_000}), key(0), interval=0.05)
    tx_hash = await chain.submit(transfer(0, 1, 30, 0))
    assert chain.next_nonce(pk(0)) == 1  # committed 0 + one pending
    with pytest.raises(BadNonce):
        await chain.submit(transfer(0, 1, 30, 2 + MAX_NONCE_GAP))  # too far ahead to hold
    async with trio.open_nursery() as nursery:
        await nursery.start(chain.run)
        head = await chain.wait_height(2, timeout=10)
        assert head.height >= 2
        nursery.cancel_scope.cancel()
    assert chain.app.account(pk(1)).balance == 30
    assert tx_hash not in chain.mempool


async def test_wait_height_times_out_without_blocks() -> None:
    chain = LocalChain(make_app({0: 1}), key(0))
    chain.commit_block()
    assert (await chain.wait_height(1, timeout=1)).height == 1
    with pytest.raises(NotCommitted):
        await chain.wait_height(5, timeout=0.2)  # nothing runs the block timer
