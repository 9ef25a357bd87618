"""The thin trio shell around :class:`Machine`: messages in, timers, broadcasts out.

One task owns the machine.  It waits for the next incoming item (encoded proposal or vote
bytes from the network, or a :class:`Commit` fetched by sync) or the earliest scheduled
timeout, feeds it to the machine, and performs the actions: broadcast (the message is already
in the fsynced WAL, see :mod:`wal`), schedule a timeout, commit a decided height through the
application and enter the next one, hand evidence to ``on_evidence``.

Gossip may drop messages silently (gossipsub under its default limits does), so a second task
re-broadcasts every message this validator signed at the current and the previous height
every ``rebroadcast_s`` seconds: a lost vote is recovered within one period, and a peer one
height behind gets the proposal and precommits it missed.  A node further behind learns it
from a peer's message and calls ``on_behind(height)``: the node syncs (:mod:`sync`) and feeds
the verified :class:`Commit` items into the same channel.  Peer messages that fail checks
raise a :class:`ConsensusError`, which is counted in ``rejected`` and never stops the node.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from storaged.chain.consensus.app import ConsensusApp
from storaged.chain.consensus.certificate import Evidence
from storaged.chain.consensus.errors import ConsensusError
from storaged.chain.consensus.machine import (
    Action,
    Broadcast,
    Decide,
    Machine,
    Misbehaviour,
    ScheduleTimeout,
)
from storaged.chain.consensus.messages import decode_message
from storaged.chain.consensus.sync import Commit

BroadcastFn = Callable[[bytes], Awaitable[None]]


class Driver:
    """Drives one :class:`Machine` from a channel of incoming items and its own timers."""

    def __init__(self, machine: Machine, app: ConsensusApp, broadcast: BroadcastFn, *,
                 rebroadcast_s: float = 1.0, commit_pause_s: float = 0.2,
                 on_evidence: Callable[[Evidence], None] | None = None,
                 on_behind: Callable[[int], None] | None = None) -> None:
        self.machine = machine
        self.app = app
        self.broadcast = broadcast
        self.rebroadcast_s = rebroadcast_s
        self.commit_pause_s = commit_pause_s
        self.on_evidence = on_evidence
        # Called with our height when a peer's message shows we are more than one height
        # behind (at most once per height): the node then syncs commits from that height and
        # feeds them back as Commit items.  Gossip alone cannot bring us more than one height.
        self.on_behind = on_behind
        self._behind_reported = -1
        self.rejected = 0
        self._timers: list[tuple[float, int, int, int]] = []
        self._next_start: tuple[float, int] | None = None  # (when, height) to enter next

    async def run(self, incoming: trio.MemoryReceiveChannel[bytes | Commit], start_height: int,
                  *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or ``incoming`` closes; ready once ``start_height`` is entered."""
        async with trio.open_nursery() as nursery:
            self._next_start = (trio.current_time(), start_height)
            nursery.start_soon(self._rebroadcast_forever)
            task_status.started()
            while True:
                if self._next_start is not None and self._next_start[0] <= trio.current_time():
                    height = self._next_start[1]
                    self._next_start = None
                    await self._perform(self.machine.start(height))
                    continue
                deadline = self._timers[0][0] if self._timers else float("inf")
                if self._next_start is not None:
                    deadline = min(deadline, self._next_start[0])
                item: bytes | Commit | None = None
                with trio.move_on_at(deadline) as scope:
                    try:
                        item = await incoming.receive()
                    except trio.EndOfChannel:
                        nursery.cancel_scope.cancel()
                        return
                if scope.cancelled_caught or item is None:  # next start or a timeout is due
                    if self._timers and self._timers[0][0] <= trio.current_time():
                        _, h, r, step = heapq.heappop(self._timers)
                        await self._perform(self.machine.on_timeout(h, r, step))
                    continue
                try:
                    if isinstance(item, Commit):
                        actions = self.machine.on_certificate(item.value, item.certificate)
                    else:
                        msg = decode_message(item)
                        self._check_behind(msg.height)
                        actions = self.machine.on_message(msg)
                except ConsensusError:
                    self.rejected += 1
                    continue
                await self._perform(actions)

    def _check_behind(self, peer_height: int) -> None:
        mine = self.machine.height
        if (self.on_behind is not None and peer_height > mine + 1
                and self._behind_reported < mine):
            self._behind_reported = mine
            self.on_behind(mine)

    async def _perform(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Broadcast):
                await self.broadcast(a.message.encode())
            elif isinstance(a, ScheduleTimeout):
                heapq.heappush(self._timers, (trio.current_time() + a.duration_ms / 1000,
                                              a.height, a.round, a.step))
            elif isinstance(a, Misbehaviour):
                if self.on_evidence is not None:
                    self.on_evidence(a.evidence)
            elif isinstance(a, Decide):
                self.app.commit(a.height, a.value, a.certificate)
                if self.machine.signer is not None:
                    self.machine.signer.prune(a.height)
                self._timers.clear()
                # Tendermint's commit timeout: a pause between heights sets the block interval
                # and lets late precommits arrive; it also keeps a lone validator from spinning.
                # The main loop enters the next height after the pause (it may decide at once:
                # no recursion).  Later actions belonged to the decided height: dropped.
                self._next_start = (trio.current_time() + self.commit_pause_s, a.height + 1)
                return

    async def _rebroadcast_forever(self) -> None:
        while True:
            await trio.sleep(self.rebroadcast_s)
            signer = self.machine.signer
            if signer is None:
                continue
            # The previous height too: a peer that missed our proposal or precommit there is
            # stuck until it gets them (the WAL keeps that height until the next commit).
            height = self.machine.height
            for h in (height - 1, height):
                for msg in signer.signed_at(h) if h >= 0 else []:
                    await self.broadcast(msg.encode())
