"""``storage put``: encode a file into n pieces, make n deals, push the pieces, store the
manifest with every provider, return the capability (docs/contracts.md section 3).

Order of work and why:

1. Encode with the streaming pipeline into n piece files on disk (memory: the pipeline's
   window of segments, not the file).
2. comm_d and blake3 of each piece, in a worker thread, one piece at a time.
3. Ask every registered provider; keep those whose ask fits (:mod:`storaged.client.select`),
   cheapest first.  More candidates than n are kept, so a refusal or a dead provider is
   replaced by the next one.
4. Make sure the escrow covers the deals being proposed (deposit the shortfall).
5. For each slot in parallel: propose (the provider publishes the deal on chain), then push
   the piece.  Any failure moves the slot to the next candidate; when none is left the put
   fails naming every provider that failed and why.  Success needs n published deals and n
   acknowledged pushes.
6. The manifest (with ``deals``, ``providers``, ``pieces``) goes to every chosen provider.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from storaged.chain import deals as chain_deals
from storaged.chain.errors import ChainError
from storaged.client.light import LightNode
from storaged.client.piecefiles import PieceFiles
from storaged.client.progress import Quiet, Reporter
from storaged.client.select import Ask, eligible, gather_asks, why_not
from storaged.data.capability import Capability, format_capability
from storaged.data.manifest import Manifest
from storaged.data.pipeline import encode_file_async
from storaged.errors import IntegrityError, PeerUnavailable, RemoteError, UserError
from storaged.net.errors import first_error
from storaged.net.rpc import DEAL
from storaged.node.market import deal_collateral, deal_price

log = logging.getLogger(__name__)

PUBLISH_SEEN_TIMEOUT = 20.0  # a publish the provider saw committed reaches our node by then
PROPOSE_TIMEOUT = 30.0  # the provider waits up to its publish_timeout (<= 25 s) for the chain
MANIFEST_TIMEOUT = 15.0
ACTIVE = "ACTIVE"
FAILED_STATES = frozenset({chain_deals.EXPIRED_UNACTIVATED, "TERMINATED_FAULT",
                           "TERMINATED_EARLY", "SLASHED"})


class PutFailed(RemoteError):
    """Fewer than n providers accepted a deal and took their piece; names each failure."""


class DealsNotActive(PeerUnavailable):
    """``--wait``: the deals did not all become ACTIVE before the deadline (or one failed)."""


@dataclass(frozen=True)
class PutOptions:
    """Terms of one put (defaults from ``[client]``)."""

    k: int = 4
    n: int = 6
    segment_size: int = 4 << 20
    duration: int = 1000
    price_max: int = 1 << 40
    start_margin: int = 10
    candidates_extra: int = 4
    public: bool = False


@dataclass(frozen=True)
class Placement:
    """One slot's provider and deal."""

    slot: int
    peer_id: str
    provider: bytes
    deal: int
    price: int


@dataclass(frozen=True)
class PutResult:
    """What a put made."""

    capability: str
    cid: str
    size: int
    piece_size: int
    padded_size: int
    placements: tuple[Placement, ...]
    manifest_copies: int

    def to_json(self) -> dict[str, Any]:
        return {"capability": self.capability, "cid": self.cid, "size": self.size,
                "piece_size": self.piece_size, "padded_size": self.padded_size,
                "manifest_copies": self.manifest_copies,
                "deals": [{"slot": p.slot, "deal": p.deal, "provider": p.peer_id,
                           "price": p.price} for p in self.placements]}


class _Escrow:
    """Keeps the client's free escrow at or above the payments of proposals in flight.

    Published deals already moved their payment from escrow to locked, so the need is only
    what is being proposed right now; deposits are serialised by a lock."""

    def __init__(self, light: LightNode) -> None:
        self.light = light
        self.in_flight = 0
        self.height = 0  # committed height of our last deposit (providers wait for it)
        self.lock = trio.Lock()

    async def cover(self, amount: int) -> None:
        """Deposit so free escrow >= in-flight payments + ``amount``; then count it in flight.

        Raises:
            ChainError (e.g. InsufficientFunds): the deposit was refused.
        """
        chain = self.light.need_chain()
        async with self.lock:
            account = await chain.account(self.light.public_key)
            short = self.in_flight + amount - account.escrow
            if short > 0:
                if short > account.balance:
                    raise UserError(f"not enough funds: escrow {account.escrow} + balance "
                                    f"{account.balance} < {self.in_flight + amount} needed for "
                                    "the deals (fees aside)")
                receipt = await chain.send_and_wait(self.light.key, "escrow_deposit",
                                                    {"amount": short}, timeout=60)
                self.height = max(self.height, int(receipt.get("height", 0)))
            self.in_flight += amount

    def release(self, amount: int) -> None:
        self.in_flight -= amount


def _check_source(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path} is not a readable file")


async def choose_candidates(light: LightNode, *, size: int, opts: PutOptions) -> list[Ask]:
    """Eligible providers for a piece of ``size`` padded bytes, best first.

    Raises:
        PutFailed: fewer than n eligible providers (names why each other one is out).
    """
    peers = await light.learn()
    asks, failed = await gather_asks(light.rpc, sorted(peers))
    fit = eligible(asks, size=size, duration=opts.duration, price_max=opts.price_max)
    if len(fit) < opts.n:
        reasons = [f"{p}: no answer ({why})" for p, why in sorted(failed.items())]
        reasons += [f"{a.peer_id}: "
                    + why_not(a, size=size, duration=opts.duration, price_max=opts.price_max)
                    for a in asks if a not in fit]
        raise PutFailed(f"only {len(fit)} of {len(peers)} registered providers accept a "
                        f"{size}-byte piece for {opts.duration} epochs (need n={opts.n})"
                        + (": " + "; ".join(reasons) if reasons else ""))
    return fit[: opts.n + opts.candidates_extra]


def _proposal(light: LightNode, ask: Ask, comm_d: bytes, size: int, height: int,
              opts: PutOptions) -> dict[str, Any]:
    start = height + ask.min_start_delay + opts.start_margin
    return {"piece": comm_d, "size": size, "client": light.public_key,
            "provider": ask.provider, "price": deal_price(ask.price, size), "start": start,
            "end": start + opts.duration, "collateral": deal_collateral(ask.collateral, size)}


async def _propose(light: LightNode, ask: Ask, proposal: dict[str, Any], after: int) -> int:
    """Send one proposal; return the deal id once it is on chain.

    ``after`` is the height the provider's node must reach first (our last deposit).

    Raises:
        RemoteError: the provider refused, failed, or answered a deal that is not ours.
        NotCommitted: the chain node we read from did not see the publish in time.
    """
    chain = light.need_chain()
    sig = chain_deals.sign_proposal(light.key, chain.chain_id, proposal)
    with trio.fail_after(PROPOSE_TIMEOUT + 5):
        answer = await light.rpc.request(ask.peer_id, DEAL, {
            "op": "propose", "proposal": proposal, "client_sig": sig, "after": after},
            timeout=PROPOSE_TIMEOUT)
    deal_id = answer.get("deal") if isinstance(answer, dict) else None
    if type(deal_id) is not int:
        raise RemoteError(f"{ask.peer_id}: propose answer lacks a deal id")
    tx_hash = answer.get("tx")
    if isinstance(tx_hash, bytes) and len(tx_hash) == 32:
        # The provider's node committed the publish; the node we read from may be a block
        # behind.  Wait there for the (verified) receipt before reading the deal.
        await chain.wait_tx(tx_hash, timeout=PUBLISH_SEEN_TIMEOUT)
    record = await chain.deal(deal_id)  # trust the chain, not the provider's word
    if record is None or record["proposal"] != proposal:
        raise RemoteError(f"{ask.peer_id}: deal {deal_id} on chain is not our proposal")
    return deal_id


async def put_file(light: LightNode, path: Path, opts: PutOptions, *,
                   reporter: Reporter | None = None, workdir: Path | None = None) -> PutResult:
    """Put ``path`` on n providers; return the capability and deals.

    Raises:
        UserError: the file is not readable, bad k/n, or funds do not cover the deals.
        PutFailed: not enough providers accepted and took their piece (each named with why).
        ChainError / RemoteError: the chain refused or could not be reached.
        ResourceError: the temp piece files could not be written.
    """
    report = reporter or Quiet()
    _check_source(path)
    light.need_chain()
    with tempfile.TemporaryDirectory(prefix="storage-put-", dir=workdir) as tmp:
        pieces = PieceFiles(Path(tmp), opts.n)
        report.stage(f"encoding {path.name} ({opts.k} of {opts.n})")
        try:
            with path.open("rb") as src:
                manifest, key = await encode_file_async(
                    src, pieces, k=opts.k, n=opts.n, segment_size=opts.segment_size,
                    public=opts.public)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc}") from exc
        finally:
            pieces.close()
        report.stage("computing piece commitments")
        commits = await trio.to_thread.run_sync(pieces.commitments)
        piece_size = pieces.paths[0].stat().st_size
        padded = commits[0][1]
        report.stage("asking providers")
        candidates = deque(await choose_candidates(light, size=padded, opts=opts))
        placements = await _place_all(light, pieces, commits, candidates, opts, report,
                                      piece_size)
    final = replace(manifest, deals=tuple(p.deal for p in placements),
                    providers=tuple(p.peer_id for p in placements),
                    pieces=tuple(c[0] for c in commits))
    copies = await _store_manifest(light, final, placements)
    cap = format_capability(Capability(final.cid(), key))
    return PutResult(cap, final.cid(), manifest.size, piece_size, padded, placements, copies)


async def _place_all(light: LightNode, pieces: PieceFiles,
                     commits: list[tuple[bytes, int, bytes]], candidates: deque[Ask],
                     opts: PutOptions, report: Reporter, piece_size: int
                     ) -> tuple[Placement, ...]:
    escrow = _Escrow(light)
    failures: list[str] = []
    placed: dict[int, Placement] = {}
    pieces.on_read = report.advance
    report.start("pushing pieces", piece_size * opts.n)

    async def place(slot: int) -> None:
        comm_d, size, digest = commits[slot]
        chain = light.need_chain()
        while candidates:
            ask = candidates.popleft()
            proposal = _proposal(light, ask, comm_d, size, await chain.height(), opts)
            payment = chain_deals.payment(proposal)
            # Outside the try: a refused or uncommitted deposit is ours, not the provider's.
            await escrow.cover(payment)
            try:
                deal_id = await _propose(light, ask, proposal, escrow.height)
                escrow.release(payment)  # published: the chain moved it to locked
                payment = 0
                await light.transfers.push(ask.peer_id, comm_d, pieces, digest=digest)
            except (RemoteError, IntegrityError, trio.TooSlowError) as exc:
                if isinstance(exc, ChainError) and not isinstance(exc, PeerUnavailable):
                    raise  # a chain rule refused something of ours: no provider will help
                why = str(exc) or type(exc).__name__
                log.info("slot %d: provider %s failed: %s", slot, ask.peer_id, why)
                failures.append(f"{ask.peer_id}: {why}")
                report.stage(f"provider {ask.peer_id[:16]}… failed ({why[:80]}); trying another")
                continue
            finally:
                escrow.release(payment)
            placed[slot] = Placement(slot, ask.peer_id, ask.provider, deal_id,
                                     proposal["price"])
            return
        raise PutFailed(f"piece {slot} could not be placed: every candidate provider failed "
                        f"({len(placed)} of n={opts.n} placed): " + "; ".join(failures))

    with first_error():
        async with trio.open_nursery() as nursery:
            for slot in range(opts.n):
                nursery.start_soon(place, slot)
    return tuple(placed[s] for s in range(opts.n))


async def _store_manifest(light: LightNode, manifest: Manifest,
                          placements: tuple[Placement, ...]) -> int:
    """``manifest_put`` to every chosen provider; return how many took it.

    Raises:
        PutFailed: none took it (the file could not be found again).
    """
    data, cid = manifest.encode(), manifest.cid()
    ok: list[str] = []
    failed: list[str] = []

    async def one(peer: str) -> None:
        try:
            with trio.fail_after(MANIFEST_TIMEOUT + 5):
                await light.rpc.request(peer, DEAL, {"op": "manifest_put", "cid": cid,
                                                     "manifest": data}, timeout=MANIFEST_TIMEOUT)
            ok.append(peer)
        except (RemoteError, trio.TooSlowError) as exc:
            failed.append(f"{peer}: {exc}")

    async with trio.open_nursery() as nursery:
        for p in placements:
            nursery.start_soon(one, p.peer_id)
    if not ok:
        raise PutFailed("no provider stored the manifest: " + "; ".join(failed))
    if failed:
        log.warning("manifest not stored by %s", "; ".join(failed))
    return len(ok)


async def wait_active(light: LightNode, deals: list[int], *, timeout: float,
                      poll: float = 2.0) -> None:
    """Return once every deal is ACTIVE on chain.

    The light client has no push notifications, so the chain is read every ``poll`` seconds
    until ``timeout``.

    Raises:
        DealsNotActive: a deal failed (names it and the chain's reason) or time ran out.
    """
    chain = light.need_chain()
    states: dict[int, str] = {}
    deadline = trio.current_time() + timeout
    while True:
        with trio.move_on_after(max(0.0, deadline - trio.current_time())):
            for deal_id in deals:
                record = await chain.deal(deal_id)
                state = record["state"] if record else "UNKNOWN"
                states[deal_id] = state
                if state in FAILED_STATES:
                    reason = record["history"][-1][1] if record and record["history"] else ""
                    raise DealsNotActive(f"deal {deal_id} is {state}: {reason}")
            if len(states) == len(deals) and all(s == ACTIVE for s in states.values()):
                return
        if trio.current_time() >= deadline:
            break
        # Polling the chain: the light client has no subscription to deal state changes.
        await trio.sleep(min(poll, max(0.0, deadline - trio.current_time())))
    pending = {d: s for d, s in states.items() if s != ACTIVE}
    raise DealsNotActive(f"deals not ACTIVE after {timeout:g} s: "
                         + ", ".join(f"{d} {s}" for d, s in sorted(pending.items())))
