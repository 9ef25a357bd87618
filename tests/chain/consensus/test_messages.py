"""Byte formats, signatures, certificates, validator math, WAL and sync: units and vectors."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from nacl.signing import SigningKey

from storaged.chain.consensus.certificate import Certificate, Evidence, decode_certificate
from storaged.chain.consensus.errors import (
    BadSignature,
    ConsensusError,
    DoubleSignRefused,
    InvalidCertificate,
    MalformedMessage,
    UnknownValidator,
    WrongProposer,
)
from storaged.chain.consensus.machine import Machine
from storaged.chain.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    Vote,
    decode_message,
    sign_proposal,
    sign_vote,
    value_id,
)
from storaged.chain.consensus.sync import (
    Commit,
    GetCommits,
    decode_commits,
    decode_get_commits,
    encode_commits,
    verify_commit,
)
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.consensus.wal import LockState, Signer
from storaged.errors import RemoteError
from storaged.store.kv import MemoryKV
from tests.chain.consensus.sim import SimApp

CHAIN = "vec-chain"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
VALSET = ValidatorSet.of((bytes(k.verify_key), 10) for k in KEYS)
VALUE = b"block at height 7"
VECTORS = Path(__file__).parents[2] / "vectors" / "consensus_v1.json"


def _cert(n: int = 3) -> Certificate:
    votes = tuple(sign_vote(k, CHAIN, PRECOMMIT, 7, 1, value_id(VALUE)) for k in KEYS[:n])
    return Certificate(7, 1, value_id(VALUE), votes)


def _vectors() -> dict[str, str]:
    prop = sign_proposal(KEYS[0], CHAIN, 7, 1, VALUE, 0)
    vote = sign_vote(KEYS[1], CHAIN, PREVOTE, 7, 1, value_id(VALUE))
    nil = sign_vote(KEYS[2], CHAIN, PRECOMMIT, 7, 1, None)
    return {
        "proposal": prop.encode().hex(),
        "proposal_signing_payload": prop.signing_payload(CHAIN).hex(),
        "prevote": vote.encode().hex(),
        "vote_signing_payload": vote.signing_payload(CHAIN).hex(),
        "nil_precommit": nil.encode().hex(),
        "certificate": _cert().encode().hex(),
        "get_commits": GetCommits(5, 10).encode().hex(),
        "lock_state": LockState(7, 1, VALUE, 1, VALUE).encode().hex(),
    }


def test_golden_vectors() -> None:
    # ed25519 is deterministic, so the signed encodings are fixed bytes.
    assert json.loads(VECTORS.read_text()) == _vectors()


def test_roundtrip_and_signature() -> None:
    prop = sign_proposal(KEYS[0], CHAIN, 7, 1, VALUE, -1)
    vote = sign_vote(KEYS[1], CHAIN, PREVOTE, 7, 1, None)
    for m in (prop, vote):
        again = decode_message(m.encode())
        assert again == m
        again.verify(CHAIN)
        with pytest.raises(BadSignature):
            again.verify("other-chain")


@pytest.mark.parametrize("data", [
    b"", b"\xff", cbor2.dumps([1, "vote"]), cbor2.dumps([2, "vote", 1, 0, 0, None, b"k" * 32,
                                                         b"s" * 64]),
    cbor2.dumps([1, "vote", 3, 0, 0, None, b"k" * 32, b"s" * 64]),
    cbor2.dumps([1, "vote", 1, -1, 0, None, b"k" * 32, b"s" * 64]),
    cbor2.dumps([1, "vote", 1, 0, 0, b"short", b"k" * 32, b"s" * 64]),
    cbor2.dumps([1, "proposal", 0, 0, b"v", 0, b"k" * 32, b"s" * 64]),  # valid_round >= round
    cbor2.dumps([1, "blob", 1, 0, 0, None, b"k" * 32, b"s" * 64]),
    cbor2.dumps([1, "vote", True, 0, 0, None, b"k" * 32, b"s" * 64]),
])
def test_malformed_messages_are_rejected(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(data)


def test_non_canonical_encoding_is_rejected() -> None:
    vote = sign_vote(KEYS[1], CHAIN, PREVOTE, 7, 1, None)
    body = [*vote.body(), vote.signature]
    loose = cbor2.dumps(body)[:1] + b"\x18\x01" + cbor2.dumps(body)[2:]  # 1 as a 2-byte int
    with pytest.raises(MalformedMessage):
        decode_message(loose)


def test_machine_rejects_peer_errors_with_specific_errors() -> None:
    app = SimApp(0, VALSET)
    m = Machine(app, None, CHAIN)
    m.start(7)
    stranger = SigningKey(b"\x99" * 32)
    with pytest.raises(UnknownValidator):
        m.on_message(sign_vote(stranger, CHAIN, PREVOTE, 7, 0, None))
    proposer = VALSET.proposer(7, 0)
    other = next(k for k in KEYS if bytes(k.verify_key) != proposer)
    with pytest.raises(WrongProposer):
        m.on_message(sign_proposal(other, CHAIN, 7, 0, VALUE, -1))
    forged = sign_vote(KEYS[0], "other", PREVOTE, 7, 0, None)
    with pytest.raises(BadSignature):
        m.on_message(forged)
    for err in (UnknownValidator, WrongProposer, BadSignature, MalformedMessage):
        assert issubclass(err, RemoteError)


def test_quorum_is_strictly_more_than_two_thirds() -> None:
    vs = ValidatorSet.of([(b"a" * 32, 1), (b"b" * 32, 1), (b"c" * 32, 1)])
    assert not vs.quorum(2)
    assert vs.quorum(3)
    vs4 = ValidatorSet.of([(bytes([i]) * 32, 1) for i in range(4)])
    assert not vs4.quorum(2) and vs4.quorum(3)
    assert not vs4.one_third(1) and vs4.one_third(2)


def test_proposer_selection_is_weighted_round_robin() -> None:
    vs = ValidatorSet.of([(b"a" * 32, 3), (b"b" * 32, 1)])
    picks = [vs.proposer(h, 0) for h in range(8)]
    assert picks.count(b"a" * 32) == 6 and picks.count(b"b" * 32) == 2
    assert vs.proposer(1, 2) == vs.proposer(3, 0)  # a new round moves to the next slot


def test_certificate_verifies_and_rejects_forgeries() -> None:
    cert = _cert()
    decode_certificate(cert.encode()).verify(CHAIN, VALSET)
    with pytest.raises(InvalidCertificate):
        _cert(2).verify(CHAIN, VALSET)  # 20 of 40 power
    dup = Certificate(7, 1, cert.value_id, (cert.votes[0], cert.votes[0], cert.votes[1]))
    with pytest.raises(InvalidCertificate):
        dup.verify(CHAIN, VALSET)
    prevote = sign_vote(KEYS[3], CHAIN, PREVOTE, 7, 1, value_id(VALUE))
    with pytest.raises(InvalidCertificate):
        Certificate(7, 1, cert.value_id, (*cert.votes[:2], prevote)).verify(CHAIN, VALSET)
    bad_sig = Vote(PRECOMMIT, 7, 1, cert.value_id, cert.votes[2].validator, b"\x00" * 64)
    with pytest.raises(InvalidCertificate):
        Certificate(7, 1, cert.value_id, (*cert.votes[:2], bad_sig)).verify(CHAIN, VALSET)
    with pytest.raises(InvalidCertificate):
        cert.verify("other-chain", VALSET)


def test_evidence_verifies_only_real_equivocation() -> None:
    a = sign_vote(KEYS[0], CHAIN, PREVOTE, 7, 1, value_id(VALUE))
    b = sign_vote(KEYS[0], CHAIN, PREVOTE, 7, 1, None)
    Evidence(a, b).verify(CHAIN, VALSET)
    assert Evidence(a, b).encode() == Evidence(b, a).encode()
    with pytest.raises(ConsensusError):
        Evidence(a, a).verify(CHAIN, VALSET)
    with pytest.raises(ConsensusError):
        Evidence(a, sign_vote(KEYS[1], CHAIN, PREVOTE, 7, 1, None)).verify(CHAIN, VALSET)


def test_signer_never_signs_conflicting_messages_and_prunes() -> None:
    kv = MemoryKV()
    s = Signer(KEYS[0], CHAIN, kv)
    lock = LockState(7)
    v = s.vote(PREVOTE, 7, 0, value_id(VALUE), lock)
    assert s.vote(PREVOTE, 7, 0, value_id(VALUE), lock) == v
    with pytest.raises(DoubleSignRefused):
        s.vote(PREVOTE, 7, 0, None, lock)
    # A new signer over the same store (a restart) remembers.
    s2 = Signer(KEYS[0], CHAIN, kv)
    with pytest.raises(DoubleSignRefused):
        s2.vote(PREVOTE, 7, 0, None, lock)
    s2.vote(PRECOMMIT, 7, 0, None, LockState(7, 0, VALUE, 0, VALUE))
    assert s2.lock_state(7) == LockState(7, 0, VALUE, 0, VALUE)
    assert s2.lock_state(8) == LockState(8)
    assert len(s2.signed_at(7)) == 2
    s2.prune(8)
    assert s2.signed_at(7) == []


def test_sync_roundtrip_and_verification() -> None:
    req = decode_get_commits(GetCommits(7, 2).encode())
    commit = Commit(7, VALUE, _cert())
    got = decode_commits(encode_commits([commit]), req)
    assert [(c.height, c.value, c.certificate.encode()) for c in got] == [
        (7, VALUE, commit.certificate.encode())]
    verify_commit(got[0], CHAIN, VALSET)
    with pytest.raises(InvalidCertificate):
        verify_commit(Commit(7, b"other", _cert()), CHAIN, VALSET)
    with pytest.raises(MalformedMessage):
        decode_commits(encode_commits([commit]), GetCommits(8, 2))
    with pytest.raises(MalformedMessage):
        decode_get_commits(cbor2.dumps([1, "get_commits", 0, 10_000]))


def test_proposer_turns_are_exact_per_window_and_spread() -> None:
    vs = ValidatorSet.of([(bytes([i]) * 32, 10) for i in range(4)])
    window = [vs.proposer(h, 0) for h in range(40)]
    assert all(window.count(bytes([i]) * 32) == 10 for i in range(4))
    assert len(set(window[:4])) >= 3  # equal powers do not mean ten turns in a row
    weighted = ValidatorSet.of([(b"a" * 32, 7), (b"b" * 32, 2), (b"c" * 32, 1)])
    picks = [weighted.proposer(h, 0) for h in range(100, 110)]
    assert (picks.count(b"a" * 32), picks.count(b"b" * 32), picks.count(b"c" * 32)) == (7, 2, 1)
