"""The provider market: the deal protocol (``/storaged/deal/1.0.0``), accept policy, publish.

Requests (CBOR maps with ``"op"``; see docs/contracts.md section 3):

- ``ask`` -> the provider's terms and free capacity.  ``price`` is per GiB per epoch and
  ``collateral`` per GiB of deal size; a deal of ``size`` bytes must offer at least
  :func:`deal_price` and carry exactly :func:`deal_collateral`.
- ``propose`` -> checks (in this order, each refusal an rpc ``rejected`` error naming the
  reason): provider, shape, size, capacity, duration, start, price, collateral, client
  signature, client escrow, provider escrow.  Then the provider signs, publishes
  ``publish_deal`` and answers ``{"deal", "tx", "height"}`` once it is committed.  An
  optional ``"after": height`` makes the provider first wait (a few blocks at most) until its
  node has committed that height, so the escrow rule sees the deposit the client saw.  Capacity and
  collateral are reserved while the publish is pending.  The same proposal sent again
  (a client retry) gets the same deal back.
- ``manifest_put`` / ``manifest_get`` (:mod:`storaged.node.manifests`), ``deal_status``.

Local deal record v1 (``0x50 || u64 deal id``), canonical CBOR::

    {"v": 1, "proposal": map, "state": text, "reason": text, "height": uint published at}

Local states: ``awaiting_data`` (published, piece not complete) -> ``received`` (piece stored,
comm_d checked) -> ``sealing`` (the sealer's ``enqueue`` took it), or ``failed`` (the stored
piece with this comm_d is padded to another size than the deal's: no bytes can satisfy it).
The sealer keeps its own job table from there; the chain holds the deal's on-chain state.

Chain reads (deals, accounts) go straight to the committed chain state in the node's one
LevelDB, through the chain's own record loaders (``storaged.chain.deals`` and ``accounts``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import trio

from storaged.chain import accounts, encoding
from storaged.chain import deals as chain_deals
from storaged.chain.access import ChainAccess, NotCommitted, TxSender
from storaged.chain.errors import ChainError, MalformedEncoding
from storaged.chain.state import StateOverlay
from storaged.config import MarketConfig
from storaged.data.piece import padded_size
from storaged.errors import LocalBugError, NotFound, ProtocolViolation
from storaged.net.errors import RemoteRejected
from storaged.net.rpc import DEAL, Rpc
from storaged.node.manifests import ManifestStore
from storaged.node.pieces import PieceStore
from storaged.store import schema
from storaged.store.kv import KV

log = logging.getLogger(__name__)

GIB = 1 << 30
RECORD_VERSION = 1
AWAITING_DATA = "awaiting_data"
RECEIVED = "received"
SEALING = "sealing"
FAILED = "failed"
# A proposal may name a height this node has not committed yet (the client read its escrow
# on a node a little ahead); we wait for it, within a few blocks and seconds.
CATCH_UP_BLOCKS = 5
CATCH_UP_SECONDS = 5.0
LOCAL_FIELDS: dict[str, type] = {"v": int, "proposal": dict, "state": str, "reason": str,
                                 "height": int}
# On-chain deal states after which the provider no longer holds the data for the deal.
TERMINAL_CHAIN_STATES = frozenset({chain_deals.EXPIRED_UNACTIVATED, "EXPIRED", "TERMINATED",
                                   "SLASHED"})
ASK_KEY = schema.meta_key(b"market-ask")  # CBOR {"price", "collateral"} set at runtime

EnqueueHook = Callable[[int], Any]
"""``enqueue(deal_id)``: the sealer's hook (sync or async) for a deal whose piece is ready."""


class DealRejected(RemoteRejected):
    """A deal proposal this provider will not accept; the message says why."""

    code = "rejected"


def _ceil_gib(per_gib: int, size: int) -> int:
    return -(-per_gib * size // GIB)


def deal_price(price_per_gib_epoch: int, size: int) -> int:
    """The least price per epoch a deal of ``size`` bytes must offer under an ask."""
    return _ceil_gib(price_per_gib_epoch, size)


def deal_collateral(collateral_per_gib: int, size: int) -> int:
    """The provider collateral a deal of ``size`` bytes carries under an ask."""
    return _ceil_gib(collateral_per_gib, size)


def proposal_hash(proposal: dict[str, Any]) -> bytes:
    """Identity of a proposal (blake3 of its canonical CBOR)."""
    return encoding.digest(encoding.encode(proposal))


@dataclass(frozen=True)
class LocalDeal:
    """This provider's record of one of its published deals."""

    deal_id: int
    proposal: dict[str, Any]
    state: str
    reason: str
    height: int

    def encode(self) -> bytes:
        return encoding.encode({"v": RECORD_VERSION, "proposal": self.proposal,
                                "state": self.state, "reason": self.reason,
                                "height": self.height})

    @classmethod
    def decode(cls, deal_id: int, raw: bytes) -> LocalDeal:
        """Raises LocalBugError: the stored record is malformed (our own write)."""
        try:
            obj = encoding.require_map(encoding.decode(raw), LOCAL_FIELDS, "local deal")
        except MalformedEncoding as exc:
            raise LocalBugError(f"local deal {deal_id} record is malformed: {exc}") from exc
        return cls(deal_id, obj["proposal"], obj["state"], obj["reason"], obj["height"])


class Market:
    """Deal protocol handlers, accept policy and local deal book of one provider."""

    def __init__(
        self,
        kv: KV,
        chain: ChainAccess,
        key: nacl.signing.SigningKey,
        config: MarketConfig,
        pieces_dir: Path,
        *,
        peer_id: str,
        min_free: int = 0,
        enqueue: EnqueueHook | None = None,
        sender: TxSender | None = None,
    ) -> None:
        """``pieces_dir`` holds the piece store; ``enqueue`` is the sealer's hook (it may be
        set later, before :meth:`run`); ``min_free`` bytes of disk are never used by pieces;
        ``sender`` is the node's one TxSender (one per key, so nonces never collide)."""
        self.kv = kv
        self.chain = chain
        self.key = key
        self.me = bytes(key.verify_key)
        self.peer_id = peer_id
        self.config = config
        self.enqueue = enqueue
        self.sector_of: Callable[[int], dict[str, Any] | None] | None = None
        """Set by the daemon: the sealer's view of a deal's sector (number, state, error)."""
        self.sender = sender if sender is not None else TxSender(chain, key)
        self.pieces = PieceStore(pieces_dir, kv, self, min_free=min_free)
        self.manifests = ManifestStore(kv, self.is_my_deal)
        self._reserved: dict[bytes, tuple[int, int]] = {}  # proposal hash -> (size, collateral)
        self._nursery: trio.Nursery | None = None
        stored = kv.get(ASK_KEY)
        if stored is not None:
            ask = encoding.decode(stored)
            self.config = replace(config, price_per_gib_epoch=ask["price"],
                                  collateral=ask["collateral"])

    # -- service -------------------------------------------------------------------------------

    def serve(self, rpc: Rpc) -> None:
        """Answer the deal protocol on ``rpc``."""
        rpc.serve(DEAL, self.handle)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Hand pieces that arrived before a crash to the sealer, then host background tasks
        (late publishes) until cancelled."""
        self.pieces.sweep()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for deal in self.local_deals():
                if deal.state == AWAITING_DATA and self.pieces.has(deal.proposal["piece"]):
                    await self.on_received(deal.proposal["piece"])
                elif deal.state == RECEIVED:  # handed over, but the sealer never confirmed
                    await self._enqueue(deal)
            task_status.started()
            await trio.sleep_forever()

    async def handle(self, peer: str, body: Any) -> Any:
        """Dispatch one deal-protocol request.

        Raises:
            ProtocolViolation: malformed request (answered ``bad_request``).
            DealRejected / NotFound / IntegrityError: see each op.
        """
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            raise ProtocolViolation("deal request must be a map with a text 'op'")
        op = body["op"]
        if op == "ask":
            return self.ask()
        if op == "propose":
            return await self.propose(body)
        if op == "manifest_put":
            cid, data = body.get("cid"), body.get("manifest")
            if not isinstance(cid, str) or not isinstance(data, bytes):
                raise ProtocolViolation("manifest_put needs text 'cid' and bytes 'manifest'")
            self.manifests.put(cid, data)
            return {}
        if op == "manifest_get":
            cid = body.get("cid")
            if not isinstance(cid, str):
                raise ProtocolViolation("manifest_get needs text 'cid'")
            return {"manifest": self.manifests.get(cid)}
        if op == "deal_status":
            deal_id = body.get("deal")
            if type(deal_id) is not int or not 0 <= deal_id < 1 << 64:
                raise ProtocolViolation("deal_status needs an unsigned integer 'deal'")
            return self.deal_status(deal_id)
        raise ProtocolViolation(f"unknown deal op {op[:40]!r}")

    # -- ask and capacity ------------------------------------------------------------------------

    def committed_bytes(self) -> int:
        """Capacity taken by deals that are still live on chain (awaiting data or stored)."""
        return sum(int(d.proposal["size"]) for d in self.local_deals()
                   if d.state != FAILED and self._live(d.deal_id))

    def _live(self, deal_id: int) -> bool:
        deal = self.chain_deal(deal_id)
        return deal is None or deal["state"] not in TERMINAL_CHAIN_STATES

    def free_bytes(self) -> int:
        """Capacity still offered: configured capacity minus deals and pending reservations."""
        reserved = sum(size for size, _ in self._reserved.values())
        return max(0, self.config.capacity_bytes - self.committed_bytes() - reserved)

    def ask(self) -> dict[str, Any]:
        """The provider's current terms."""
        c = self.config
        free = self.free_bytes()
        return {"provider": self.me, "peer_id": self.peer_id, "price": c.price_per_gib_epoch,
                "min_duration": c.min_duration, "max_duration": c.max_duration,
                "max_size": min(c.max_deal_bytes, free), "free": free,
                "collateral": c.collateral, "min_start_delay": c.min_start_delay}

    def set_ask(self, price: int | None = None, collateral: int | None = None) -> dict[str, Any]:
        """Change the price and/or collateral per GiB for new proposals (kept across restarts
        in the KV; ``config.toml`` is not rewritten).

        Raises:
            LocalBugError: a negative value (callers validate user input first).
        """
        new_price = self.config.price_per_gib_epoch if price is None else price
        new_coll = self.config.collateral if collateral is None else collateral
        if new_price < 0 or new_coll < 0:
            raise LocalBugError("ask values must be non-negative")
        self.kv.put(ASK_KEY, encoding.encode({"price": new_price, "collateral": new_coll}))
        self.config = replace(self.config, price_per_gib_epoch=new_price, collateral=new_coll)
        return self.ask()

    # -- propose ---------------------------------------------------------------------------------

    def _check(self, p: dict[str, Any], client_sig: bytes) -> None:
        """Every accept-policy rule; raises DealRejected naming the first one broken."""
        c = self.config
        if p["provider"] != self.me:
            raise DealRejected("provider: the proposal names another provider")
        for name in ("piece", "client"):
            if len(p[name]) != 32:
                raise ProtocolViolation(f"proposal.{name} must be 32 bytes")
        if p["client"] == self.me:
            raise DealRejected("client: a provider cannot deal with itself")
        size = p["size"]
        if size <= 0 or padded_size(size) != size:
            raise DealRejected(f"size: {size} is not a padded piece size (power of two >= 4096)")
        if size > c.max_deal_bytes:
            raise DealRejected(f"size: {size} bytes exceeds the maximum deal of "
                               f"{c.max_deal_bytes} bytes")
        free = self.free_bytes()
        if size > free:
            raise DealRejected(f"capacity: {size} bytes asked, {free} free")
        duration = p["end"] - p["start"]
        if not c.min_duration <= duration <= c.max_duration:
            raise DealRejected(f"duration: {duration} epochs is outside "
                               f"[{c.min_duration}, {c.max_duration}]")
        earliest = self.chain.head().height + c.min_start_delay
        if p["start"] < earliest:
            raise DealRejected(f"start too soon: epoch {p['start']} < {earliest} (head + "
                               f"{c.min_start_delay} blocks to receive and seal the piece)")
        need_price = deal_price(c.price_per_gib_epoch, size)
        if p["price"] < need_price:
            raise DealRejected(f"price: {p['price']} per epoch < ask {need_price} for "
                               f"{size} bytes")
        need_coll = deal_collateral(c.collateral, size)
        if p["collateral"] != need_coll:
            raise DealRejected(f"collateral: proposal carries {p['collateral']}, this "
                               f"provider puts up {need_coll} for {size} bytes")
        payload = chain_deals.proposal_payload(self.chain.chain_id, p)
        try:
            nacl.signing.VerifyKey(p["client"]).verify(payload, client_sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
                nacl.exceptions.TypeError) as exc:
            raise DealRejected("client signature: does not verify for this proposal "
                               f"on chain {self.chain.chain_id!r}") from exc
        state = StateOverlay(self.kv)
        client = accounts.load_account(state, p["client"])
        payment = chain_deals.payment(p)
        if client.escrow < payment:
            raise DealRejected(f"client escrow: {client.escrow} free < payment {payment}")
        mine = accounts.load_account(state, self.me)
        held = sum(coll for _, coll in self._reserved.values())
        if mine.escrow - held < need_coll:
            raise DealRejected(f"provider escrow: {mine.escrow - held} free < collateral "
                               f"{need_coll}")

    async def propose(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check, sign and publish a client's proposal; return ``{"deal", "tx"}``.

        Raises:
            ProtocolViolation: malformed proposal or signature field.
            DealRejected: a policy rule or the chain refused it (the message says which).
            NotCommitted: the publish was not committed in ``publish_timeout`` (it may still
                be; it is then recorded when it is).
        """
        sig = body.get("client_sig")
        if not isinstance(sig, bytes) or len(sig) != 64:
            raise ProtocolViolation("propose needs a 64-byte 'client_sig'")
        try:
            p = encoding.require_map(body.get("proposal"), chain_deals.PROPOSAL_FIELDS,
                                     "proposal")
        except MalformedEncoding as exc:
            raise ProtocolViolation(str(exc)) from exc
        for name in ("size", "price", "start", "end", "collateral"):
            if not 0 <= p[name] < 1 << 64:
                raise ProtocolViolation(f"proposal.{name} out of range")
        after = body.get("after", 0)
        if type(after) is not int or not 0 <= after < 1 << 64:
            raise ProtocolViolation("propose 'after' must be a block height")
        started = trio.current_time()
        await self._catch_up(after)
        h = proposal_hash(p)
        known = self.kv.get(schema.market_proposal_key(h))
        if known is not None:
            deal_id = int.from_bytes(known, "big")
            return {"deal": deal_id, "tx": b"", "existing": True}
        if h in self._reserved:
            raise DealRejected("duplicate: this proposal is being published already")
        self._check(p, sig)
        self._reserved[h] = (p["size"], deal_collateral(self.config.collateral, p["size"]))
        try:
            my_sig = chain_deals.sign_proposal(self.key, self.chain.chain_id, p)
            tx_body = {"proposal": p, "client_sig": sig, "provider_sig": my_sig}
            try:
                tx_hash = await self.sender.send("publish_deal", tx_body)
            except ChainError as exc:
                raise DealRejected(f"chain refused the deal: {exc}") from exc
            try:
                left = self.config.publish_timeout - (trio.current_time() - started)
                receipt = await self.chain.wait_receipt(tx_hash, max(left, 1.0))
            except NotCommitted:
                if self._nursery is not None:
                    self._nursery.start_soon(self._late_publish, tx_hash, p)
                raise
            published = int(receipt.get("height", 0))
            deal_id = self._record(p, published)
        finally:
            del self._reserved[h]
        if self.pieces.has(p["piece"]):  # the same bytes are already here for another deal
            await self.on_received(p["piece"])
        log.info("published deal %d: %d bytes for %s", deal_id, p["size"],
                 p["client"].hex()[:16])
        return {"deal": deal_id, "tx": tx_hash, "height": published}

    async def _catch_up(self, after: int) -> None:
        """Wait (briefly) until this node has committed block ``after``.

        The client checks its escrow on a node that may be a block or two ahead of ours; the
        proposal carries that height so the escrow rule reads the same state it did.

        Raises:
            DealRejected: our node is further behind than a short wait covers.
        """
        head = self.chain.head().height
        if after <= head:
            return
        if after - head > CATCH_UP_BLOCKS:
            raise DealRejected(f"chain: this provider is at height {head}, the proposal "
                               f"needs {after}; it is still syncing, try later")
        try:
            await self.chain.wait_height(after, CATCH_UP_SECONDS)
        except NotCommitted as exc:
            raise DealRejected(f"chain: this provider has not reached height {after} "
                               f"(at {self.chain.head().height}); try later") from exc

    async def _late_publish(self, tx_hash: bytes, p: dict[str, Any]) -> None:
        # The client was told "not committed"; if the tx lands after all, the deal is ours
        # and must be in the local book (it reserves capacity and waits for the piece).
        try:
            receipt = await self.chain.wait_receipt(tx_hash, 10 * self.config.publish_timeout)
        except NotCommitted:
            log.warning("publish_deal %s never committed", tx_hash.hex()[:16])
            return
        self._record(p, int(receipt.get("height", 0)))
        if self.pieces.has(p["piece"]):
            await self.on_received(p["piece"])

    def _find_deal(self, p: dict[str, Any]) -> int:
        """The on-chain id of the published deal with proposal ``p`` (newest deals first)."""
        state = StateOverlay(self.kv)
        for key, _raw in state.scan(schema.STATE_DEAL, reverse=True):
            deal_id = int.from_bytes(key[1:9], "big")
            deal = chain_deals.load_deal(state, deal_id)
            if deal is not None and deal["proposal"] == p:
                return deal_id
        raise LocalBugError("publish_deal committed but no deal carries its proposal")

    def _record(self, p: dict[str, Any], height: int) -> int:
        h = proposal_hash(p)
        known = self.kv.get(schema.market_proposal_key(h))
        if known is not None:
            return int.from_bytes(known, "big")
        deal_id = self._find_deal(p)
        local = LocalDeal(deal_id, p, AWAITING_DATA, "", height)
        with self.kv.batch() as batch:
            batch.put(schema.market_deal_key(deal_id), local.encode())
            batch.put(schema.market_piece_deal_key(p["piece"], deal_id), b"")
            batch.put(schema.market_proposal_key(h), schema.u64(deal_id))
        return deal_id

    # -- local deal book -------------------------------------------------------------------------

    def local_deal(self, deal_id: int) -> LocalDeal | None:
        """This provider's record of ``deal_id``, if it is one of ours."""
        raw = self.kv.get(schema.market_deal_key(deal_id))
        return None if raw is None else LocalDeal.decode(deal_id, raw)

    def local_deals(self) -> list[LocalDeal]:
        """Every deal this provider published, by id."""
        return [LocalDeal.decode(int.from_bytes(k[1:9], "big"), raw)
                for k, raw in self.kv.scan(schema.MARKET_DEAL)]

    def is_my_deal(self, deal_id: int) -> bool:
        """Whether ``deal_id`` is a deal this provider published."""
        return 0 <= deal_id < 1 << 64 and self.kv.get(schema.market_deal_key(deal_id)) is not None

    def _deals_of_piece(self, comm_d: bytes) -> list[LocalDeal]:
        out = []
        prefix = schema.market_piece_deals_prefix(comm_d)
        for key, _ in self.kv.scan(prefix):
            deal = self.local_deal(int.from_bytes(key[len(prefix):], "big"))
            if deal is not None:
                out.append(deal)
        return out

    def chain_deal(self, deal_id: int) -> dict[str, Any] | None:
        """The committed on-chain record of ``deal_id``."""
        return chain_deals.load_deal(StateOverlay(self.kv), deal_id)

    def deal_status(self, deal_id: int) -> dict[str, Any]:
        """The provider's local view of one of its deals.

        Raises:
            NotFound: not a deal of this provider.
        """
        deal = self.local_deal(deal_id)
        if deal is None:
            raise NotFound(f"deal {deal_id} is not a deal of this provider")
        on_chain = self.chain_deal(deal_id)
        piece = deal.proposal["piece"]
        sector = self.sector_of(deal_id) if self.sector_of is not None else None
        state, reason = deal.state, deal.reason
        if sector is not None and deal.state == SEALING:
            state = f"sector_{sector['state'].lower()}"  # the sealer's step, e.g. sector_active
            reason = sector.get("error") or reason
        return {"deal": deal_id, "state": state, "reason": reason,
                "received": self.pieces.partial_length(piece), "size": deal.proposal["size"],
                "sector": None if sector is None else sector["sector"],
                "chain_state": on_chain["state"] if on_chain else None}

    # -- PieceDeals (for the piece store) -------------------------------------------------------

    def expected_size(self, comm_d: bytes) -> int:
        """Deal size of a piece a published deal of ours is waiting for.

        Raises:
            NotFound: no such deal (the push is refused ``not_found``).
        """
        for deal in self._deals_of_piece(comm_d):
            if not self._live(deal.deal_id):
                continue  # expired on chain: nobody pays for these bytes any more
            if deal.state == AWAITING_DATA or self.pieces.has(comm_d):
                return int(deal.proposal["size"])
        raise NotFound(f"no published deal of this provider for piece {comm_d.hex()[:16]}")

    async def on_received(self, comm_d: bytes) -> None:
        """The piece is stored and checked: mark its deals received, call the sealer hook."""
        rec = self.pieces.record(comm_d)
        if rec is None:
            raise LocalBugError(f"on_received for piece {comm_d.hex()[:16]} not stored")
        waiting = [d for d in self._deals_of_piece(comm_d) if d.state == AWAITING_DATA]
        ready = [d for d in waiting if d.proposal["size"] == rec.padded]
        with self.kv.batch() as batch:
            for d in waiting:
                if d in ready:
                    done = replace(d, state=RECEIVED, reason="piece stored, comm_d verified")
                else:  # comm_d is of a padding to another size: no bytes can satisfy it
                    done = replace(d, state=FAILED, reason=(
                        f"piece commits to {rec.padded} bytes, deal is {d.proposal['size']}"))
                batch.put(schema.market_deal_key(d.deal_id), done.encode())
        for d in ready:
            await self._enqueue(replace(d, state=RECEIVED))

    async def _enqueue(self, deal: LocalDeal) -> None:
        """Hand a received deal to the sealer; ``sealing`` once it took it.  A failing hook
        never fails the client's push: the deal stays ``received`` and is handed over again
        at the next start."""
        if self.enqueue is None:
            log.warning("deal %d ready but no sealer is attached", deal.deal_id)
            return
        try:
            result = self.enqueue(deal.deal_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("sealer refused deal %d; retried at next start", deal.deal_id)
            return
        handed = replace(deal, state=SEALING, reason="handed to the sealer")
        self.kv.put(schema.market_deal_key(deal.deal_id), handed.encode())
