"""Equivocation evidence slashes a validator's bond once; unbonding waits unbond_delay blocks."""

from __future__ import annotations

import pytest

from storaged.chain.accounts import load_totals
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.consensus.certificate import Evidence
from storaged.chain.consensus.messages import PRECOMMIT, sign_vote
from storaged.chain.errors import (
    DuplicateEvidence,
    InsufficientFunds,
    InvalidProof,
    MalformedEncoding,
)
from storaged.chain.providers import Provider
from storaged.chain.state import StateOverlay
from storaged.chain.view import ChainView
from storaged.store.kv import MemoryKV
from tests.chain.helpers import CHAIN, GENESIS_TIME, key, pk
from tests.chain.sector_setup import PARAMS, Env

BOND = 1000


def _env() -> Env:
    kv = MemoryKV()
    genesis = {pk(i): Provider(peer_id=f"p{i}", collateral=100, bond=BOND) for i in (1, 3)}
    init_genesis(kv, CHAIN, {pk(i): 10_000 for i in (1, 2, 3)}, PARAMS, GENESIS_TIME, genesis)
    app = ChainApp(kv, CHAIN)
    return Env(app, ChainView(kv))


def _evidence(i: int, height: int = 1) -> bytes:
    a = sign_vote(key(i), CHAIN, PRECOMMIT, height, 0, b"\xaa" * 32)
    b = sign_vote(key(i), CHAIN, PRECOMMIT, height, 0, b"\xbb" * 32)
    return Evidence(a, b).encode()


def test_evidence_slashes_once() -> None:
    env = _env()
    burned0 = load_totals(StateOverlay(env.app.kv)).burned
    evidence = _evidence(1)
    env.block((2, "report_evidence", {"evidence": evidence}))  # anyone may report
    provider = env.view.provider(pk(1))
    assert provider is not None and provider.bond == BOND - BOND * 5000 // 10_000
    assert load_totals(StateOverlay(env.app.kv)).burned == burned0 + BOND // 2 + 1
    with pytest.raises(DuplicateEvidence):
        env.app.check_tx(env.tx(2, "report_evidence", {"evidence": evidence}))
    env.until(3)  # the set at h + 2 reflects the smaller bond
    assert dict(env.app.validators(env.height())) == {pk(1): BOND // 2, pk(3): BOND}


def test_evidence_refusals() -> None:
    env = _env()
    with pytest.raises(InvalidProof):  # key 2 is not a validator
        env.app.check_tx(env.tx(2, "report_evidence", {"evidence": _evidence(2)}))
    same = sign_vote(key(1), CHAIN, PRECOMMIT, 1, 0, b"\xaa" * 32)
    with pytest.raises(InvalidProof):  # two identical votes are no equivocation
        env.app.check_tx(env.tx(2, "report_evidence",
                                {"evidence": Evidence(same, same).encode()}))
    with pytest.raises(MalformedEncoding):
        env.app.check_tx(env.tx(2, "report_evidence", {"evidence": b"\x80"}))


def test_unbond_waits_the_delay() -> None:
    env = _env()
    balance0 = env.view.account(pk(3)).balance
    with pytest.raises(InsufficientFunds):
        env.app.check_tx(env.tx(3, "unbond", {"amount": BOND + 1}))
    env.block((3, "unbond", {"amount": 400}))
    at = env.height()
    provider = env.view.provider(pk(3))
    assert provider is not None and provider.bond == BOND - 400
    env.until(at + PARAMS.unbond_delay - 1)
    assert env.view.account(pk(3)).balance == balance0 - 1  # still pending (only the fee)
    env.until(at + PARAMS.unbond_delay)
    assert env.view.account(pk(3)).balance == balance0 - 1 + 400
    assert dict(env.app.validators(env.height()))[pk(3)] == BOND - 400


def test_unbonding_after_equivocating_does_not_dodge_the_slash() -> None:
    env = _env()
    env.until(2)
    infraction = env.height() + 1  # the validator double-signs at the next height...
    env.block((3, "unbond", {"amount": 600}))  # ...and unbonds in that very block
    balance = env.view.account(pk(3)).balance
    burned0 = load_totals(StateOverlay(env.app.kv)).burned
    env.block((2, "report_evidence", {"evidence": _evidence(3, height=infraction)}))
    provider = env.view.provider(pk(3))
    assert provider is not None and provider.bond == (BOND - 600) // 2
    # Half of the bond left (200) and half of the pending unbond (300) are burned.
    assert load_totals(StateOverlay(env.app.kv)).burned == burned0 + 1 + 200 + 300
    env.until(infraction + PARAMS.unbond_delay)
    assert env.view.account(pk(3)).balance == balance + 300  # only the unslashed half returns


def test_unbond_made_before_the_equivocation_is_not_slashed() -> None:
    env = _env()
    env.block((3, "unbond", {"amount": 600}))
    unbonded_at = env.height()
    balance = env.view.account(pk(3)).balance
    env.until(unbonded_at + 1)
    env.block((2, "report_evidence", {"evidence": _evidence(3, height=unbonded_at + 1)}))
    provider = env.view.provider(pk(3))
    assert provider is not None and provider.bond == (BOND - 600) // 2
    env.until(unbonded_at + PARAMS.unbond_delay)
    assert env.view.account(pk(3)).balance == balance + 600  # it had left before the fault
