"""A full chain node over libp2p: BFT consensus, gossip, block sync and light-client queries.

:class:`ChainNode` implements :class:`storaged.chain.access.ChainAccess` around the real
:class:`ChainApp` and :class:`Mempool`.  Its tasks (one nursery, see :meth:`ChainNode.run`):

- **serve** ``/storaged/sync/1.0.0`` (:mod:`sync_service`) and ``/storaged/query/1.0.0``
  (:mod:`query`);
- **gossip in**: TXS messages go to the mempool; VOTES and BLOCKS messages (votes, and
  proposals, which carry the block and so need BLOCKS' size limit) go to the consensus
  driver's channel, as do messages arriving on the direct consensus lanes;
- **consensus**: a :class:`Driver` over a :class:`Machine`; validators sign through the WAL
  (a LevelDB in ``wal_dir``, every batch fsynced before the message is returned for sending,
  so a restarted validator never signs twice); a node that is not a validator (or not in the
  set of a height) runs the same machine without a signer and follows;
- **catch-up**: before ``task_status.started()`` and whenever the driver reports that a peer
  is more than one height ahead, the driver is stopped, commits are fetched from peers,
  verified against the validator set of each height and applied, then a fresh driver enters
  the next height (its WAL restores anything already signed there);
- **re-gossip**: transactions submitted here are re-published (with backoff) until a block
  includes them.

**Consensus messages: direct lanes first, gossip as relay and fallback.**  Every proposal and
vote this node sends goes out twice: at once on a direct lane to each connected peer
(:mod:`storaged.net.direct`, protocol ``/storaged/consensus/1.0.0``, one stream per peer), and
through a bounded outbox on gossipsub (VOTES, or BLOCKS for proposals).  Gossip alone put every
vote behind the transaction flood: py-libp2p's pubsub has one outbound queue and one stream per
peer for all topics, and the receiver handles that stream's messages in order, so on the
4-validator benchmark the first busy height needed 6 s for a prevote quorum and 5 s more for
the precommits.  A lane has its own Yamux stream (own flow-control window, own reader task),
so a vote waits only for frames already on the wire.  Lanes never block the driver (a full
per-peer queue drops its oldest message, counted) and do not relay; gossip still reaches
peers we are not connected to (relayed through the mesh) and covers a lane that is down.
The receiver sees most messages twice; the machine drops the copy cheaply (before checking
signatures).  Votes are signed by their validator and the lane's peer is authenticated by
Noise, so a lane needs no envelope or signature of its own.

Gossipsub may drop a message (peer not yet in the mesh, a queue overflow) and a lane drops
on a broken stream, so the driver re-broadcasts everything this validator signed at the
current and previous height every ``rebroadcast_s`` (on both paths).  py-libp2p's pubsub,
however, remembers every message id for 120 s and drops a re-publish of identical bytes
*before sending it* (``Pubsub.push_msg`` checks its seen-cache for our own messages too), so
a plain re-broadcast would never leave the node.  Every gossip payload is therefore wrapped in
an envelope with a per-node counter, giving each re-send a fresh message id; receivers unwrap
it and the machine (or the mempool) ignores duplicates cheaply.  A message that is still lost
is re-sent a period later; a node that missed a whole height syncs it.  The WAL rule is
unchanged: the :class:`Signer` fsyncs a message before the driver hands it to either path.

Gossip envelope (canonical CBOR, version 1): ``[1, kind, [payload, ...], counter]`` where kind
is ``"txs"`` (payloads: signed txs, batched up to ``TX_BATCH_BYTES``: libp2p's per-message cost
(signing, yamux frames, forwarding) dwarfs a tx's size, so one message per tx would cap
throughput far below the chain's) or ``"consensus"`` (exactly one encoded proposal or vote).

Transactions go out in batches: the sender task lets a batch fill for ``TX_LINGER_S`` (or
up to ``TX_BATCH_BYTES``) before publishing: each gossip message costs libp2p far more CPU
than a tx's admission (a signature, one RPC per peer, Noise and Yamux frames, the receiver's
checks), and a client's burst went out a few txs per message.
Our own pending transactions are re-gossiped with backoff (``regossip_s``, doubling up to
``MAX_REGOSSIP_S``), but only once a block *with room* (``ROOM_BYTES`` of our proposer cap
left) has been committed without them since the last send: such a block suggests its proposer
lacked the tx, while behind full blocks a tx is only waiting its turn.  A re-send has a fresh
id, so it floods every peer again; re-sending a backlog on a timer alone (1,750 of 2,000 txs
in the benchmark) slowed the very blocks it waited for.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2
import nacl.signing
import trio

from storaged.chain import encoding
from storaged.chain.access import NotCommitted
from storaged.chain.app import ChainApp, Head
from storaged.chain.block import decode_block
from storaged.chain.consensus.certificate import Certificate, Evidence
from storaged.chain.consensus.chain_adapter import ChainConsensusApp
from storaged.chain.consensus.driver import Driver
from storaged.chain.consensus.machine import Machine, Timeouts
from storaged.chain.consensus.sync import Commit
from storaged.chain.consensus.wal import Signer
from storaged.chain.errors import ChainError
from storaged.chain.mempool import Mempool, MempoolFull
from storaged.chain.query import QueryService
from storaged.chain.sync_service import SyncService
from storaged.chain.tx import sign_tx
from storaged.errors import StoragedError
from storaged.net.direct import CONSENSUS, DirectLanes
from storaged.net.gossip import BLOCKS, TXS, VOTES, Gossip, Subscription
from storaged.net.host import Node
from storaged.net.rpc import QUERY, SYNC, Rpc
from storaged.store import schema
from storaged.store.kv import KV, LevelKV

if TYPE_CHECKING:
    from storaged.chain.view import ChainView

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
INCOMING_DEPTH = 8192
TX_BATCH_BYTES = 56 << 10  # under TXS' 64 KiB message limit, with room for the envelope
# Transactions per proposed block, in bytes (~600 transfers).  A proposal then stays well
# under a Yamux stream's 256 KiB initial window, so it goes out in one write without waiting
# for the receiver's window update, and a backlog drains in pipelined ~1 s blocks instead of
# one block so large that applying it stalled every node's event loop for seconds.
MAX_BLOCK_BYTES = 128 << 10
MAX_REGOSSIP_S = 30.0
# A block "had room" for a pending tx when its txs left at least this much of our proposer cap
# free: a pending tx that such a block did not include was probably not in that proposer's
# mempool (re-gossip it); behind a full block it is just waiting its turn (do not).
ROOM_BYTES = 2 << 10
# How long the tx sender lets a batch fill before publishing it: a gossip message costs
# libp2p far more CPU than admitting a tx, so a client's burst must not go out a few txs per
# message (the 2,000-tx benchmark sent 554 TXS messages without it; 235 with 50 ms, 146-176
# with 100 ms, while a single transfer's commit latency stayed ~1.1 s).
TX_LINGER_S = 0.1
RECEIPT_SCAN_DEPTH = 4096  # heights searched back for a receipt not in the in-memory index
RECEIPT_INDEX_MAX = 200_000  # tx hash -> height entries kept in memory (oldest evicted)
# Canonical CBOR of a proposal starts: array(8), 1, text(8) "proposal" (messages.py).
_PROPOSAL_PREFIX = b"\x88\x01\x68proposal"


def wrap(kind: str, payloads: list[bytes], counter: int) -> bytes:
    """A gossip envelope (see the module docstring)."""
    return cbor2.dumps([ENVELOPE_VERSION, kind, payloads, counter], canonical=True)


def unwrap(data: bytes) -> tuple[str, list[bytes]]:
    """(kind, payloads) of a gossip envelope.

    Raises:
        ValueError: not a version-1 envelope (a consensus envelope holds exactly one).
    """
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise ValueError(f"not CBOR: {exc}") from exc
    if (not isinstance(obj, list) or len(obj) != 4 or obj[0] != ENVELOPE_VERSION
            or obj[1] not in ("txs", "consensus") or not isinstance(obj[2], list)
            or not all(type(p) is bytes for p in obj[2]) or type(obj[3]) is not int
            or (obj[1] == "consensus" and len(obj[2]) != 1)):
        raise ValueError("not a version-1 gossip envelope")
    return obj[1], obj[2]


class _NodeConsensusApp(ChainConsensusApp):
    """The chain adapter plus the node's bookkeeping after each decided height."""

    def __init__(self, owner: ChainNode) -> None:
        super().__init__(owner.app, owner.key, lambda: int(time.time()),
                         owner.mempool.candidates)
        self.owner = owner

    def commit(self, height: int, value: bytes, certificate: Certificate) -> None:
        super().commit(height, value, certificate)
        self.owner._after_commit(value)


class ChainNode:
    """A chain full node (validator or follower) on a libp2p :class:`Node`."""

    def __init__(self, node: Node, rpc: Rpc, gossip: Gossip, kv: KV, chain_id: str,
                 key: nacl.signing.SigningKey, *, validator: bool, wal_dir: Path,
                 block_interval: float = 1.0, timeouts: Timeouts | None = None,
                 rebroadcast_s: float = 1.0, regossip_s: float = 3.0,
                 max_block_bytes: int = MAX_BLOCK_BYTES) -> None:
        """The store ``kv`` must hold the genesis (:func:`storaged.chain.genesis.apply_genesis`).

        ``validator=False`` never signs (a follower); ``validator=True`` signs whenever its
        key is in the height's validator set.  ``block_interval`` is the pause after each
        commit (Tendermint's commit timeout): the devnet's block time.  ``max_block_bytes``
        caps the transaction bytes of the blocks this node proposes (:class:`ChainApp`).
        """
        self.node = node
        self.rpc = rpc
        self.gossip = gossip
        self.chain_id = chain_id
        self.key = key
        self.public_key = bytes(key.verify_key)
        self.validator = validator
        self.wal_dir = Path(wal_dir)
        self.block_interval = block_interval
        self.timeouts = timeouts or Timeouts()
        self.rebroadcast_s = rebroadcast_s
        self.regossip_s = regossip_s
        self.app = ChainApp(kv, chain_id, max_block_bytes=max_block_bytes)
        # Consensus messages' priority path (see the module docstring).
        self.lanes = DirectLanes(node, CONSENSUS)
        self.mempool = Mempool(self.app)
        self.sync = SyncService(self.app, rpc)
        self.query = QueryService(self.app, self.submit, self.find_receipt, self.next_nonce,
                                  self._wait_quietly)
        self.evidence: list[Evidence] = []
        self.dropped_incoming = 0
        self.syncs = 0  # catch-up rounds after start (driver reported we were behind)
        self._counter = 0
        self._committed = trio.Event()
        self._receipts: dict[bytes, tuple[int, int]] = {}  # tx hash -> (height, index)
        self._decoded: dict[int, list[Any]] = {}  # height -> its receipts (a few recent)
        # Our own pending txs: raw, when to re-send, current backoff, and the count of
        # committed blocks with room (_roomy_blocks) when it was last sent.
        self._local: dict[bytes, tuple[bytes, float, float, int]] = {}
        self._roomy_blocks = 0
        self.regossiped = 0  # txs re-sent by _regossip_forever
        self._outbox: list[bytes] = []
        # Consensus messages wait here for the publisher task: the driver must never block
        # on gossip back-pressure (a slow peer would stall the whole state machine).
        self._cons_send, self._cons_recv = trio.open_memory_channel[bytes](1024)
        self.dropped_outgoing = 0
        self._outbox_ready = trio.Event()
        self._incoming_send, self._incoming_recv = trio.open_memory_channel[bytes | Commit](
            INCOMING_DEPTH)
        self._signer: Signer | None = None
        self.driver: Driver | None = None  # the running one (for status and metrics)

    # -- ChainAccess ------------------------------------------------------------------------

    def head(self) -> Head:
        """The last committed block."""
        return self.app.head()

    def view(self) -> ChainView:
        """Read-only view of the committed state."""
        from storaged.chain.view import ChainView

        return ChainView(self.app.kv)

    def next_nonce(self, account: bytes) -> int:
        """Committed nonce plus ``account``'s transactions pending in this node's mempool."""
        return self.mempool.next_nonce(account)

    async def submit(self, raw_tx: bytes) -> bytes:
        """Admit ``raw_tx`` (CheckTx against committed state + pending), gossip it, return
        its hash.  It is re-gossiped (backing off from ``regossip_s``) until committed.

        Raises:
            ChainError: the specific rule the transaction breaks (nothing is queued).
            MempoolFull: no room now; retry after a block.
        """
        tx_hash = self.mempool.add(raw_tx)
        if tx_hash not in self._local:
            self._local[tx_hash] = (raw_tx, trio.current_time() + self.regossip_s,
                                    self.regossip_s, self._roomy_blocks)
            self._queue_tx(raw_tx)
        await trio.lowlevel.checkpoint()  # a client's burst of submits must not starve consensus
        return tx_hash

    async def wait_receipt(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        """The receipt (with ``"height"``) once ``tx_hash`` is committed.

        Raises:
            NotCommitted: not committed within ``timeout`` (it may have been dropped as stale).
        """
        found = self.find_receipt(tx_hash)  # may search old blocks once
        with trio.move_on_after(timeout):
            while True:
                if found is not None:
                    return {**found[1], "height": found[0]}
                await self._committed.wait()
                found = self.find_receipt(tx_hash, scan=False)
        raise NotCommitted(f"tx {tx_hash.hex()[:16]} not committed within {timeout:g} s")

    async def wait_height(self, height: int, timeout: float) -> Head:
        """Return once a block at ``height`` or above is committed.

        Raises:
            NotCommitted: not reached within ``timeout`` seconds.
        """
        with trio.move_on_after(timeout):
            while True:
                head = self.app.head()
                if head.height >= height:
                    return head
                await self._committed.wait()
        raise NotCommitted(f"height {height} not committed within {timeout:g} s")

    async def _wait_quietly(self, tx_hash: bytes, timeout: float) -> None:
        with contextlib.suppress(NotCommitted):
            await self.wait_receipt(tx_hash, timeout)

    def find_receipt(self, tx_hash: bytes, *, scan: bool = True
                     ) -> tuple[int, dict[str, Any]] | None:
        """(height, receipt) of a committed transaction, or None.

        Txs committed while this process runs are indexed in memory; with ``scan``, older
        ones are looked up in the last ``RECEIPT_SCAN_DEPTH`` blocks.
        """
        where = self._receipts.get(tx_hash)
        if where is None:
            if not scan:
                return None
            head = self.app.head().height
            for h in range(head, max(0, head - RECEIPT_SCAN_DEPTH), -1):
                if self._index_block(h, tx_hash):
                    where = self._receipts[tx_hash]
                    break
            else:
                return None
        height, index = where
        receipts = self._decoded.get(height)
        if receipts is None:
            raw = self.app.kv.get(schema.chain_receipts_key(height))
            if raw is None:
                return None
            receipts = list(encoding.decode(raw))
            if len(self._decoded) >= 8:  # a waiter burst reads the last few heights only
                del self._decoded[next(iter(self._decoded))]
            self._decoded[height] = receipts
        return (height, dict(receipts[index])) if index < len(receipts) else None

    def _index_block(self, height: int, wanted: bytes) -> bool:
        raw = self.app.block_at(height)
        if raw is None:
            return False
        found = False
        for index, tx in enumerate(decode_block(raw).txs):
            h = encoding.digest(tx)
            self._receipts[h] = (height, index)
            found = found or h == wanted
        return found

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve, gossip, catch up with connected peers, then run consensus until cancelled.

        ``task_status.started()`` comes after the initial catch-up (at once when no peer has
        anything newer).  The :class:`Gossip` must be running; a ChainNode subscribes to its
        topics, so one Gossip serves one ChainNode.

        Raises:
            ResourceError: the WAL database cannot be opened (e.g. locked by another process).
            StateCorrupt: the store holds no genesis.
        """
        self.app.head()  # fail early on a store without genesis
        wal = LevelKV(self.wal_dir, sync=True)
        try:
            self._signer = Signer(self.key, self.chain_id, wal) if self.validator else None
            self.rpc.serve(SYNC, self.sync.handle)
            self.rpc.serve(QUERY, self.query.handle)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.lanes.run)
                txs = await self.gossip.subscribe(TXS)
                votes = await self.gossip.subscribe(VOTES)
                blocks = await self.gossip.subscribe(BLOCKS)
                nursery.start_soon(self._pump_lanes)
                nursery.start_soon(self._pump, txs)
                nursery.start_soon(self._pump, votes)
                nursery.start_soon(self._pump, blocks)
                nursery.start_soon(self._regossip_forever)
                nursery.start_soon(self._send_txs_forever)
                nursery.start_soon(self._send_consensus_forever)
                await self._catch_up()
                task_status.started()
                await self._consensus_forever()
        finally:
            wal.close()

    async def _catch_up(self) -> int:
        peers = [p for p in self.node.connected_peers() if p != self.node.peer_id]
        n = await self.sync.catch_up(peers, self._after_commit)
        if n:
            log.info("synced %d blocks; head %d", n, self.app.head().height)
        return n

    async def _consensus_forever(self) -> None:
        app = _NodeConsensusApp(self)
        while True:
            behind = trio.Event()

            def on_behind(_height: int, ev: trio.Event = behind) -> None:
                ev.set()

            machine = Machine(app, self._signer, self.chain_id, self.timeouts)
            driver = Driver(machine, app, self._broadcast, rebroadcast_s=self.rebroadcast_s,
                            commit_pause_s=self.block_interval, on_evidence=self._on_evidence,
                            on_behind=on_behind)
            self.driver = driver
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run, self._incoming_recv, self.app.head().height + 1)
                await behind.wait()
                nursery.cancel_scope.cancel()
            # A peer is more than one height ahead: gossip cannot bring us there (it only
            # carries the current and previous height), so fetch the commits.
            self.syncs += 1
            await self._catch_up()

    # -- commits, evidence ------------------------------------------------------------------

    def _after_commit(self, block_bytes: bytes) -> None:
        block = decode_block(block_bytes)
        hashes = [encoding.digest(tx) for tx in block.txs]
        cap = self.app.max_block_bytes
        if cap is None or sum(len(tx) for tx in block.txs) + ROOM_BYTES <= cap:
            self._roomy_blocks += 1
        for index, h in enumerate(hashes):
            self._receipts[h] = (block.header.height, index)
            self._local.pop(h, None)
        while len(self._receipts) > RECEIPT_INDEX_MAX:
            del self._receipts[next(iter(self._receipts))]
        dropped = self.mempool.on_commit(hashes)
        for h in dropped:
            self._local.pop(h, None)
        event, self._committed = self._committed, trio.Event()
        event.set()

    def _on_evidence(self, evidence: Evidence) -> None:
        """Equivocation seen by the machine: kept in :attr:`evidence`, logged, and reported on
        chain with a ``report_evidence`` tx (re-gossiped like our own txs until included; when
        another validator's report lands first, ours is refused as already slashed)."""
        self.evidence.append(evidence)
        offender = evidence.vote_a.validator.hex()[:16]
        log.warning("equivocation by validator %s at height %d round %d", offender,
                    evidence.vote_a.height, evidence.vote_a.round)
        try:
            raw = sign_tx(self.key, self.chain_id, "report_evidence",
                          self.next_nonce(self.public_key), 1, {"evidence": evidence.encode()})
            tx_hash = self.mempool.add(raw)
            self._local[tx_hash] = (raw, trio.current_time() + self.regossip_s,
                                    self.regossip_s, self._roomy_blocks)
            self._queue_tx(raw)
        except (ChainError, MempoolFull) as exc:
            log.warning("could not submit evidence against %s: %s", offender, exc)

    # -- gossip -----------------------------------------------------------------------------

    def _next_counter(self) -> int:
        self._counter += 1
        return self._counter

    async def _broadcast(self, message: bytes) -> None:
        # The priority path first: it never waits behind transaction gossip.
        self.lanes.send_all(message)
        # Gossip too: it reaches peers we are not connected to (relayed), and is the
        # fallback while a lane is down.  Its publisher may wait on pacing, so it gets the
        # message through a bounded outbox.
        try:
            self._cons_send.send_nowait(message)
        except trio.WouldBlock:
            self.dropped_outgoing += 1  # the driver re-broadcasts within rebroadcast_s

    async def _send_consensus_forever(self) -> None:
        async for message in self._cons_recv:
            # Proposals carry the block: only BLOCKS allows their size.
            topic = BLOCKS if message.startswith(_PROPOSAL_PREFIX) else VOTES
            data = wrap("consensus", [message], self._next_counter())
            if len(data) > topic.max_size:
                log.error("consensus message of %d bytes exceeds %s", len(data), topic.name)
                continue
            await self.gossip.publish(topic, data)

    def _queue_tx(self, raw: bytes) -> None:
        self._outbox.append(raw)
        self._outbox_ready.set()

    async def _send_txs_forever(self) -> None:
        """Publish queued txs in batches: whatever accumulated while the last batch was
        being published goes out together."""
        while True:
            await self._outbox_ready.wait()
            if sum(len(raw) for raw in self._outbox) < TX_BATCH_BYTES:
                await trio.sleep(TX_LINGER_S)  # let the batch fill (pacing, not synchronisation)
            self._outbox_ready = trio.Event()
            pending, self._outbox = self._outbox, []
            batch: list[bytes] = []
            size = 0
            for raw in pending:
                if batch and size + len(raw) > TX_BATCH_BYTES:
                    await self.gossip.publish(TXS, wrap("txs", batch, self._next_counter()))
                    batch, size = [], 0
                if len(raw) <= TX_BATCH_BYTES:
                    batch.append(raw)
                    size += len(raw) + 4
            if batch:
                await self.gossip.publish(TXS, wrap("txs", batch, self._next_counter()))

    async def _pump_lanes(self) -> None:
        """Consensus messages from direct lanes into the driver's channel."""
        while True:
            _peer, message = await self.lanes.receive()
            try:
                self._incoming_send.send_nowait(message)
            except trio.WouldBlock:
                self.dropped_incoming += 1  # recovered by the sender's re-broadcast or sync

    async def _pump(self, sub: Subscription) -> None:
        async for msg in sub:
            if msg.origin == self.node.peer_id:
                continue
            try:
                kind, payloads = unwrap(msg.data)
            except ValueError as exc:
                log.info("gossip from %s dropped: %s", msg.origin, exc)
                continue
            if kind == "txs":
                for raw in payloads:
                    try:
                        self.mempool.add(raw)
                    except StoragedError as exc:  # ChainError, MempoolFull: the tx's problem
                        log.debug("gossiped tx refused: %s", exc)
                await trio.lowlevel.checkpoint()  # a big batch must not starve consensus
                continue
            try:
                self._incoming_send.send_nowait(payloads[0])
            except trio.WouldBlock:
                self.dropped_incoming += 1  # recovered by the sender's re-broadcast or sync

    async def _regossip_forever(self) -> None:
        """Re-send our pending txs that are due and that a block with room has since left
        out.  A re-send has a fresh gossip id, so it floods every peer again: re-sending a
        backlog that is only waiting behind full blocks (the 2,000-tx benchmark re-sent
        1,750 of them) slowed those blocks down."""
        while True:
            await trio.sleep(self.regossip_s / 2)  # the re-gossip clock, not synchronisation
            now = trio.current_time()
            for tx_hash, (raw, due, backoff, roomy) in list(self._local.items()):
                if tx_hash not in self.mempool:
                    self._local.pop(tx_hash, None)
                elif now >= due and self._roomy_blocks > roomy:
                    nxt = min(backoff * 2, MAX_REGOSSIP_S)
                    self._local[tx_hash] = (raw, now + nxt, nxt, self._roomy_blocks)
                    self.regossiped += 1
                    self._queue_tx(raw)
