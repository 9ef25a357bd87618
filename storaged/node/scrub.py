"""Replica scrubbing, fault declaration and recovery.

A replica is good when its Merkle root equals the ``comm_r_last`` recorded when it was sealed
(the C tree builder runs in a worker thread).  It is checked

- by the :class:`Scrubber` every ``[storage] scrub_interval`` seconds (every proving sector),
- by the prover ``[proofs] post_margin`` blocks before each PoSt window it knows of, and
- by the prover when a PoSt it built does not open against ``comm_r_last``.

A bad or missing replica is declared on chain with ``declare_fault`` at once (before the
window, so the provider is not caught missing a proof), the sector becomes ``FAULTY``
locally and the reason is recorded.  The scrubber then recovers it: the replica is re-sealed
from the unsealed piece (deterministic given the replica id the chain recorded), checked, and
the sector is ``RECOVERING`` until a PoSt for it is committed, which recovers it on chain
(the prover then marks it ``ACTIVE`` again).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from proofs import seal as proofs_seal
from proofs.errors import ProofError
from storaged.chain.access import NotCommitted, TxSender
from storaged.chain.errors import ChainError
from storaged.errors import IntegrityError, NotFound, ResourceError
from storaged.node import sectors as sec
from storaged.node.background import run_in_background
from storaged.node.sectors import Sector, SectorStore

if TYPE_CHECKING:
    from storaged.node.sealing import Sealer

log = logging.getLogger(__name__)

TX_TIMEOUT = 60.0
BLOCK_TIMEOUT = 120.0
RETRY_BLOCKS = 10
LIVE_DEAL_STATES = ("PUBLISHED", "ACTIVE")
"""Chain deal states in which the provider keeps the replica."""


async def check_replica(store: SectorStore, rec: Sector) -> str | None:
    """Return why the replica of ``rec`` is bad, or None if its root is ``comm_r_last``."""
    if rec.comm_r_last is None:
        return "no comm_r_last recorded"

    def root() -> bytes:
        with store.open_replica(rec.sector, rec.size) as m:
            return proofs_seal.comm_d(m)  # the Merkle root of any sector-sized buffer

    try:
        actual = await run_in_background(root)
    except (NotFound, IntegrityError, ProofError) as exc:
        return str(exc)
    except OSError as exc:
        return f"replica of sector {rec.sector} unreadable: {exc}"
    if actual != rec.comm_r_last:
        return f"replica of sector {rec.sector}: Merkle root differs from comm_r_last"
    return None


async def declare_fault(sender: TxSender, store: SectorStore, rec: Sector, reason: str,
                        height: int) -> Sector:
    """Mark ``rec`` FAULTY locally (with ``reason``) and declare it on chain.

    A refused or uncommitted declaration is logged and recorded, never raised: the local
    state still changes so recovery starts at once.
    """
    log.warning("sector %d is faulty: %s", rec.sector, reason)
    rec = store.update(rec, state=sec.FAULTY, error=reason, updated=height)
    store.record_event(rec.sector, height, "fault", reason)
    try:
        receipt = await sender.send_and_wait("declare_fault", {"sectors": [rec.sector]},
                                             timeout=TX_TIMEOUT)
        store.record_event(rec.sector, int(receipt["height"]), "declared", "declare_fault "
                           "committed")
    except (ChainError, NotCommitted) as exc:
        store.record_event(rec.sector, height, "declare_failed", str(exc))
        log.warning("declare_fault for sector %d: %s", rec.sector, exc)
    return rec


class Scrubber:
    """Runs under the :class:`~storaged.node.sealing.Sealer` (recovery is a re-seal)."""

    def __init__(self, sealer: Sealer, *, interval: float) -> None:
        self.sealer = sealer
        self.interval = interval
        self.passes = 0
        self.last_pass: int | None = None
        self._retry_at: dict[int, int] = {}
        self.done = trio.Event()
        """Set (and replaced) after every full pass and every recovery attempt."""

    def _signal(self) -> None:
        event, self.done = self.done, trio.Event()
        event.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Scrub every ``interval`` seconds; recover faulty sectors as blocks arrive."""
        task_status.started()
        # The first full pass waits one interval: a restart must not re-read every replica
        # at once (the prover's pre-window checks cover the sectors about to be proven).
        next_pass = trio.current_time() + self.interval
        while True:
            try:
                if trio.current_time() >= next_pass:
                    await self.scrub_all()
                    next_pass = trio.current_time() + self.interval
                await self.recover_all()
            except Exception:  # a bug or a damaged record: log it, keep scrubbing
                log.exception("scrubber pass failed")
                next_pass = trio.current_time() + self.interval
            # Wake on the next block (recovery, prover-declared faults) or the next pass.
            height = self.sealer.chain.head().height
            with trio.move_on_after(max(0.0, min(next_pass - trio.current_time(),
                                                 BLOCK_TIMEOUT))):
                with contextlib.suppress(NotCommitted):
                    await self.sealer.chain.wait_height(height + 1, timeout=math.inf)

    async def scrub_all(self) -> None:
        """Check the replica of every proving sector; declare the bad ones."""
        store = self.sealer.store
        for rec in list(store.all()):
            if rec.state not in (sec.ACTIVE, sec.RECOVERING):
                continue
            reason = await check_replica(store, rec)
            if reason is not None:
                await declare_fault(self.sealer.sender, store, store.require(rec.sector),
                                    reason, self.sealer.chain.head().height)
                self.sealer.notify()
        self.passes += 1
        self.last_pass = self.sealer.chain.head().height
        self._signal()

    async def recover_all(self) -> None:
        """Re-seal every FAULTY sector from its unsealed piece (a failed attempt is retried
        after ``RETRY_BLOCKS`` blocks, not on every block); retire sectors whose deal ended."""
        store = self.sealer.store
        height = self.sealer.chain.head().height
        view = self.sealer.chain.view()
        for rec in list(store.all()):
            if rec.state in sec.PROVING:
                deal = view.deal(rec.deal)
                state = None if deal is None else deal["state"]
                if state not in LIVE_DEAL_STATES:
                    self.retire(rec, f"deal {rec.deal} is {state} on chain", height)
                    continue
            due = rec.state == sec.FAULTY and self._retry_at.get(rec.sector, 0) <= height
            if due and not await self.recover(rec):
                self._retry_at[rec.sector] = height + RETRY_BLOCKS

    def retire(self, rec: Sector, reason: str, height: int) -> None:
        """The deal is over: the sector is DONE and its replica and tree are deleted."""
        store = self.sealer.store
        store.remove_replica(rec.sector)
        store.update(rec, state=sec.DONE, error=reason, updated=height)
        store.record_event(rec.sector, height, "done", reason)
        log.info("sector %d retired: %s", rec.sector, reason)
        self.sealer.notify()

    async def recover(self, rec: Sector) -> bool:
        """Re-seal ``rec`` and mark it RECOVERING (the next PoSt recovers it on chain);
        return whether that worked (the reason of a failure is recorded as an event)."""
        store = self.sealer.store
        height = self.sealer.chain.head().height
        try:
            await self.sealer.reseal(rec)
        except (NotFound, IntegrityError, ResourceError, ProofError) as exc:
            store.record_event(rec.sector, height, "recovery_failed", str(exc))
            log.warning("sector %d cannot be recovered now: %s", rec.sector, exc)
            self._signal()
            return False
        reason = await check_replica(store, rec)
        if reason is not None:
            store.record_event(rec.sector, height, "recovery_failed", reason)
        else:
            self._retry_at.pop(rec.sector, None)
            store.update(store.require(rec.sector), state=sec.RECOVERING,
                         error=f"recovered from: {rec.error}", updated=height)
            store.record_event(rec.sector, height, "resealed", "replica rebuilt from the "
                               "unsealed piece; waiting for a PoSt")
            log.info("sector %d re-sealed; recovering with the next PoSt", rec.sector)
            self.sealer.notify()
        self._signal()
        return reason is None
