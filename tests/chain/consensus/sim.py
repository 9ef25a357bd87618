"""Deterministic simulation of N validators: one process, virtual time, a seeded lossy network.

The network delays (uniform in [min_delay, max_delay] ms), drops, duplicates and partitions
messages, all from one ``random.Random(seed)``, so a failing seed replays exactly.  Each node is
a :class:`Machine` plus the shell duties a real driver has: run timeouts, re-broadcast its own
current-height messages every ``rebroadcast_ms`` (so lost votes are recovered), answer a peer
that is behind with (value, certificate), and commit decided values through the app.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from storaged.chain.consensus.certificate import Certificate, Evidence
from storaged.chain.consensus.errors import ConsensusError
from storaged.chain.consensus.machine import (
    Action,
    Broadcast,
    Decide,
    Machine,
    Misbehaviour,
    ScheduleTimeout,
    Timeouts,
)
from storaged.chain.consensus.messages import Message, Proposal, Vote, sign_proposal, sign_vote
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.consensus.wal import Signer
from storaged.chain.errors import InvalidBlock
from storaged.store.kv import KV, MemoryKV

CHAIN = "sim-chain"


class SimApp:
    """Values are ``b"value h=<h> r=<r> by=<i>"``; values starting with ``b"bad"`` are invalid."""

    def __init__(self, index: int, valset: ValidatorSet, bad_proposals: bool = False) -> None:
        self.index = index
        self.valset = valset
        self.bad_proposals = bad_proposals
        self.committed: dict[int, bytes] = {}
        self.certs: dict[int, Certificate] = {}
        self.validated: set[bytes] = set()

    def validators(self, height: int) -> ValidatorSet:
        return self.valset

    def propose(self, height: int, round_: int) -> bytes:
        prefix = b"bad " if self.bad_proposals else b""
        return prefix + f"value h={height} r={round_} by={self.index}".encode()

    def validate(self, height: int, value: bytes) -> None:
        if value.startswith(b"bad"):
            raise InvalidBlock("sim: invalid value")
        self.validated.add(value)

    def commit(self, height: int, value: bytes, certificate: Certificate) -> None:
        assert height not in self.committed
        self.committed[height] = value
        self.certs[height] = certificate


@dataclass
class Node:
    index: int
    key: SigningKey
    kv: KV
    app: SimApp
    machine: Machine
    behaviour: str = "honest"  # honest | silent | double_vote | equivocate
    up: bool = True
    emitted: list[Message] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)


class Sim:
    def __init__(self, n: int, seed: int, *, powers: list[int] | None = None,
                 drop: float = 0.0, dup: float = 0.0, min_delay: int = 5,
                 max_delay: int = 80, behaviours: dict[int, str] | None = None,
                 keys: list[SigningKey] | None = None, chain_id: str = CHAIN,
                 make_app: Callable[[int, ValidatorSet], SimApp] = SimApp) -> None:
        self.rng = random.Random(seed)
        self.keys = keys or [SigningKey(bytes([i + 1]) * 32) for i in range(n)]
        self.chain_id = chain_id
        self.make_app = make_app
        powers = powers or [10] * n
        self.valset = ValidatorSet.of((bytes(k.verify_key), p) for k, p in zip(self.keys, powers,
                                                                               strict=True))
        self.drop, self.dup = drop, dup
        self.min_delay, self.max_delay = min_delay, max_delay
        self.now = 0
        self._q: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.partition: Callable[[int, int, int], bool] = lambda t, a, b: False
        self.timeouts = Timeouts(propose=300, prevote=200, precommit=200, delta=100)
        self.rebroadcast_ms = 400
        self.rejected: list[ConsensusError] = []  # peer messages refused, with the reason
        behaviours = behaviours or {}
        self.nodes = [self._make_node(i, MemoryKV(), behaviours.get(i, "honest"))
                      for i in range(n)]

    # ---- construction / crash ---------------------------------------------------------
    def _make_node(self, i: int, kv: KV, behaviour: str) -> Node:
        app = self.make_app(i, self.valset)
        machine = Machine(app, Signer(self.keys[i], self.chain_id, kv), self.chain_id,
                          self.timeouts)
        return Node(i, self.keys[i], kv, app, machine, behaviour)

    def start(self) -> None:
        for node in self.nodes:
            self._run(node, node.machine.start(1))
            self._schedule_rebroadcast(node)

    def crash(self, i: int) -> None:
        self.nodes[i].up = False

    def restart(self, i: int) -> None:
        """Replace node i by a fresh process over the same KV and committed app state."""
        old = self.nodes[i]
        node = self._make_node(i, old.kv, old.behaviour)
        node.app = old.app
        node.machine.app = old.app
        node.emitted = old.emitted
        node.evidence = old.evidence
        self.nodes[i] = node
        self._run(node, node.machine.start(max(old.app.committed, default=0) + 1))
        self._schedule_rebroadcast(node)

    # ---- event queue ------------------------------------------------------------------
    def at(self, t: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, fn))

    def run_until(self, cond: Callable[[], bool], deadline_ms: int) -> bool:
        while self._q and not cond():
            t, _, fn = heapq.heappop(self._q)
            if t > deadline_ms:
                heapq.heappush(self._q, (t, _, fn))  # keep it for a later run_until
                return False
            self.now = t
            fn()
        return cond()

    def min_height(self, nodes: list[int] | None = None) -> int:
        idx = nodes if nodes is not None else [n.index for n in self.nodes]
        return min(max(self.nodes[i].app.committed, default=0) for i in idx)

    # ---- network ----------------------------------------------------------------------
    def _send(self, src: int, dst: int, payload: Any) -> None:
        if self.partition(self.now, src, dst) or self.rng.random() < self.drop:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.rng.randint(self.min_delay, self.max_delay)
            self.at(self.now + delay, functools.partial(self._deliver, src, dst, payload))

    def _broadcast(self, src: int, msg: Message) -> None:
        for j in range(len(self.nodes)):
            if j != src:
                self._send(src, j, msg)

    def _deliver(self, src: int, dst: int, payload: Any) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        if isinstance(payload, tuple):  # catch-up: (value, certificate)
            value, cert = payload
            try:
                self._run(node, node.machine.on_certificate(value, cert))
            except ConsensusError as exc:
                self.rejected.append(exc)
            return
        msg: Message = payload
        if msg.height < node.machine.height and msg.height in node.app.committed:
            h = msg.height
            self._send(dst, src, (node.app.committed[h], node.app.certs[h]))
            return
        try:
            self._run(node, node.machine.on_message(msg))
        except ConsensusError as exc:
            self.rejected.append(exc)

    # ---- shell duties -----------------------------------------------------------------
    def _schedule_rebroadcast(self, node: Node) -> None:
        machine = node.machine

        def tick() -> None:
            if not node.up or self.nodes[node.index] is not node:
                return
            for m in node.emitted:
                if m.height == machine.height:
                    self._broadcast(node.index, m)
            self.at(self.now + self.rebroadcast_ms, tick)

        self.at(self.now + self.rebroadcast_ms, tick)

    def _run(self, node: Node, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Broadcast):
                self._emit(node, a.message)
            elif isinstance(a, ScheduleTimeout):
                m = node.machine

                def fire(a: ScheduleTimeout = a, m: Machine = m) -> None:
                    if node.up and node.machine is m:
                        self._run(node, m.on_timeout(a.height, a.round, a.step))

                self.at(self.now + a.duration_ms, fire)
            elif isinstance(a, Misbehaviour):
                node.evidence.append(a.evidence)
            elif isinstance(a, Decide):
                a.certificate.verify(self.chain_id, self.valset)
                if a.height not in node.app.committed:
                    node.app.commit(a.height, a.value, a.certificate)
                assert node.machine.signer is not None
                node.machine.signer.prune(a.height)
                self._run(node, node.machine.start(a.height + 1))
                return  # actions after a Decide belong to the finished height

    def _emit(self, node: Node, msg: Message) -> None:
        if msg not in node.emitted:
            node.emitted.append(msg)
        if node.behaviour == "silent":
            return
        if node.behaviour == "double_vote" and isinstance(msg, Vote):
            other = sign_vote(node.key, self.chain_id, msg.kind, msg.height, msg.round,
                              None if msg.value_id is not None else b"\xee" * 32)
            node.emitted.append(other)
            for j in range(len(self.nodes)):
                if j != node.index:
                    self._send(node.index, j, msg if j % 2 else other)
            return
        if node.behaviour == "equivocate" and isinstance(msg, Proposal):
            twin = sign_proposal(node.key, self.chain_id, msg.height, msg.round,
                                 msg.value + b" twin", msg.valid_round)
            for j in range(len(self.nodes)):
                if j != node.index:
                    self._send(node.index, j, msg if j % 2 else twin)
            return
        self._broadcast(node.index, msg)
