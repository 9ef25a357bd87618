"""The prover: a PoSt for every active sector in every proving window.

On every committed head the prover asks the chain what is due (``view.post_due(me, height)``:
sector, deal, period, window ``open..close`` inclusive, challenge indices) and, for each entry
not yet proven, maps the replica and its stored Merkle tree read-only and builds the PoSt in
a worker thread from the challenged leaves and their paths only (:func:`build_post`, identical to
``proofs.seal.prove_post``, which would re-hash the whole sector), checking every opening
against the sector's ``comm_r_last`` before sending it.  All proofs of one head go in ONE
``submit_post`` tx.  A proof is sent as soon as its window opens; if the tx is refused or
not committed, the entry is proven again on the next head while the window is open (the
margin is the rest of the window).

A replica that does not open (missing, truncated, corrupted) is declared faulty at once
(:func:`storaged.node.scrub.declare_fault`); the scrubber recovers it.  ``[proofs]
post_margin`` blocks before the next window of a sector (the previous window's ``close + 1``) the
prover re-checks the whole replica, so a bad one is declared before its window opens.

Per sector the last outcome (height, period, ok, error) is stored (``sector_post_key``) for
``storaged proving``; counters ``storaged_posts_ok`` / ``storaged_posts_missed`` go to the
metrics registry.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import nacl.signing
import trio
from prometheus_client import CollectorRegistry, Counter

from proofs import merkle
from proofs.errors import ProofError
from proofs.reference import post as post_ref
from storaged.chain.access import ChainAccess, NotCommitted, TxSender
from storaged.chain.errors import ChainError
from storaged.config import Config
from storaged.errors import IntegrityError, NotFound
from storaged.node import sectors as sec
from storaged.node.scrub import check_replica, declare_fault
from storaged.node.sealing import SECTORS_DIR
from storaged.node.sectors import PostOutcome, Sector, SectorStore, tree_drop
from storaged.store.kv import KV

log = logging.getLogger(__name__)

TX_TIMEOUT = 60.0
HEAD_TIMEOUT = 120.0


def build_post(leaves: memoryview, tree: memoryview, drop: int, comm_c: bytes,
               comm_r_last: bytes, challenges: list[int]) -> bytes | None:
    """PoSt proof (post format v1, byte-identical to ``proofs.seal.prove_post``) from the
    mapped replica and its stored tree: reads only the challenged subtrees and paths.
    None when the openings do not verify against ``comm_r_last`` (bad replica or tree).

    Raises:
        ProofError: sizes or challenge indices out of range.
    """
    n = len(leaves) // 32
    depth = merkle.depth(n)
    paths = merkle.merkle_paths(leaves, tree, drop, challenges)
    values = b"".join(bytes(leaves[32 * c : 32 * c + 32]) for c in challenges)
    if not merkle.merkle_verify_paths(comm_r_last, n, challenges, values, paths):
        return None
    out = [post_ref.PROOF_MAGIC, bytes([post_ref.PROOF_VERSION, depth, 0, 0]),
           len(challenges).to_bytes(4, "little"), comm_c, comm_r_last]
    step = 32 * depth
    for j in range(len(challenges)):
        out += [values[32 * j : 32 * j + 32], paths[step * j : step * (j + 1)]]
    return b"".join(out)


def prove_from_store(store: SectorStore, sector: int, size: int, comm_c: bytes,
                     comm_r_last: bytes, challenges: list[int]) -> bytes | None:
    """Build a PoSt for ``sector`` from its replica and stored tree; a missing or
    inconsistent tree is rebuilt from the replica once.  None: the replica itself does not
    match ``comm_r_last``.  Blocking: run in a worker thread.

    Raises:
        NotFound: the replica is missing.
        IntegrityError: the replica has the wrong size.
        ResourceError: the tree could not be rewritten.
    """
    drop = tree_drop(size)
    with store.open_replica(sector, size) as leaves:
        try:
            with store.open_tree(sector, size) as tree:
                proof = build_post(leaves, tree, drop, comm_c, comm_r_last, challenges)
            if proof is not None:
                return proof
        except (NotFound, IntegrityError):
            pass  # derived data: rebuild below
    if store.write_tree(sector, size) != comm_r_last:
        return None
    with store.open_replica(sector, size) as leaves, store.open_tree(sector, size) as tree:
        return build_post(leaves, tree, drop, comm_c, comm_r_last, challenges)


def _due_fields(due: Any) -> tuple[int, int, int, int, list[int]]:
    # The chain's ``close`` is the window's last height; internally windows are half-open.
    return (int(due.sector), int(due.period), int(due.open), int(due.close) + 1,
            [int(c) for c in due.challenges])


class Prover:
    """Answers every PoSt window of this provider's sectors; see the module docstring."""

    def __init__(
        self, kv: KV, chain: ChainAccess, key: nacl.signing.SigningKey, home: Path,
        config: Config, *, metrics: CollectorRegistry | None = None,
        sender: TxSender | None = None,
    ) -> None:
        self.chain = chain
        self.me = bytes(key.verify_key)
        self.sender = sender if sender is not None else TxSender(chain, key)
        self.store = SectorStore(Path(home) / SECTORS_DIR, kv)
        self.margin = config.proofs.post_margin
        self.ok = Counter("storaged_posts_ok", "PoSts committed on chain", registry=metrics)
        self.missed = Counter("storaged_posts_missed",
                              "PoSt windows that closed without a committed proof",
                              registry=metrics)
        self.ok_count = 0
        self.missed_count = 0
        self.height = 0
        self._in_flight: set[tuple[int, int]] = set()
        self._proven: set[tuple[int, int]] = set()
        self._open: dict[tuple[int, int], int] = {}
        self._next_open: dict[int, int] = {}
        self._prechecked: set[tuple[int, int]] = set()
        self._nursery: trio.Nursery | None = None
        self.posted = trio.Event()
        """Set (and replaced) whenever a PoSt outcome is recorded."""

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """React to every committed head until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            height = self.chain.head().height
            while True:
                try:
                    await self.on_head(height)
                except Exception:  # a bug or a damaged record: log it, keep proving
                    log.exception("prover: handling height %d failed", height)
                try:
                    head = await self.chain.wait_height(height + 1, timeout=HEAD_TIMEOUT)
                except NotCommitted:
                    log.warning("no block for %.0f s; the prover keeps waiting", HEAD_TIMEOUT)
                    continue
                height = head.height

    def _signal(self) -> None:
        event, self.posted = self.posted, trio.Event()
        event.set()

    async def on_head(self, height: int) -> None:
        """Prove what is due at ``height``, pre-check upcoming windows, count missed ones."""
        self.height = height
        for key, close in list(self._open.items()):
            if height >= close:
                del self._open[key]
                if key not in self._proven:
                    self._missed(key, height)
        await self._precheck(height)
        dues = self.chain.view().post_due(self.me, height)
        batch: list[dict[str, Any]] = []
        for due in dues:
            number, period, _open, close, challenges = _due_fields(due)
            key = (number, period)
            self._next_open[number] = close
            if key in self._proven or key in self._in_flight:
                continue
            self._open[key] = close
            post = await self._prove(number, period, challenges, height)
            if post is not None:
                batch.append(post)
        if batch:
            keys = [(p["sector"], p["period"]) for p in batch]
            self._in_flight.update(keys)
            close = min(self._open[k] for k in keys)
            if self._nursery is None:
                await self._submit(batch, keys, height, close)
            else:
                self._nursery.start_soon(self._submit, batch, keys, height, close)

    async def _prove(self, number: int, period: int, challenges: list[int],
                     height: int) -> dict[str, Any] | None:
        rec = self.store.get(number)
        if rec is None or rec.comm_c is None or rec.comm_r_last is None:
            self._record(number, PostOutcome(height, period, False, "sector unknown here"))
            return None
        if rec.state == sec.FAULTY:
            return None  # declared; the scrubber is re-sealing it
        comm_c, comm_r_last = rec.comm_c, rec.comm_r_last

        def work() -> bytes | None:
            return prove_from_store(self.store, rec.sector, rec.size, comm_c, comm_r_last,
                                    challenges)

        try:
            proof = await trio.to_thread.run_sync(work)
        except (NotFound, IntegrityError, ProofError, OSError) as exc:
            await self._fault(rec, f"PoSt period {period}: {exc}", height)
            return None
        if proof is None:
            await self._fault(rec, f"PoSt period {period}: replica does not open against "
                                   "comm_r_last", height)
            return None
        return {"sector": number, "period": period, "proof": proof}

    async def _fault(self, rec: Sector, reason: str, height: int) -> None:
        self._record(rec.sector, PostOutcome(height, -1, False, reason))
        await declare_fault(self.sender, self.store, rec, reason, height)

    async def _precheck(self, height: int) -> None:
        """Re-check replicas whose next window opens within ``margin`` blocks."""
        for number, next_open in list(self._next_open.items()):
            key = (number, next_open)
            if key in self._prechecked or height < next_open - self.margin:
                continue
            self._prechecked.add(key)
            rec = self.store.get(number)
            if rec is None or rec.state not in (sec.ACTIVE, sec.RECOVERING):
                continue
            reason = await check_replica(self.store, rec)
            if reason is not None:
                await self._fault(rec, f"before window at {next_open}: {reason}", height)

    async def _receipt_before(self, tx_hash: bytes, close: int) -> dict[str, Any]:
        """The receipt of ``tx_hash``, waiting no longer than the window (``close``) lasts.

        Raises:
            NotCommitted: the window closed (or ``TX_TIMEOUT`` passed) without it.
        """
        found: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            async def receipt() -> None:
                with contextlib.suppress(NotCommitted):
                    found.append(await self.chain.wait_receipt(tx_hash, TX_TIMEOUT))
                nursery.cancel_scope.cancel()

            async def window() -> None:
                with contextlib.suppress(NotCommitted):
                    await self.chain.wait_height(close, TX_TIMEOUT)
                nursery.cancel_scope.cancel()

            nursery.start_soon(receipt)
            nursery.start_soon(window)
        if found:
            return found[0]
        # Both may wake on the same block: look once more without waiting.
        return await self.chain.wait_receipt(tx_hash, 0)

    async def _submit(self, batch: list[dict[str, Any]], keys: list[tuple[int, int]],
                      height: int, close: int) -> None:
        try:
            tx_hash = await self.sender.send("submit_post", {"posts": batch})
            receipt = await self._receipt_before(tx_hash, close)
        except (ChainError, NotCommitted) as exc:
            log.warning("submit_post for %s failed: %s (retrying while the window is open)",
                        keys, exc)
            for number, period in keys:
                self._record(number, PostOutcome(height, period, False, str(exc)))
            self._in_flight.difference_update(keys)
            self._signal()
            return
        at = int(receipt["height"])
        for number, period in keys:
            self._proven.add((number, period))
            self.ok.inc()
            self.ok_count += 1
            self._record(number, PostOutcome(at, period, True))
            rec = self.store.get(number)
            if rec is not None and rec.state == sec.RECOVERING:
                self.store.update(rec, state=sec.ACTIVE, error="", updated=at)
                self.store.record_event(number, at, "recovered", f"PoSt period {period} "
                                        "committed")
        self._in_flight.difference_update(keys)
        self._signal()

    def _missed(self, key: tuple[int, int], height: int) -> None:
        number, period = key
        self.missed.inc()
        self.missed_count += 1
        self._record(number, PostOutcome(height, period, False, "window closed without a "
                                         "committed proof"))
        log.warning("PoSt of sector %d period %d missed", number, period)

    def _record(self, number: int, outcome: PostOutcome) -> None:
        self.store.record_post(number, outcome)
        self._signal()

    # -- snapshots -----------------------------------------------------------------------------

    def proving_status(self) -> dict[str, Any]:
        """JSON-able: counters, the height last handled and each sector's last PoSt."""
        sectors = []
        for rec in self.store.all():
            if rec.state in (sec.ACTIVE, sec.FAULTY, sec.RECOVERING, sec.DONE):
                sectors.append({"sector": rec.sector, "deal": rec.deal, "state": rec.state,
                                "last_post": self.store.last_post(rec.sector),
                                "next_window": self._next_open.get(rec.sector),
                                "faults": self.store.events(rec.sector)})
        return {"available": True, "height": self.height, "posts_ok": self.ok_count,
                "posts_missed": self.missed_count, "sectors": sectors}

    snapshot = proving_status
