"""Sector lifecycle with REAL proofs on 4 KiB sectors: activation, PoSt periods, faults, ends."""

from __future__ import annotations

import os

import pytest

from storaged.chain.accounts import load_totals
from storaged.chain.encoding import digest
from storaged.chain.errors import (
    BadNonce,
    InsufficientFunds,
    InvalidProof,
    InvalidState,
    InvalidTransaction,
    WrongPeriod,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import sign_tx
from tests.chain.helpers import CHAIN, key, pk
from tests.chain.sector_setup import (
    CLIENT,
    COLLATERAL,
    END,
    OTHER,
    PRICE,
    PROVIDER,
    START,
    Env,
    activate,
    new_env,
    porep,
    post_entry,
    precommit_body,
    publish,
    seal_sector,
)

PERIOD_PAY = PRICE * 4
FEE = COLLATERAL // 10  # fault_fee_bps = 1000


def burned(env: Env) -> int:
    return load_totals(StateOverlay(env.app.kv)).burned


def prove_period(env: Env, s: object, close: int) -> None:
    """Prove the period that closes at ``close`` (submitted in its first block)."""
    env.until(close - 4)
    env.block((PROVIDER, "submit_post", {"posts": [post_entry(env, s)]}))  # type: ignore[arg-type]


def test_activation_payments_and_completion() -> None:
    env = new_env()
    s = activate(env)
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "ACTIVE" and deal["sector"] == 7
    assert [h[0] for h in deal["history"]] == ["PUBLISHED", "ACTIVE"]
    rec = env.view.sector(pk(PROVIDER), 7)
    assert rec is not None and rec["state"] == "ACTIVE" and rec["comm_r"] == s.comms.comm_r
    assert env.view.sectors_of(pk(PROVIDER)) == [(7, rec)]
    assert env.view.replica_id(pk(PROVIDER), 7) == s.rid
    base = env.view.account(pk(PROVIDER))
    assert base.locked == COLLATERAL
    client0 = env.view.account(pk(CLIENT))
    assert client0.locked == PRICE * (END - START)
    for n, close in enumerate((15, 19, 23)):
        prove_period(env, s, close)
        env.until(close)
        fees = n + 1
        acct = env.view.account(pk(PROVIDER))
        assert acct.balance == base.balance + (n + 1) * PERIOD_PAY - fees
        assert env.view.account(pk(CLIENT)).locked == client0.locked - (n + 1) * PERIOD_PAY
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "ACTIVE"  # paid out, ends at `end`
    env.until(END)
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "COMPLETED"
    assert deal["history"][-1] == ["COMPLETED", "deal ended", END]
    acct = env.view.account(pk(PROVIDER))
    assert acct.locked == 0 and acct.escrow == base.escrow + COLLATERAL
    assert env.view.account(pk(CLIENT)).locked == 0
    sector = env.view.sector(pk(PROVIDER), 7)
    assert sector is not None and sector["state"] == "COMPLETED"
    assert env.view.post_due(pk(PROVIDER), END - 1) == []


def test_missed_period_fault_fee_withheld_payment_then_recovery() -> None:
    env = new_env()
    s = activate(env)
    client0, b0 = env.view.account(pk(CLIENT)), burned(env)
    provider0 = env.view.account(pk(PROVIDER))
    env.until(15)  # period 0 closes unproven
    rec = env.view.sector(pk(PROVIDER), 7)
    assert rec is not None and rec["state"] == "FAULTY"
    assert rec["history"][-1] == ["FAULTY", "missed PoSt period 0", 15]
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "ACTIVE"
    assert deal["history"][-1] == ["ACTIVE", "sector 7 FAULTY: missed PoSt period 0", 15]
    assert burned(env) == b0 + FEE
    assert env.view.account(pk(CLIENT)).escrow == client0.escrow + PERIOD_PAY
    assert env.view.account(pk(PROVIDER)).balance == provider0.balance  # nothing paid
    assert env.view.account(pk(PROVIDER)).locked == COLLATERAL - FEE
    prove_period(env, s, 19)  # recovery: period 1 proven
    rec = env.view.sector(pk(PROVIDER), 7)
    assert rec is not None and rec["state"] == "ACTIVE"
    assert rec["history"][-1] == ["ACTIVE", "recovered by PoSt period 1", 16]
    env.until(19)
    assert env.view.account(pk(PROVIDER)).balance == provider0.balance + PERIOD_PAY - 1


def test_a_fault_declared_in_a_period_costs_its_fee_even_if_recovered_in_it() -> None:
    """A declared fault makes the period faulty (fee, payment withheld) although a recovery
    PoSt for the same period lands before it closes: the declaration cannot be undone for
    free within the period it was made in."""
    env = new_env()
    s = activate(env)
    client0, b0 = env.view.account(pk(CLIENT)), burned(env)
    env.until(START)  # period 0 (heights 12..15) is open
    env.block((PROVIDER, "declare_fault", {"sectors": [s.number]}))  # at 13, unproven
    prove_period(env, s, 15)  # recovered by a PoSt for period 0, inside period 0
    rec = env.view.sector(pk(PROVIDER), 7)
    assert rec is not None and rec["state"] == "ACTIVE" and rec["proven"] == 0
    env.until(15)  # period 0 closes
    rec = env.view.sector(pk(PROVIDER), 7)
    assert rec is not None and rec["state"] == "ACTIVE"  # proven: not faulted again
    assert burned(env) == b0 + FEE + 2  # + the declare_fault and submit_post tx fees
    assert env.view.account(pk(CLIENT)).escrow == client0.escrow + PERIOD_PAY  # withheld
    assert env.view.account(pk(PROVIDER)).locked == COLLATERAL - FEE
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["burned"] == FEE
    prove_period(env, s, 19)  # the next period is paid as usual
    env.until(19)
    assert burned(env) == b0 + FEE + 3
    assert env.view.account(pk(CLIENT)).escrow == client0.escrow + PERIOD_PAY


def test_terminated_fault_after_the_limit() -> None:
    env = new_env()
    s = activate(env)
    client0, b0 = env.view.account(pk(CLIENT)), burned(env)
    env.block((PROVIDER, "declare_fault", {"sectors": [s.number]}))  # FAULTY at once
    rec = env.view.sector(pk(PROVIDER), 7)
    assert rec is not None and rec["state"] == "FAULTY"
    assert rec["history"][-1][1] == "declared by the provider"
    env.until(19)  # periods 0, 1 faulty (max_faulty_periods = 2): still alive
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "ACTIVE"
    assert burned(env) == b0 + 2 * FEE + 1  # + the declare_fault tx fee
    env.until(23)  # third faulty period in a row
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "TERMINATED_FAULT"
    assert burned(env) == b0 + COLLATERAL + 1
    client = env.view.account(pk(CLIENT))
    assert client.locked == 0 and client.escrow == client0.escrow + client0.locked
    assert env.view.account(pk(PROVIDER)).locked == 0


def test_terminate_deal_early() -> None:
    env = new_env()
    s = activate(env)
    prove_period(env, s, 15)
    env.until(15)
    client0, provider0, b0 = (env.view.account(pk(CLIENT)), env.view.account(pk(PROVIDER)),
                              burned(env))
    env.block((PROVIDER, "terminate_deal", {"deal": s.deal}))
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "TERMINATED_EARLY"
    fee = COLLATERAL * 2000 // 10_000
    assert burned(env) == b0 + fee + 1
    provider = env.view.account(pk(PROVIDER))
    assert provider.locked == 0 and provider.escrow == provider0.escrow + COLLATERAL - fee
    client = env.view.account(pk(CLIENT))
    assert client.locked == 0 and client.escrow == client0.escrow + 2 * PERIOD_PAY
    env.until(19)  # no period closes for it any more
    assert env.view.account(pk(CLIENT)).escrow == client.escrow
    with pytest.raises(InvalidState):
        env.app.check_tx(env.tx(PROVIDER, "terminate_deal", {"deal": s.deal}))


def test_porep_rules_other_provider_and_seed_height() -> None:
    env = new_env()
    data = os.urandom(4096)
    deal_a = publish(env, PROVIDER, data)
    deal_b = publish(env, OTHER, data)  # same piece, another provider
    t = env.height()
    a = seal_sector(env, PROVIDER, 1, deal_a, data)
    env.block((PROVIDER, "precommit_sector", precommit_body(a, t)),
              (OTHER, "precommit_sector",
               {"sector": 1, "deal": deal_b, "comm_r": a.comms.comm_r, "ticket_height": t}))
    early = env.tx(PROVIDER, "provecommit_sector", {"sector": 1, "proof": b"\x00" * 64})
    with pytest.raises(InvalidTransaction, match="before the seed height"):
        env.app.check_tx(early)
    with pytest.raises(InvalidState):  # a used deal cannot take a second sector
        env.app.check_tx(env.tx(PROVIDER, "precommit_sector", precommit_body(a, t) | {"sector": 2}))
    rec = env.view.sector(pk(PROVIDER), 1)
    assert rec is not None
    env.until(rec["seed_height"] - 1)
    assert env.view.porep_seed(pk(PROVIDER), 1) is None
    with pytest.raises(InvalidTransaction, match="not drawn yet"):  # valid height, no seed yet
        env.app.check_tx(env.tx(PROVIDER, "provecommit_sector", {"sector": 1, "proof": b""}))
    env.until(rec["seed_height"])
    proof = porep(env, a)
    # A's replica and proof, claimed by B: B's replica id differs, so it must not verify.
    with pytest.raises(InvalidProof):
        env.app.check_tx(env.tx(OTHER, "provecommit_sector", {"sector": 1, "proof": proof}))
    env.block((PROVIDER, "provecommit_sector", {"sector": 1, "proof": proof}))
    deal = env.view.deal(deal_a)
    assert deal is not None and deal["state"] == "ACTIVE"


def test_post_rules_wrong_period_and_sector() -> None:
    env = new_env()
    s = activate(env, number=7)
    env.until(START)
    entry = post_entry(env, s)
    assert entry["period"] == 0
    with pytest.raises(WrongPeriod):
        env.app.check_tx(env.tx(PROVIDER, "submit_post", {"posts": [entry | {"period": 1}]}))
    with pytest.raises(InvalidProof):  # a valid proof, presented for another period's window
        env.until(16)
        env.app.check_tx(env.tx(PROVIDER, "submit_post", {"posts": [entry | {"period": 1}]}))
    entry = post_entry(env, s)
    corrupt = entry | {"proof": entry["proof"][:-1] + bytes([entry["proof"][-1] ^ 1])}
    with pytest.raises(InvalidProof):
        env.app.check_tx(env.tx(PROVIDER, "submit_post", {"posts": [corrupt]}))
    with pytest.raises(InvalidTransaction):  # a sector this provider does not have
        env.app.check_tx(env.tx(PROVIDER, "submit_post", {"posts": [entry | {"sector": 8}]}))
    env.block((PROVIDER, "submit_post", {"posts": [entry]}))
    with pytest.raises(WrongPeriod, match="already proven"):
        env.app.check_tx(env.tx(PROVIDER, "submit_post", {"posts": [entry]}))
    assert env.view.post_due(pk(PROVIDER), env.height() + 1) == []


def test_precommitted_sector_expires_with_its_deal() -> None:
    env = new_env()
    data = os.urandom(4096)
    deal = publish(env, PROVIDER, data)
    t = env.height()
    s = seal_sector(env, PROVIDER, 3, deal, data)
    env.block((PROVIDER, "precommit_sector", precommit_body(s, t)))
    env.until(START)
    d = env.view.deal(deal)
    rec = env.view.sector(pk(PROVIDER), 3)
    assert d is not None and d["state"] == "EXPIRED_UNACTIVATED"
    assert rec is not None and rec["state"] == "EXPIRED"


def test_receipt_by_tx_hash() -> None:
    env = new_env()
    raw = env.tx(CLIENT, "escrow_deposit", {"amount": 5})
    env.block((CLIENT, "escrow_deposit", {"amount": 5}))
    receipt = env.app.receipt(digest(raw))
    assert receipt is not None and receipt["height"] == env.height() and receipt["index"] == 0
    assert env.view.receipt(digest(raw)) == receipt
    assert env.app.receipt(b"\x01" * 32) is None


def test_governance_change_of_the_period_leaves_live_sectors_alone() -> None:
    env = new_env(validator=True)
    s = activate(env)
    effective = env.height() + 11  # gov_min_delay = 10: lands inside period 1
    env.block((PROVIDER, "gov_propose", {"param": "proving_period", "value": 7,
                                         "effective": effective}))
    assert effective < 19
    for close in (15, 19, 23):
        prove_period(env, s, close)
        due = env.view.post_due(pk(PROVIDER), close)
        assert due == []  # proven; the window is still the 4-block one
        env.until(close)
        rec = env.view.sector(pk(PROVIDER), s.number)
        assert rec is not None and rec["state"] == "ACTIVE" and rec["streak"] == 0
        assert rec["period_len"] == 4
    assert env.view.params().proving_period == 7
    env.until(END)
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] == "COMPLETED"
    assert deal["settled"] == PRICE * (END - START) and deal["burned"] == 0


def test_check_tx_writes_nothing_and_names_the_rule() -> None:
    env = new_env()
    root = env.app.state_root()
    env.app.check_tx(env.tx(CLIENT, "escrow_deposit", {"amount": 5}))  # valid: no raise
    assert env.app.state_root() == root == env.app.head().state_root
    with pytest.raises(BadNonce):
        env.app.check_tx(sign_tx(key(CLIENT), CHAIN, "escrow_deposit", 99, 1, {"amount": 5}))
    with pytest.raises(InsufficientFunds):
        env.app.check_tx(env.tx(CLIENT, "escrow_withdraw", {"amount": 10**9}))
