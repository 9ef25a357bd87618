"""Per-node execution caches: verified txs, executed blocks, the proposer's byte cap."""

from __future__ import annotations

import pytest

from storaged.chain import encoding
from storaged.chain.app import ChainApp
from storaged.chain.block import decode_block
from storaged.chain.errors import InvalidBlock, InvalidSignature, WrongChain
from storaged.chain.mempool import Mempool
from storaged.chain.tx import decode_tx
from storaged.chain.txcache import VerifiedTxs
from tests.chain.helpers import CHAIN, commit_txs, key, make_app, pk, transfer


def test_verified_txs_hits_on_the_same_bytes_only() -> None:
    cache = VerifiedTxs(CHAIN, capacity=2)
    raw = transfer(1, 2, 5, nonce=0)
    first = cache.decode(raw, CHAIN)
    assert cache.decode(bytes(raw), CHAIN) is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert first == decode_tx(raw, CHAIN)
    with pytest.raises(WrongChain):  # never answered from the cache for another chain
        cache.decode(raw, "other-chain")
    forged = encoding.encode({**encoding.decode(raw), "sig": bytes(64)})
    for _ in range(2):  # a failure is not remembered as a success
        with pytest.raises(InvalidSignature):
            cache.decode(forged, CHAIN)
    cache.decode(transfer(1, 2, 5, nonce=1), CHAIN)
    cache.decode(transfer(1, 2, 5, nonce=2), CHAIN)
    assert len(cache) == 2  # bounded: the oldest entry was evicted


def test_block_is_executed_once_per_head() -> None:
    app = make_app({1: 1000})
    head = app.head()
    block = app.propose(1, head.time + 1, key(0), [transfer(1, 2, 7, nonce=0)])
    assert app.executions == 1  # the proposer's own check
    app.validate(block)
    app.commit(block, b"cert")
    assert app.executions == 1  # validation and commit reused that execution
    assert app.account(pk(2)).balance == 7
    assert app.head().state_root == app.state_root()


def test_cached_execution_is_never_used_on_another_head() -> None:
    app = make_app({1: 1000})
    head = app.head()
    stale = app.propose(1, head.time + 1, key(0), [transfer(1, 2, 7, nonce=0)])
    commit_txs(app, [transfer(1, 3, 9, nonce=0)])  # height 1 is now a different block
    with pytest.raises(InvalidBlock):
        app.validate(stale)  # re-executed on the new head, where it does not follow
    with pytest.raises(InvalidBlock):
        app.commit(stale, b"cert")
    assert app.head().height == 1
    assert app.account(pk(3)).balance == 9


def test_an_invalid_block_is_not_cached() -> None:
    app = make_app({1: 1000})
    head = app.head()
    good = decode_block(app.propose(1, head.time + 1, key(0), [transfer(1, 2, 7, nonce=0)]))
    bad = good.__class__(good.header.__class__(**{
        **{f: getattr(good.header, f) for f in good.header.__slots__},
        "state_root": bytes(32)}), good.txs).encode()
    for _ in range(2):
        with pytest.raises(InvalidBlock):
            app.validate(bad)
    assert app.executions == 3


def test_max_block_bytes_caps_the_proposal() -> None:
    app = make_app({1: 1000})
    txs = [transfer(1, 2, 1, nonce=n) for n in range(10)]
    capped = ChainApp(app.kv, CHAIN, max_block_bytes=3 * len(txs[0]))
    head = app.head()
    block = decode_block(capped.propose(1, head.time + 1, key(0), txs))
    assert list(block.txs) == txs[:3]


def test_mempool_applies_each_pending_tx_once_and_rechecks_after_commit() -> None:
    app = make_app({1: 1000})
    pool = Mempool(app)
    txs = [transfer(1, 2, 100, nonce=n) for n in range(9)]
    for raw in txs:
        pool.add(raw)
    with pytest.raises(Exception, match="balance"):
        pool.add(transfer(1, 2, 200, nonce=9))  # 9 * 101 already pending out of 1000
    misses = app.txs.misses
    block = commit_txs(app, list(pool.candidates())[:4])
    pool.on_commit([encoding.digest(t) for t in decode_block(block).txs])
    assert len(pool) == 5
    assert app.txs.misses == misses  # re-checks and the block reused verified txs
    assert pool.next_nonce(pk(1)) == 9
