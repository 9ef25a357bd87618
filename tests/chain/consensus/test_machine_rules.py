"""Directed tests of single Tendermint rules on one machine, messages fed by hand."""

from __future__ import annotations

from nacl.signing import SigningKey

from storaged.chain.consensus.machine import (
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    Action,
    Broadcast,
    Decide,
    Machine,
    Misbehaviour,
    ScheduleTimeout,
)
from storaged.chain.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    Vote,
    sign_proposal,
    sign_vote,
    value_id,
)
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.consensus.wal import Signer
from storaged.store.kv import MemoryKV
from tests.chain.consensus.sim import SimApp

CHAIN = "rules"
KEYS = [SigningKey(bytes([i + 40]) * 32) for i in range(4)]
VS = ValidatorSet.of((bytes(k.verify_key), 1) for k in KEYS)
BY_PK = {bytes(k.verify_key): k for k in KEYS}


def _votes(actions: list[Action]) -> list[Vote]:
    return [a.message for a in actions if isinstance(a, Broadcast)
            and isinstance(a.message, Vote)]


def _setup() -> tuple[Machine, SigningKey, list[SigningKey], MemoryKV]:
    me = next(k for k in KEYS if bytes(k.verify_key) not in (VS.proposer(1, 0), VS.proposer(1, 1)))
    kv = MemoryKV()
    m = Machine(SimApp(0, VS), Signer(me, CHAIN, kv), CHAIN)
    return m, me, [k for k in KEYS if k is not me], kv


def test_locked_validator_prevotes_nil_for_another_value_then_decides() -> None:
    m, me, others, kv = _setup()
    acts = m.start(1)
    assert any(isinstance(a, ScheduleTimeout) for a in acts)
    v, w = b"value v", b"value w"
    p0 = sign_proposal(BY_PK[VS.proposer(1, 0)], CHAIN, 1, 0, v, -1)
    assert [x.value_id for x in _votes(m.on_message(p0))] == [value_id(v)]
    out: list[Action] = []
    for k in others[:2]:  # with our own prevote: 3 of 4, a polka for v
        out += m.on_message(sign_vote(k, CHAIN, PREVOTE, 1, 0, value_id(v)))
    assert [(x.kind, x.value_id) for x in _votes(out)] == [(PRECOMMIT, value_id(v))]
    assert (m.lock.locked_round, m.lock.locked_value, m.step) == (0, v, STEP_PRECOMMIT)
    assert Signer(me, CHAIN, kv).lock_state(1).locked_value == v  # the lock is in the WAL
    # Precommits do not reach a quorum; round 1 begins.  A new value without a valid round
    # must get a nil prevote from a validator locked on v.
    m.on_timeout(1, 0, 2)
    assert m.round == 1
    p1 = sign_proposal(BY_PK[VS.proposer(1, 1)], CHAIN, 1, 1, w, -1)
    assert [x.value_id for x in _votes(m.on_message(p1))] == [None]
    assert m.step == STEP_PREVOTE
    # Late precommits for v in round 0 still decide v (any round's proposal + 2/3+ precommits).
    decided: list[Action] = []
    for k in others[:2]:
        decided += m.on_message(sign_vote(k, CHAIN, PRECOMMIT, 1, 0, value_id(v)))
    d = [a for a in decided if isinstance(a, Decide)]
    assert len(d) == 1 and d[0].value == v and d[0].certificate.round == 0
    d[0].certificate.verify(CHAIN, VS)
    assert m.on_message(sign_vote(others[2], CHAIN, PRECOMMIT, 1, 0, value_id(v))) == []


def test_nil_polka_precommits_nil_and_double_vote_is_evidence() -> None:
    m, _me, others, _kv = _setup()
    m.start(1)
    m.on_timeout(1, 0, 0)  # no proposal: prevote nil
    out: list[Action] = []
    for k in others[:2]:
        out += m.on_message(sign_vote(k, CHAIN, PREVOTE, 1, 0, None))
    assert [(x.kind, x.value_id) for x in _votes(out)] == [(PRECOMMIT, None)]
    twin = sign_vote(others[0], CHAIN, PREVOTE, 1, 0, value_id(b"x"))
    ev = [a.evidence for a in m.on_message(twin) if isinstance(a, Misbehaviour)]
    assert len(ev) == 1 and ev[0].vote_b == twin
    ev[0].verify(CHAIN, VS)


def test_f_plus_one_in_a_higher_round_skips_ahead() -> None:
    m, _me, others, _kv = _setup()
    m.start(1)
    m.on_message(sign_vote(others[0], CHAIN, PREVOTE, 1, 5, None))
    assert m.round == 0  # one of four is not more than a third
    m.on_message(sign_vote(others[1], CHAIN, PRECOMMIT, 1, 5, None))
    assert m.round == 5


def test_future_height_messages_are_buffered_and_replayed() -> None:
    m, _me, others, _kv = _setup()
    m.start(1)
    early = sign_vote(others[0], CHAIN, PREVOTE, 2, 0, None)
    assert m.on_message(early) == []
    m.start(2)
    assert m._h is not None and m._h.votes[(0, PREVOTE)][early.validator] == early
