"""The Tendermint state machine (arXiv 1807.04938, Algorithm 1), sans-IO.

:class:`Machine` takes events (:meth:`start`, :meth:`on_message`, :meth:`on_timeout`,
:meth:`on_certificate`) and returns actions: :class:`Broadcast` a signed message,
:class:`ScheduleTimeout`, :class:`Decide` a height, :class:`Misbehaviour` evidence.  It has no
clock and no network; it calls the application (``validators``/``propose``/``validate``) and
the WAL-guarded :class:`Signer`, which logs every message before it is returned for sending.

Rules are re-evaluated after each event (``_apply_rules``), each guarded by the paper's "for
the first time" flags, so the order in which messages arrive does not matter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from storaged.chain.consensus.app import ConsensusApp
from storaged.chain.consensus.certificate import Certificate, Evidence
from storaged.chain.consensus.errors import ConsensusError, UnknownValidator, WrongProposer
from storaged.chain.consensus.messages import PRECOMMIT, PREVOTE, Message, Proposal, Vote
from storaged.chain.consensus.messages import value_id as id_of
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.consensus.wal import LockState, Signer
from storaged.errors import LocalBugError, RemoteError

STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT = 0, 1, 2
MAX_ROUNDS_AHEAD = 64  # votes further ahead are dropped: bounds memory per height
MAX_HEIGHTS_AHEAD = 4  # future-height messages buffered, then replayed on entering the height
MAX_BUFFERED = 4096


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Round timeouts in milliseconds: base + delta * round, so they grow until rounds succeed."""

    propose: int = 3000
    prevote: int = 1000
    precommit: int = 1000
    delta: int = 500

    def duration(self, step: int, round_: int) -> int:
        base = (self.propose, self.prevote, self.precommit)[step]
        return base + self.delta * round_


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Message


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    height: int
    round: int
    step: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Decide:
    height: int
    value: bytes
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    evidence: Evidence


Action = Broadcast | ScheduleTimeout | Decide | Misbehaviour


@dataclass
class _Height:
    validators: ValidatorSet
    proposals: dict[int, Proposal] = field(default_factory=dict)
    votes: dict[tuple[int, int], dict[bytes, Vote]] = field(
        default_factory=lambda: defaultdict(dict))
    valid_cache: dict[bytes, bool] = field(default_factory=dict)
    fired: set[tuple[str, int]] = field(default_factory=set)


class Machine:
    """One validator's (or observer's, ``signer=None``) consensus state."""

    def __init__(self, app: ConsensusApp, signer: Signer | None, chain_id: str,
                 timeouts: Timeouts | None = None) -> None:
        self.app = app
        self.signer = signer
        self.chain_id = chain_id
        self.timeouts = timeouts or Timeouts()
        self.height = -1
        self.round = 0
        self.step = STEP_PROPOSE
        self.lock = LockState(-1)
        self._h: _Height | None = None
        self._future: list[Message] = []
        self.decided = False  # the current height decided; events wait for start(height + 1)

    # ---- events -------------------------------------------------------------------------
    def start(self, height: int) -> list[Action]:
        """Enter ``height`` (the one after the last committed) at round 0.

        Messages this validator already signed at ``height`` (from its WAL, after a restart)
        are fed back in and re-broadcast, and the logged lock state is restored.
        """
        self.height = height
        self.decided = False
        self._h = _Height(self.app.validators(height))
        self.lock = self.signer.lock_state(height) if self.signer else LockState(height)
        out: list[Action] = []
        logged = self.signer.signed_at(height) if self.signer else []
        start_round = max((m.round for m in logged), default=0)
        for m in logged:
            self._record(m, out)
            out.append(Broadcast(m))
        out += self._start_round(start_round)
        # Resume past the steps already signed in that round, so no rule asks to sign again.
        signed = [m.kind for m in logged if isinstance(m, Vote) and m.round == start_round]
        self.step = max([self.step, *signed])
        out += self._apply_rules()
        future, self._future = self._future, []
        for m in future:
            out += self.on_message(m)
        return out

    def on_message(self, msg: Message) -> list[Action]:
        """A proposal or vote from a peer (or ourselves).

        Raises:
            ConsensusError: bad signature, unknown validator, wrong proposer; nothing changed.
        """
        if msg.height > self.height or (msg.height == self.height and self.decided):
            ahead = msg.height - self.height
            if 0 < ahead <= MAX_HEIGHTS_AHEAD and len(self._future) < MAX_BUFFERED:
                self._future.append(msg)
            return []
        if msg.height < self.height or msg.round > self.round + MAX_ROUNDS_AHEAD:
            return []
        h = self._cur()
        if self._seen(msg):
            return []  # a re-broadcast or duplicate: already verified and counted
        if isinstance(msg, Proposal):
            if msg.proposer != h.validators.proposer(msg.height, msg.round):
                raise WrongProposer(f"{msg.proposer.hex()[:16]} is not proposer of "
                                    f"{msg.height}/{msg.round}")
        elif not h.validators.contains(msg.validator):
            raise UnknownValidator(f"{msg.validator.hex()[:16]} is not a validator")
        msg.verify(self.chain_id)
        out: list[Action] = []
        self._record(msg, out)
        out += self._apply_rules()
        return out

    def on_timeout(self, height: int, round_: int, step: int) -> list[Action]:
        """A timeout scheduled earlier fired (stale ones are ignored)."""
        if height != self.height or round_ != self.round or self.decided:
            return []
        out: list[Action] = []
        if step == STEP_PROPOSE and self.step == STEP_PROPOSE:
            out += self._vote(PREVOTE, None)
            self.step = STEP_PREVOTE
        elif step == STEP_PREVOTE and self.step == STEP_PREVOTE:
            out += self._vote(PRECOMMIT, None)
            self.step = STEP_PRECOMMIT
        elif step == STEP_PRECOMMIT:
            out += self._start_round(round_ + 1)
        return out + self._apply_rules()

    def on_certificate(self, value: bytes, cert: Certificate) -> list[Action]:
        """Catch-up: a value with its commit certificate for the current height from a peer.

        Raises:
            InvalidCertificate / ConsensusError: the certificate does not verify, or it names
                another height or value.
        """
        if self.decided:
            return []
        if cert.height != self.height or cert.value_id != id_of(value):
            raise ConsensusError("certificate is not for this height and value")
        cert.verify(self.chain_id, self._cur().validators)
        self.decided = True
        return [Decide(self.height, value, cert)]

    # ---- internals ----------------------------------------------------------------------
    def _cur(self) -> _Height:
        if self._h is None:
            raise LocalBugError("consensus machine used before start()")
        return self._h

    def _seen(self, msg: Message) -> bool:
        h = self._cur()
        if isinstance(msg, Proposal):
            return h.proposals.get(msg.round) == msg
        return h.votes.get((msg.round, msg.kind), {}).get(msg.validator) == msg

    def _record(self, msg: Message, out: list[Action]) -> None:
        h = self._cur()
        if isinstance(msg, Proposal):
            h.proposals.setdefault(msg.round, msg)
            return
        votes = h.votes[(msg.round, msg.kind)]
        prev = votes.get(msg.validator)
        if prev is None:
            votes[msg.validator] = msg
        elif prev.value_id != msg.value_id:
            out.append(Misbehaviour(Evidence(prev, msg)))

    def _valid(self, value: bytes) -> bool:
        h = self._cur()
        vid = id_of(value)
        if vid not in h.valid_cache:
            try:
                self.app.validate(self.height, value)
                h.valid_cache[vid] = True
            except RemoteError:
                h.valid_cache[vid] = False
        return h.valid_cache[vid]

    def _power_any(self, round_: int, kind: int) -> int:
        """Power of validators that cast a ``kind`` vote in ``round_``, for anything."""
        h = self._cur()
        return sum(h.validators.power(k) for k in h.votes.get((round_, kind), {}))

    def _power(self, round_: int, kind: int, vid: bytes | None) -> int:
        """Power of validators that cast a ``kind`` vote in ``round_`` for ``vid``."""
        h = self._cur()
        votes = h.votes.get((round_, kind), {})
        return sum(h.validators.power(v.validator) for v in votes.values()
                   if v.value_id == vid)

    def _vote(self, kind: int, vid: bytes | None) -> list[Action]:
        if self.signer is None or not self._cur().validators.contains(self.signer.public_key):
            return []
        v = self.signer.vote(kind, self.height, self.round, vid, self.lock)
        out: list[Action] = [Broadcast(v)]
        self._record(v, out)
        return out

    def _start_round(self, round_: int) -> list[Action]:
        h = self._cur()
        self.round, self.step = round_, STEP_PROPOSE
        out: list[Action] = []
        signer = self.signer
        mine = h.proposals.get(round_)
        if signer is not None and mine is not None and mine.proposer == signer.public_key:
            out.append(Broadcast(mine))  # logged before a restart: re-send, never re-sign
        elif signer is not None and h.validators.proposer(self.height, round_) == signer.public_key:
            if self.lock.valid_value is not None:
                value, vr = self.lock.valid_value, self.lock.valid_round
            else:
                value, vr = self.app.propose(self.height, round_), -1
            p = signer.propose(self.height, round_, value, vr, self.lock)
            h.proposals.setdefault(round_, p)
            out.append(Broadcast(p))
        else:
            out.append(ScheduleTimeout(self.height, round_, STEP_PROPOSE,
                                       self.timeouts.duration(STEP_PROPOSE, round_)))
        return out

    def _once(self, name: str, round_: int) -> bool:
        key = (name, round_)
        fired = self._cur().fired
        if key in fired:
            return False
        fired.add(key)
        return True

    def _apply_rules(self) -> list[Action]:
        out: list[Action] = []
        progressed = True
        while progressed:
            before = (self.height, self.round, self.step, len(out))
            out += self._rules_once()
            progressed = before != (self.height, self.round, self.step, len(out))
            if any(isinstance(a, Decide) for a in out):
                self.decided = True
                break
        return out

    def _rules_once(self) -> list[Action]:
        h, r, vs = self._cur(), self.round, self._cur().validators
        out: list[Action] = []
        # Decide: proposal of any round r' and 2/3+ precommits for it (lines 49-54).
        for pr, prop in sorted(h.proposals.items()):
            vid = id_of(prop.value)
            if vs.quorum(self._power(pr, PRECOMMIT, vid)) and self._valid(prop.value):
                votes = tuple(v for v in h.votes[(pr, PRECOMMIT)].values() if v.value_id == vid)
                return [Decide(self.height, prop.value, Certificate(self.height, pr, vid, votes))]
        # Round skip: f+1 of the power sent messages in a higher round (lines 55-56).
        higher = sorted({rr for (rr, _) in h.votes if rr > r}, reverse=True)
        for rr in higher:
            senders = {k for kind in (PREVOTE, PRECOMMIT) for k in h.votes.get((rr, kind), {})}
            if vs.one_third(sum(vs.power(k) for k in senders)):
                return self._start_round(rr)
        p = h.proposals.get(r)
        lock = self.lock
        if p is not None and self.step == STEP_PROPOSE:
            vid = id_of(p.value)
            if p.valid_round == -1:  # lines 22-27
                ok = self._valid(p.value) and (lock.locked_round == -1
                                               or lock.locked_value == p.value)
                out += self._vote(PREVOTE, vid if ok else None)
                self.step = STEP_PREVOTE
            elif vs.quorum(self._power(p.valid_round, PREVOTE, vid)):  # lines 28-33
                ok = self._valid(p.value) and (lock.locked_round <= p.valid_round
                                               or lock.locked_value == p.value)
                out += self._vote(PREVOTE, vid if ok else None)
                self.step = STEP_PREVOTE
        if (self.step == STEP_PREVOTE and vs.quorum(self._power_any(r, PREVOTE))
                and self._once("prevote-timeout", r)):  # lines 34-35
            out.append(ScheduleTimeout(self.height, r, STEP_PREVOTE,
                                       self.timeouts.duration(STEP_PREVOTE, r)))
        if (p is not None and self.step >= STEP_PREVOTE
                and vs.quorum(self._power(r, PREVOTE, id_of(p.value)))
                and self._valid(p.value) and self._once("polka", r)):  # lines 36-43
            if self.step == STEP_PREVOTE:
                self.lock = LockState(self.height, r, p.value, r, p.value)
                out += self._vote(PRECOMMIT, id_of(p.value))
                self.step = STEP_PRECOMMIT
            else:
                self.lock = LockState(self.height, self.lock.locked_round,
                                      self.lock.locked_value, r, p.value)
        if self.step == STEP_PREVOTE and vs.quorum(self._power(r, PREVOTE, None)):  # 44-46
            out += self._vote(PRECOMMIT, None)
            self.step = STEP_PRECOMMIT
        if vs.quorum(self._power_any(r, PRECOMMIT)) and self._once("precommit-timeout", r):  # 47-48
            out.append(ScheduleTimeout(self.height, r, STEP_PRECOMMIT,
                                       self.timeouts.duration(STEP_PRECOMMIT, r)))
        return out
