from __future__ import annotations

import pytest

from storaged.chain.accounts import Account, Params, load_totals
from storaged.chain.apply import apply_tx
from storaged.chain.context import Context
from storaged.chain.errors import (
    BadNonce,
    ChainError,
    FeeTooLow,
    InsufficientFunds,
    InvalidTransaction,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import decode_tx, sign_tx
from storaged.errors import RemoteError
from tests.chain.helpers import CHAIN, key, make_app, pk, transfer

PARAMS = Params(min_fee=2, max_txs_per_block=100)


def _run(state: StateOverlay, raw: bytes) -> None:
    apply_tx(state, decode_tx(raw, CHAIN), Context(1, PARAMS))


def _state(balances: dict[int, int]) -> StateOverlay:
    return StateOverlay(make_app(balances, params=PARAMS).kv)


def test_chain_errors_are_remote_not_local_bugs() -> None:
    assert issubclass(ChainError, RemoteError)


def test_transfer_moves_amount_and_burns_fee() -> None:
    s = _state({1: 100})
    _run(s, transfer(1, 2, 30, nonce=0, fee=3))
    from storaged.chain.accounts import load_account
    assert load_account(s, pk(1)) == Account(balance=67, nonce=1)
    assert load_account(s, pk(2)) == Account(balance=30)
    totals = load_totals(s)
    assert (totals.minted, totals.burned) == (100, 3)


def test_replay_and_gap_rejected() -> None:
    s = _state({1: 100})
    raw = transfer(1, 2, 10, nonce=0, fee=2)
    _run(s, raw)
    with pytest.raises(BadNonce):
        _run(s, raw)
    with pytest.raises(BadNonce):
        _run(s, transfer(1, 2, 10, nonce=5, fee=2))


def test_fee_and_funds_rules() -> None:
    s = _state({1: 100})
    with pytest.raises(FeeTooLow):
        _run(s, transfer(1, 2, 10, nonce=0, fee=1))
    with pytest.raises(InsufficientFunds):
        _run(s, transfer(1, 2, 99, nonce=0, fee=2))  # 99 + fee 2 > 100
    with pytest.raises(InsufficientFunds):
        _run(s, transfer(3, 2, 1, nonce=0, fee=2))  # unfunded sender cannot pay the fee
    with pytest.raises(InvalidTransaction):
        _run(s, transfer(1, 1, 5, nonce=0, fee=2))
    with pytest.raises(InvalidTransaction):
        _run(s, transfer(1, 2, 0, nonce=0, fee=2))


def test_escrow_deposit_and_withdraw() -> None:
    from storaged.chain.accounts import load_account, store_account
    s = _state({1: 100})
    _run(s, sign_tx(key(1), CHAIN, "escrow_deposit", 0, 2, {"amount": 40}))
    assert load_account(s, pk(1)) == Account(balance=58, nonce=1, escrow=40)
    # Locked escrow (backing deals) cannot be withdrawn, only the free part.
    acct = load_account(s, pk(1))
    acct.escrow, acct.locked = 25, 15
    store_account(s, pk(1), acct)
    with pytest.raises(InsufficientFunds):
        _run(s, sign_tx(key(1), CHAIN, "escrow_withdraw", 1, 2, {"amount": 26}))
    _run(s, sign_tx(key(1), CHAIN, "escrow_withdraw", 1, 2, {"amount": 25}))
    assert load_account(s, pk(1)) == Account(balance=81, nonce=2, escrow=0, locked=15)
    with pytest.raises(InsufficientFunds):
        _run(s, sign_tx(key(1), CHAIN, "escrow_deposit", 2, 2, {"amount": 80}))


def test_emptied_account_leaves_no_entry() -> None:
    s = _state({1: 12})
    _run(s, transfer(1, 2, 10, nonce=0, fee=2))
    from storaged.chain.accounts import load_account
    # nonce 1 keeps the account (replay protection needs it) even at zero balance
    assert load_account(s, pk(1)) == Account(balance=0, nonce=1)
