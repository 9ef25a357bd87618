"""The sealer: from a received piece to an active deal (PoRep pipeline).

For each deal whose piece is stored and checked (``enqueue(deal_id)``, called by the market)
the sealer creates a sector job (:mod:`storaged.node.sectors`) and drives it:

1. ``RECEIVED`` → seal: ticket = the beacon-derived ``view.ticket(h)`` of the last committed
   height ``h``; ``replica_id(provider, sector, comm_d, ticket)``; the C labelling runs in a
   worker thread (it releases the GIL) straight into a mapped temp file, fsynced and renamed.
   The commitments are checked: ``comm_d`` must equal the deal's piece commitment.
2. ``SEALED`` → ``precommit_sector {sector, deal, comm_r, ticket_height}``, unless the chain
   already has the precommit (a restart after sending it is idempotent).  A refused precommit
   (e.g. the ticket became too old while the tx waited) re-seals with a fresh ticket.
3. ``PRECOMMITTED`` → wait for the chain's ``seed_height`` (``wait_height``, no polling), read
   ``porep_seed``, ``prove_porep`` in a thread, ``provecommit_sector``; ``ACTIVE`` once committed.

Every step is persisted before the next starts, so a restart resumes each job where it was.
At most ``[proofs] seal_workers`` labellings run at once (each is CPU-bound on one core;
the default 0 means one per core), in threads at background priority
(:mod:`storaged.node.background`) so consensus and transfers keep their share of the CPU.
Sectors that wait for a worker are sealed together: the worker that frees up takes up to
``proofs.seal.MAX_BATCH`` waiting sectors of the same size and layer count and seals them as
one batch on its core (one sector per SIMD lane, ~3x the labels per second of one sector;
``proofs.seal.seal_batch``), as long as the batch fits in ``BATCH_MEMORY`` bytes of labelling
memory. Each replica is still written to its own temp file, fsynced and renamed, and each
sector's record is updated by its own job afterwards, exactly as for a lone seal, so a crash
mid-batch leaves every sector of the batch RECEIVED (to be sealed again) or SEALED.
A step that fails is retried a few blocks later, up to ``MAX_ATTEMPTS`` times; then the job is
``FAILED`` with the reason.  The scrubber (:mod:`storaged.node.scrub`) runs under the sealer
because recovery is a re-seal.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nacl.signing
import trio
from prometheus_client import CollectorRegistry, Counter

from proofs import seal as proofs_seal
from proofs.errors import ProofError
from proofs.profiles import Profile
from storaged.chain.access import ChainAccess, NotCommitted, TxSender
from storaged.chain.errors import ChainError, InvalidState, UnknownObject
from storaged.config import Config
from storaged.errors import IntegrityError, NotFound, ResourceError
from storaged.node import sectors as sec
from storaged.node.background import run_in_background
from storaged.node.sectors import Sector, SectorStore, map_file
from storaged.store.kv import KV

log = logging.getLogger(__name__)

SECTORS_DIR = "sectors"
MAX_ATTEMPTS = 5
RETRY_BLOCKS = 2
"""Blocks to wait before retrying a failed step (lets the chain move past the cause)."""
SECONDS_PER_BLOCK = 30.0
"""Deadline per block waited for; generous, so only a stalled chain trips it."""
TX_TIMEOUT = 60.0
ACTIVATED = ("ACTIVE", "FAULTY")
"""Chain sector states reached only through a committed provecommit."""
BATCH_MEMORY = 4 << 30
"""Most labelling memory one batch seal may take: two lane-interleaved layers of 8 x the
sector size whatever the batch size, plus each sector's column digests, i.e.
(16 + lanes) x the sector size.  Sectors above ~200 MiB are therefore sealed one by one."""


class PieceFiles(Protocol):
    """Where the sealer reads unsealed pieces: the market's piece store."""

    def path(self, comm_d: bytes) -> Path: ...

    def has(self, comm_d: bytes) -> bool: ...


class StepFailed(Exception):
    """A pipeline step failed in a way worth retrying (internal to the sealer)."""


def chain_sector(chain: ChainAccess, provider: bytes, number: int) -> dict[str, Any] | None:
    """The chain's record of ``provider``'s sector ``number`` (None if not precommitted)."""
    found: dict[str, Any] | None = chain.view().sector(provider, number)
    return found


@contextlib.contextmanager
def _open_piece(piece: Path, size: int) -> Iterator[memoryview]:
    """Map the unsealed ``piece`` of ``size`` bytes.

    Raises:
        NotFound: the piece is not on disk.
        IntegrityError: the piece is not ``size`` bytes long.
    """
    if not piece.exists():
        raise NotFound(f"unsealed piece {piece.name[:16]} is not on disk")
    with map_file(piece) as data:
        if len(data) != size:
            raise IntegrityError(f"piece file is {len(data)} bytes, the deal says {size}")
        yield data


def batch_lanes(size: int) -> int:
    """How many sectors of ``size`` bytes one batch seal may take (1: seal them alone)."""
    lanes = min(proofs_seal.MAX_BATCH, BATCH_MEMORY // size - 16)
    return lanes if lanes >= proofs_seal.BATCH_MIN else 1


@dataclass(eq=False)
class _SealRequest:
    """One sector waiting to be sealed, alone or in a batch."""

    rec: Sector
    rid: bytes
    layers: int
    piece: Path
    taken: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    result: proofs_seal.Commitments | None = None
    error: BaseException | None = None

    @property
    def key(self) -> tuple[int, int]:
        """Sectors with equal keys can share a batch."""
        return self.rec.size, self.layers


def _seal_into(piece: Path, size: int, rid: bytes, layers: int,
               out: memoryview) -> proofs_seal.Commitments:
    # The piece is checked before the seal, not left to its open: write_replica reports
    # OSErrors as errors of the replica's disk, and a missing piece is not one.
    with _open_piece(piece, size) as data:
        return proofs_seal.seal(data, rid, layers, out)


class Sealer:
    """Turns received pieces into active sectors; see the module docstring."""

    def __init__(
        self, kv: KV, chain: ChainAccess, key: nacl.signing.SigningKey, home: Path,
        config: Config, *, pieces: PieceFiles, metrics: CollectorRegistry | None = None,
        sender: TxSender | None = None,
    ) -> None:
        self.chain = chain
        self.me = bytes(key.verify_key)
        self.sender = sender if sender is not None else TxSender(chain, key)
        self.store = SectorStore(Path(home) / SECTORS_DIR, kv)
        self.pieces = pieces
        self.config = config
        self.limiter = trio.CapacityLimiter(config.proofs.seal_workers or os.cpu_count() or 1)
        self._nursery: trio.Nursery | None = None
        self._pending: list[int] = []
        self._driving: set[int] = set()
        self.changed = trio.Event()
        """Set (and replaced) whenever a sector record changes: tests and the API wait on it."""
        self.sealed = Counter("storaged_sectors_sealed", "Sectors sealed (replicas written)",
                              registry=metrics)
        self.activated = Counter("storaged_sectors_activated",
                                 "Sectors whose provecommit was committed", registry=metrics)
        self.failures = Counter("storaged_sealing_failures", "Failed sealing steps",
                                registry=metrics)
        self.batch_sealed = Counter(
            "storaged_sectors_batch_sealed",
            "Sectors sealed in a batch with others (one core, one sector per SIMD lane)",
            registry=metrics)
        self._seal_queue: list[_SealRequest] = []
        from storaged.node.scrub import Scrubber

        self.scrubber = Scrubber(self, interval=float(config.storage.scrub_interval))

    # -- market hook ---------------------------------------------------------------------------

    def enqueue(self, deal_id: int) -> None:
        """Start sealing ``deal_id`` (its piece is stored and its comm_d checked).  Idempotent.

        Raises:
            NotFound: the deal is not on chain, or its piece is not stored here.
        """
        deal = self.chain.view().deal(deal_id)
        if deal is None:
            raise NotFound(f"deal {deal_id} is not on chain")
        p = deal["proposal"]
        if p["provider"] != self.me:
            raise NotFound(f"deal {deal_id} belongs to another provider")
        if not self.pieces.has(p["piece"]):
            raise NotFound(f"piece of deal {deal_id} is not stored here")
        rec = self.store.create(deal_id, p["piece"], p["size"], self.chain.head().height)
        log.info("deal %d queued for sealing as sector %d", deal_id, rec.sector)
        self._schedule(rec.sector)

    def _schedule(self, number: int) -> None:
        if number in self._driving:
            return
        if self._nursery is None:
            self._pending.append(number)
            return
        self._driving.add(number)
        self._nursery.start_soon(self._drive, number)

    # -- service -------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Resume every unfinished job, then seal what ``enqueue`` hands over, and scrub."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for rec in self.store.all():
                if rec.state in sec.PIPELINE:
                    self._pending.append(rec.sector)
            pending, self._pending = self._pending, []
            for number in pending:
                self._schedule(number)
            await nursery.start(self.scrubber.run)
            task_status.started()

    def notify(self) -> None:
        """Wake everything waiting on :attr:`changed`."""
        event, self.changed = self.changed, trio.Event()
        event.set()

    def _update(self, rec: Sector, **changes: Any) -> Sector:
        new = self.store.update(rec, updated=self.chain.head().height, **changes)
        self.notify()
        return new

    async def _drive(self, number: int) -> None:
        """Advance one job until it leaves the pipeline.  Never raises (except Cancelled): a
        failure is recorded on the job, so one bad sector cannot stop the daemon."""
        try:
            rec = self.store.require(number)
            while rec.state in sec.PIPELINE:
                try:
                    rec = await self._step(rec)
                except (StepFailed, ChainError, NotCommitted, ProofError, ResourceError,
                        IntegrityError, NotFound) as exc:
                    rec = await self._failed(number, exc, retry=not isinstance(
                        exc, IntegrityError))
                except Exception as exc:  # a bug: record it on the job, keep serving
                    log.exception("sector %d: internal error", number)
                    rec = await self._failed(number, exc, retry=False)
        finally:
            self._driving.discard(number)

    async def _failed(self, number: int, exc: BaseException, *, retry: bool) -> Sector:
        self.failures.inc()
        rec = self.store.require(number)
        attempts = rec.attempts + 1
        log.warning("sector %d (%s) step failed (attempt %d): %s", number, rec.state,
                    attempts, exc)
        error = f"{rec.state}: {type(exc).__name__}: {exc}"
        if not retry or attempts >= MAX_ATTEMPTS:
            return self._update(rec, state=sec.FAILED, attempts=attempts, error=error)
        rec = self._update(rec, attempts=attempts, error=error)
        with contextlib.suppress(NotCommitted):  # a stalled chain: the next attempt says so
            await self._wait_blocks(RETRY_BLOCKS)
        return rec

    async def _wait_blocks(self, n: int) -> None:
        target = self.chain.head().height + n
        await self.chain.wait_height(target, timeout=SECONDS_PER_BLOCK * n)

    async def _step(self, rec: Sector) -> Sector:
        deal = self.chain.view().deal(rec.deal)
        if deal is None or deal["state"] not in ("PUBLISHED", "ACTIVE"):
            state = None if deal is None else deal["state"]
            return self._update(rec, state=sec.FAILED,
                                error=f"deal {rec.deal} is {state} on chain; not sealing")
        if rec.state == sec.RECEIVED:
            return await self._seal(rec)
        if rec.state == sec.SEALED:
            return await self._precommit(rec)
        return await self._provecommit(rec)

    # -- steps ---------------------------------------------------------------------------------

    def profile(self) -> Profile:
        """The chain's proof profile (layers, challenge counts)."""
        profile: Profile = self.chain.view().profile()
        return profile

    async def _seal(self, rec: Sector) -> Sector:
        height = self.chain.head().height
        ticket = self.chain.view().ticket(height)
        rid = proofs_seal.replica_id(self.me, rec.sector, rec.comm_d, ticket)
        comms = await self._seal_replica(rec, rid)
        self.sealed.inc()
        log.info("sector %d sealed (deal %d, ticket height %d)", rec.sector, rec.deal, height)
        return self._update(rec, state=sec.SEALED, ticket_height=height, comm_c=comms.comm_c,
                            comm_r_last=comms.comm_r_last, comm_r=comms.comm_r, error="")

    async def _seal_replica(self, rec: Sector, rid: bytes) -> proofs_seal.Commitments:
        """Seal the piece of ``rec`` under ``rid`` into its replica file (in a worker thread),
        alone or in a batch with other waiting sectors of the same size.

        Raises:
            NotFound: the unsealed piece is gone.
            IntegrityError: the piece does not hash to the deal's comm_d.
            ResourceError: the replica could not be written.
        """
        req = _SealRequest(rec, rid, self.profile().layers, self.pieces.path(rec.comm_d))
        self._seal_queue.append(req)
        try:
            async with self.limiter:
                # Another job's worker may have sealed this one in its batch meanwhile.
                if not req.taken:
                    batch = self._take_batch(req)
                    try:
                        await run_in_background(lambda: self._seal_requests(batch))
                    finally:
                        for r in batch:
                            r.done.set()
        finally:
            if not req.taken:  # cancelled while waiting for a worker
                self._seal_queue.remove(req)
        await req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _take_batch(self, req: _SealRequest) -> list[_SealRequest]:
        """Take ``req`` and, if enough are waiting, other sectors of its size off the queue."""
        lanes = batch_lanes(req.rec.size)
        batch = [req]
        if lanes > 1:
            same = [r for r in self._seal_queue if r is not req and r.key == req.key]
            if 1 + len(same) >= proofs_seal.BATCH_MIN:
                batch += same[:lanes - 1]
        for r in batch:
            r.taken = True
            self._seal_queue.remove(r)
        return batch

    def _seal_requests(self, batch: list[_SealRequest]) -> None:
        """Seal every sector of ``batch`` (blocking; in a worker thread), recording on each
        request its commitments or the error that concerns it."""
        try:
            if len(batch) == 1:
                batch[0].result = self._seal_one(batch[0])
            else:
                self._seal_batch(batch)
        except Exception as exc:  # recorded for the jobs waiting on it
            for r in batch:
                if r.result is None and r.error is None:
                    r.error = exc

    def _checked(self, req: _SealRequest, comms: proofs_seal.Commitments) -> \
            proofs_seal.Commitments:
        """Check a freshly written replica against its deal and store its tree.

        Raises:
            IntegrityError: the piece does not hash to comm_d (the replica is removed), or
                the replica changed while its tree was built.
            ResourceError: the tree could not be written.
        """
        rec = req.rec
        if comms.comm_d != rec.comm_d:
            self.store.remove_replica(rec.sector)
            raise IntegrityError(f"piece of sector {rec.sector} does not match its comm_d")
        if self.store.write_tree(rec.sector, rec.size) != comms.comm_r_last:
            raise IntegrityError(f"replica of sector {rec.sector} changed on disk while "
                                 "its tree was built")
        return comms

    def _seal_one(self, req: _SealRequest) -> proofs_seal.Commitments:
        rec = req.rec
        comms = self.store.write_replica(
            rec.sector, rec.size,
            lambda out: _seal_into(req.piece, rec.size, req.rid, req.layers, out))
        return self._checked(req, comms)

    def _seal_batch(self, batch: list[_SealRequest]) -> None:
        """Seal several sectors of one size as one batch; each replica is written atomically
        to its own file.  A sector whose piece is missing or of the wrong size, or does not
        match its comm_d, fails alone."""
        with contextlib.ExitStack() as stack:
            ready: list[_SealRequest] = []
            datas: list[memoryview] = []
            for r in batch:
                try:
                    datas.append(stack.enter_context(_open_piece(r.piece, r.rec.size)))
                    ready.append(r)
                except (NotFound, IntegrityError) as exc:
                    r.error = exc
            if not ready:
                return

            def nest(i: int, outs: list[memoryview]) -> list[proofs_seal.Commitments]:
                # write_replica(fill) of every sector, one inside the other: the batch seals
                # into all the temp files at once, then each is fsynced and renamed.
                if i == len(ready):
                    return proofs_seal.seal_batch(datas, [r.rid for r in ready],
                                                  ready[0].layers, outs)
                rec = ready[i].rec
                return self.store.write_replica(rec.sector, rec.size,
                                                lambda out: nest(i + 1, [*outs, out]))

            all_comms = nest(0, [])
        for r, comms in zip(ready, all_comms, strict=True):
            try:
                r.result = self._checked(r, comms)
            except (IntegrityError, ResourceError) as exc:
                r.error = exc
        if len(ready) >= proofs_seal.BATCH_MIN:
            self.batch_sealed.inc(sum(r.result is not None for r in ready))

    async def _precommit(self, rec: Sector) -> Sector:
        on_chain = chain_sector(self.chain, self.me, rec.sector)
        if on_chain is None:
            if rec.comm_r is None or rec.ticket_height is None:
                return self._update(rec, state=sec.RECEIVED, error="sealed without commitments")
            body = {"sector": rec.sector, "deal": rec.deal, "comm_r": rec.comm_r,
                    "ticket_height": rec.ticket_height}
            try:
                receipt = await self.sender.send_and_wait("precommit_sector", body,
                                                          timeout=TX_TIMEOUT)
            except (InvalidState, UnknownObject) as exc:
                # The deal is gone, taken or no longer PUBLISHED: no new ticket helps.
                return self._update(rec, state=sec.FAILED, attempts=rec.attempts + 1,
                                    error=f"precommit refused: {exc}")
            except ChainError as exc:
                # Most likely the ticket aged out while we waited: seal again with a new one
                # (a bounded number of times: each try costs a seal).
                attempts = rec.attempts + 1
                log.warning("precommit of sector %d refused (%s)", rec.sector, exc)
                return self._update(
                    rec, state=sec.RECEIVED if attempts < MAX_ATTEMPTS else sec.FAILED,
                    attempts=attempts, error=f"precommit refused: {exc}")
            height = int(receipt["height"])
        else:
            if on_chain.get("comm_r") not in (None, rec.comm_r):
                raise StepFailed(f"chain has another comm_r for sector {rec.sector}")
            height = int(on_chain.get("precommit_height", self.chain.head().height))
        log.info("sector %d precommitted at %d", rec.sector, height)
        return self._update(rec, state=sec.PRECOMMITTED, precommit_height=height, error="")

    async def _provecommit(self, rec: Sector) -> Sector:
        on_chain = chain_sector(self.chain, self.me, rec.sector)
        if on_chain is None:
            # The precommit expired (or never landed): start over with a new ticket.
            return self._update(rec, state=sec.RECEIVED, error="precommit not on chain")
        state = on_chain.get("state")
        if state in ACTIVATED:
            return self._activated(rec, self.chain.head().height)
        if state != "PRECOMMITTED":
            return self._update(rec, state=sec.FAILED, error=f"sector is {state} on chain")
        seed_height = int(on_chain["seed_height"])
        head = self.chain.head().height
        if head < seed_height:
            await self.chain.wait_height(seed_height,
                                         timeout=SECONDS_PER_BLOCK * (seed_height - head + 1))
        view = self.chain.view()
        seed = view.porep_seed(self.me, rec.sector)
        if seed is None:
            raise StepFailed(f"no PoRep seed for sector {rec.sector} at height "
                             f"{view.head().height} (seed height {seed_height})")
        rid = view.replica_id(self.me, rec.sector)
        profile = self.profile()
        path = self.pieces.path(rec.comm_d)

        def work() -> bytes:
            with map_file(path) as d, self.store.open_replica(rec.sector, rec.size) as r:
                return proofs_seal.prove_porep(d, r, rid, profile.layers, rec.sector, seed,
                                               profile.porep_challenges)

        async with self.limiter:
            try:
                proof = await run_in_background(work)
            except FileNotFoundError:
                raise NotFound(f"piece of sector {rec.sector} is not on disk") from None
        receipt = await self.sender.send_and_wait(
            "provecommit_sector", {"sector": rec.sector, "proof": proof}, timeout=TX_TIMEOUT)
        return self._activated(rec, int(receipt["height"]))

    def _activated(self, rec: Sector, height: int) -> Sector:
        self.activated.inc()
        log.info("sector %d active (deal %d) at %d", rec.sector, rec.deal, height)
        return self._update(rec, state=sec.ACTIVE, active_height=height, error="")

    # -- recovery (used by the scrubber) -------------------------------------------------------

    async def reseal(self, rec: Sector) -> None:
        """Rebuild the replica of an already precommitted sector from the unsealed piece; the
        replica is deterministic given the replica id the chain recorded.

        Raises:
            NotFound: the unsealed piece is gone (the sector cannot be recovered here).
            IntegrityError: the rebuilt replica does not match the committed comm_r_last.
            ResourceError: the replica could not be written.
        """
        rid = self.chain.view().replica_id(self.me, rec.sector)
        comms = await self._seal_replica(rec, rid)
        if comms.comm_r_last != rec.comm_r_last:
            raise IntegrityError(f"re-sealed sector {rec.sector} does not match its comm_r")

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every sector job, JSON-able, with its fault history."""
        out = []
        for rec in self.store.all():
            item = rec.snapshot()
            item["events"] = self.store.events(rec.sector)
            out.append(item)
        return out

    def sealing_jobs(self) -> dict[str, Any]:
        """``{"jobs": [...]}``: sectors still in the sealing pipeline or failed."""
        return {"jobs": [s for s in self.snapshot()
                         if s["state"] in (*sec.PIPELINE, sec.FAILED)]}

