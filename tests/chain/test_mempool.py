"""Mempool: admission against committed state + pending, nonce order, commit, limits."""

from __future__ import annotations

import pytest

from storaged.chain import encoding
from storaged.chain.block import decode_block
from storaged.chain.errors import BadNonce, InsufficientFunds, InvalidSignature
from storaged.chain.mempool import MAX_NONCE_GAP, Mempool, MempoolFull
from tests.chain.helpers import commit_txs, make_app, pk, transfer


def test_several_pending_per_sender_in_nonce_order_round_robin() -> None:
    app = make_app({0: 1_000, 1: 1_000})
    pool = Mempool(app)
    a = [transfer(0, 2, 10, n) for n in range(3)]
    b = [transfer(1, 2, 10, n) for n in range(2)]
    for raw in [*a, *b]:
        pool.add(raw)
    assert len(pool) == 5
    assert pool.next_nonce(pk(0)) == 3 and pool.next_nonce(pk(1)) == 2
    order = pool.candidates()
    assert order.index(a[0]) < order.index(a[1]) < order.index(a[2])
    assert order.index(b[0]) < order.index(b[1])
    assert order[:2] in ([a[0], b[0]], [b[0], a[0]])  # senders interleaved, not one first
    # A gap beyond what gossip reordering explains, or a replay, is refused at once.
    with pytest.raises(BadNonce):
        pool.add(transfer(0, 2, 10, 3 + MAX_NONCE_GAP + 1))
    with pytest.raises(BadNonce):
        pool.add(transfer(0, 2, 11, 1))  # another tx reusing a pending nonce
    assert pool.add(a[1]) == encoding.digest(a[1])  # re-adding a pending tx is a no-op
    assert len(pool) == 5


def test_a_tx_ahead_of_its_predecessor_is_held_until_the_gap_closes() -> None:
    app = make_app({0: 1_000})
    pool = Mempool(app)
    txs = [transfer(0, 1, 10, n) for n in range(4)]
    pool.add(txs[2])  # gossip brought nonces 2 and 3 before 0 and 1
    pool.add(txs[3])
    assert len(pool) == 0 and pool.candidates() == [] and pool.next_nonce(pk(0)) == 0
    pool.add(txs[0])
    assert pool.candidates() == [txs[0]]  # 1 is still missing: 2 and 3 wait
    pool.add(txs[1])
    assert pool.candidates() == txs and pool.next_nonce(pk(0)) == 4


def test_a_commit_closes_the_gap_and_held_txs_are_bounded() -> None:
    app = make_app({0: 1_000})
    pool = Mempool(app)
    first, later = transfer(0, 1, 10, 0), transfer(0, 1, 10, 1)
    pool.add(later)
    block = commit_txs(app, [first])  # nonce 0 arrived in another node's block, not by gossip
    pool.on_commit(encoding.digest(t) for t in decode_block(block).txs)
    assert pool.candidates() == [later]
    small = Mempool(app, max_held=2)
    small.add(transfer(0, 1, 1, 5))
    small.add(transfer(0, 1, 1, 6))
    with pytest.raises(MempoolFull, match="wait for an earlier nonce"):
        small.add(transfer(0, 1, 1, 7))


def test_pending_spend_counts_against_the_balance() -> None:
    app = make_app({0: 100})
    pool = Mempool(app)
    pool.add(transfer(0, 1, 60, 0))
    with pytest.raises(InsufficientFunds):
        pool.add(transfer(0, 1, 60, 1))  # fine alone, not after the pending one
    with pytest.raises(InvalidSignature):
        pool.add(transfer(0, 1, 1, 1)[:-2] + b"\x00\x00")


def test_commit_removes_included_and_drops_stale() -> None:
    app = make_app({0: 1_000})
    pool = Mempool(app)
    mine = [transfer(0, 1, 10, n) for n in range(3)]
    for raw in mine:
        pool.add(raw)
    # Another node's block included a conflicting tx with nonce 0 (same sender, other body).
    rival = transfer(0, 2, 5, 0)
    block = commit_txs(app, [rival])
    included = [encoding.digest(t) for t in decode_block(block).txs]
    dropped = pool.on_commit(included)
    # The committed nonce is now 1: our nonce-0 tx is stale, 1 and 2 still apply in order.
    assert encoding.digest(mine[0]) in dropped
    assert len(pool) == 2
    assert pool.candidates() == mine[1:]
    block = commit_txs(app, pool.candidates())
    assert pool.on_commit(encoding.digest(t) for t in decode_block(block).txs) == []
    assert len(pool) == 0
    assert app.account(pk(1)).balance == 20


def test_full_pool_and_full_sender_raise_mempool_full() -> None:
    app = make_app({0: 1_000, 1: 1_000})
    pool = Mempool(app, max_txs=3, max_per_sender=2)
    pool.add(transfer(0, 2, 1, 0))
    pool.add(transfer(0, 2, 1, 1))
    with pytest.raises(MempoolFull):
        pool.add(transfer(0, 2, 1, 2))  # this sender's share is used up
    pool.add(transfer(1, 2, 1, 0))
    with pytest.raises(MempoolFull):
        pool.add(transfer(1, 2, 1, 1))  # the pool is full
    assert len(pool) == 3
