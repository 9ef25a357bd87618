"""Gossip for the chain: gossipsub topics for transactions, consensus votes and blocks.

Limits are set here on purpose, against py-libp2p 0.8.1's defaults (measured: see
docs/architecture.md, network section):

- a local publisher is paced to libp2p's 32-RPC per-peer outbound queue instead of
  overflowing it (libp2p drops RPCs that do not fit);
- spam protection allows ``max_per_second`` messages per peer and topic (default 10/s would
  drop a validator's burst of votes or a client's batch of transactions); we allow 500/s;
- each subscription queue holds ``queue`` messages (libp2p: 32, silently dropping the rest when
  a burst arrives in one read); we replace it with a per-topic queue sized for the topic;
- messages are signed by their origin (strict signing) and identified by the blake3 of their
  data, so the same transaction gossiped twice is delivered once;
- every topic has a size limit, enforced by a validator before delivery or forwarding;
- the signed peer record libp2p attaches to every RPC is verified once per peer and record
  (and ours built once), not per RPC (:func:`_cache_signed_records`).

Consensus messages do not depend on this module alone: :mod:`storaged.net.direct` gives them
a stream per peer of their own, since here every topic shares one queue and one stream per
peer, so a vote waits behind whatever transaction batches are queued before it.

Loss is still possible (a peer offline, a queue overflow under a flood).  It is harmless by
design: gossip is only the fast path.  Transactions stay in the sender's mempool and are
re-gossiped until included; votes are re-sent each round step; a node that misses a block or
a commit fetches it over ``/storaged/sync/1.0.0`` (request/response), which never drops.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

import blake3
import libp2p.pubsub.gossipsub as _gossipsub_mod
import libp2p.pubsub.pubsub as _pubsub_mod
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID as GOSSIPSUB_PROTOCOL_ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from storaged.errors import LocalBugError
from storaged.net.host import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topic:
    """A gossip topic: its name, the largest message it carries, and its queue depth."""

    name: str
    max_size: int
    queue: int


TXS = Topic("/storaged/txs/1", max_size=64 << 10, queue=4096)
VOTES = Topic("/storaged/votes/1", max_size=8 << 10, queue=4096)
BLOCKS = Topic("/storaged/blocks/1", max_size=2 << 20, queue=256)

OUTBOUND_HIGH_WATER = 16  # of libp2p's 32-RPC per-peer outbound queue
STUCK_AFTER = 2.0  # seconds a full outbound queue may go without shrinking before we stop waiting


@dataclass(frozen=True)
class Message:
    """A delivered gossip message: who originated it and its bytes."""

    origin: str
    data: bytes


def _message_id(msg: Any) -> bytes:
    return blake3.blake3(bytes(msg.data)).digest()


def _serialize_writes(pubsub: Pubsub) -> None:
    """Make each RPC written to a peer's pubsub stream whole, never interleaved.

    py-libp2p 0.8.1 writes RPCs from several tasks at once (publish, forwarding, heartbeat
    control, the flush of messages queued for a new peer), and a Yamux write larger than the
    peer's window goes out in pieces, releasing the stream between them: two RPCs then mix on
    the wire, the receiver fails to parse ("Error parsing message with type 'pubsub.pb.RPC'"),
    drops the stream and hears nothing more from that peer.  Seen on a provider restarted into
    a stalled chain, which never got the votes it needed.  One lock per stream fixes it.
    """
    original = pubsub.write_msg
    locks: weakref.WeakKeyDictionary[Any, trio.Lock] = weakref.WeakKeyDictionary()

    async def write_msg(stream: Any, rpc_msg: Any) -> bool:
        lock = locks.get(stream)
        if lock is None:
            lock = locks[stream] = trio.Lock()
        async with lock:
            return await original(stream, rpc_msg)

    pubsub.write_msg = write_msg  # type: ignore[method-assign]


RECORD_TTL = 10.0  # seconds a verified peer record (or our own, to send) is reused


def _cache_signed_records() -> None:
    """Verify each peer's signed peer record once, not on every RPC; build ours once.

    py-libp2p 0.8.1 attaches the sender's signed peer record to every pubsub RPC and the
    receiver checks it (protobuf parse, ed25519 verify, peerstore update) up to twice per RPC
    (``Pubsub.continuously_read_stream`` and ``GossipSub.handle_rpc``); building it costs the
    sender a ``get_addrs()`` per RPC.  Profiled on the 4-validator chain benchmark, that was
    ~12% of all CPU.  The same record bytes from the same peer verify the same way, so a
    successful check is remembered for ``RECORD_TTL`` seconds (a failure never is); our own
    record is rebuilt every ``RECORD_TTL`` seconds, so an address change shows within that.
    Installed once per process, on the two pubsub modules' own references only.
    """
    if getattr(_pubsub_mod, "_storaged_record_cache", False):
        return
    consume = getattr(_pubsub_mod, "maybe_consume_signed_record")  # noqa: B009 (not exported)
    build = getattr(_pubsub_mod, "env_to_send_in_RPC")  # noqa: B009
    verified: dict[tuple[Any, Any, bytes], float] = {}
    built: dict[int, tuple[tuple[bytes, bool], float]] = {}

    def cached_consume(msg: Any, host: Any, peer_id: Any = None) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        key = (host.get_id(), peer_id, bytes(msg.senderRecord))
        now = time.monotonic()
        if now - verified.get(key, -RECORD_TTL) < RECORD_TTL:
            return True
        ok: bool = consume(msg, host, peer_id)
        if ok:
            if len(verified) >= 4096:
                verified.clear()
            verified[key] = now
        return ok

    def cached_build(host: Any) -> tuple[bytes, bool]:
        now = time.monotonic()
        hit = built.get(id(host))
        if hit is not None and now - hit[1] < RECORD_TTL and hit[0][0]:
            return hit[0][0], False
        env: tuple[bytes, bool] = build(host)
        if len(built) >= 256:
            built.clear()
        built[id(host)] = (env, now)
        return env

    for mod in (_pubsub_mod, _gossipsub_mod):
        mod.maybe_consume_signed_record = cached_consume  # type: ignore[attr-defined]
        mod.env_to_send_in_RPC = cached_build  # type: ignore[attr-defined]
    _pubsub_mod._storaged_record_cache = True  # type: ignore[attr-defined]


class Gossip:
    """Gossipsub on a :class:`Node`: ``await nursery.start(gossip.run)``, then subscribe and
    publish.  Start it right after constructing it: until it runs, libp2p's connection
    notifications to pubsub wait for it (new connections would stall)."""

    def __init__(
        self,
        node: Node,
        *,
        max_per_second: float = 500.0,
        degree: int = 6,
        heartbeat_seconds: int = 1,
    ) -> None:
        self.node = node
        host = node._libp2p_host()
        self._router = GossipSub(
            protocols=[TProtocol(GOSSIPSUB_PROTOCOL_ID)],
            degree=degree,
            degree_low=max(1, degree - 2),
            degree_high=degree * 2,
            heartbeat_interval=heartbeat_seconds,
            heartbeat_initial_delay=0.1,
            max_messages_per_topic_per_second=max_per_second,
        )
        self._pubsub = Pubsub(
            host,
            self._router,
            strict_signing=True,
            msg_id_constructor=_message_id,
            max_inbound_rpc_size=4 << 20,
        )
        _serialize_writes(self._pubsub)
        _cache_signed_records()
        # pubsub registers a bare stream handler; an exception there (e.g. a stream arriving
        # while pubsub shuts down) would kill the host, so re-register it guarded.
        for protocol in self._router.get_protocols():
            node._set_raw_handler(str(protocol), self._pubsub.stream_handler)
        self._topics: dict[str, Topic] = {}
        self._queues: dict[str, trio.MemoryReceiveChannel[Any]] = {}
        self.dropped = 0
        self._running = False
        # Per peer with a full outbound queue: (when it last shrank, its size then).
        self._full_since: dict[Any, tuple[float, int]] = {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the pubsub service until cancelled; ``started()`` once it accepts subscriptions."""
        async with background_trio_service(self._pubsub), background_trio_service(self._router):
            await self._pubsub.wait_until_ready()
            # Pubsub learns of peers from connection events; peers connected before it ran
            # would stay unknown, so introduce them now.
            for peer in self.node._libp2p_host().get_connected_peers():
                self._pubsub.manager.run_task(self._pubsub._handle_new_peer_with_retry, peer)
            self._running = True
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._running = False

    async def subscribe(self, topic: Topic) -> Subscription:
        """Join ``topic``; return a channel of its messages (size-checked, deduplicated).

        Read it promptly: when its ``topic.queue`` messages are unread, newer ones are dropped
        (counted in :attr:`dropped`) and must be recovered through sync.
        """
        if not self._running:
            raise LocalBugError("Gossip.subscribe before Gossip.run started")
        if topic.name in self._topics:
            raise LocalBugError(f"already subscribed to {topic.name}")
        self._topics[topic.name] = topic

        def validate(peer: ID, msg: Any) -> bool:
            if len(msg.data) > topic.max_size:
                log.info("dropping %d-byte message on %s from %s", len(msg.data), topic.name, peer)
                return False
            return True

        self._pubsub.set_topic_validator(topic.name, validate, False)
        await self._pubsub.subscribe(topic.name)
        # py-libp2p gives every subscription a 32-slot queue and drops on overflow; swap in
        # one of the topic's chosen depth (pubsub writes with send_nowait, never blocks).
        send, recv = trio.open_memory_channel[Any](topic.queue)
        old = self._pubsub.subscribed_topics_send[topic.name]
        table: dict[str, Any] = self._pubsub.subscribed_topics_send
        table[topic.name] = _CountingSend(send, self)
        await old.aclose()
        self._queues[topic.name] = recv
        return Subscription(recv)

    async def publish(self, topic: Topic, data: bytes) -> None:
        """Gossip ``data`` on ``topic`` (we need not be subscribed).

        Raises:
            LocalBugError: ``data`` exceeds the topic's size limit (peers would drop it).
        """
        if len(data) > topic.max_size:
            raise LocalBugError(f"{len(data)}-byte message exceeds {topic.name} limit")
        # libp2p queues at most 32 outbound RPCs per peer and drops the rest; a local burst
        # would overflow it before its sender task runs.  Publishing therefore waits while
        # a peer's queue is half full and draining: the publisher is slowed, nothing is
        # dropped.  A queue that has not shrunk for STUCK_AFTER seconds belongs to a peer that
        # is dead or wedged; waiting on it would stop all our gossip (consensus included), so
        # it is left to libp2p's drop (that peer catches up through sync and re-broadcasts).
        while self._draining_peers():  # noqa: ASYNC110
            await trio.sleep(0.001)  # libp2p offers no event for "queue drained"
        await self._pubsub.publish(topic.name, data)

    def _draining_peers(self) -> int:
        """How many peers have a full outbound queue that is still making progress."""
        now = trio.current_time()
        waiting = 0
        seen = set()
        for peer, queue in self._pubsub.peer_queues.items():
            seen.add(peer)
            size = len(queue)
            if size < OUTBOUND_HIGH_WATER:
                self._full_since.pop(peer, None)
                continue
            since, last = self._full_since.get(peer, (now, size))
            if size < last:
                since = now  # it shrank: the peer is reading
            self._full_since[peer] = (since, size)
            if now - since < STUCK_AFTER:
                waiting += 1
        for gone in set(self._full_since) - seen:
            del self._full_since[gone]
        return waiting

    def topic_peers(self, topic: Topic) -> list[str]:
        """Peers known to be subscribed to ``topic``."""
        return [str(p) for p in self._pubsub.peer_topics.get(topic.name, ())]

    async def wait_for_topic_peers(self, topic: Topic, count: int, *, timeout: float) -> None:
        """Return once ``count`` peers are subscribed to ``topic``.

        libp2p exposes no event for subscription changes, so this polls every 20 ms.

        Raises:
            trio.TooSlowError: not enough peers within ``timeout``.
        """
        with trio.fail_after(timeout):
            while len(self.topic_peers(topic)) < count:  # noqa: ASYNC110 (no libp2p event)
                await trio.sleep(0.02)


class _CountingSend:
    """A send channel that counts (and logs) messages dropped on a full queue."""

    def __init__(self, inner: trio.MemorySendChannel[Any], owner: Gossip) -> None:
        self._inner = inner
        self._owner = owner

    def send_nowait(self, value: Any) -> None:
        try:
            self._inner.send_nowait(value)
        except trio.WouldBlock:
            self._owner.dropped += 1
            log.warning("gossip queue full: message dropped (recovered via sync)")

    async def aclose(self) -> None:
        await self._inner.aclose()


class Subscription:
    """The messages of one subscribed topic, in arrival order: ``await sub.receive()`` or
    ``async for msg in sub``."""

    def __init__(self, recv: trio.MemoryReceiveChannel[Any]) -> None:
        self._recv = recv

    async def receive(self) -> Message:
        """The next message.

        Raises:
            trio.EndOfChannel: the gossip service stopped.
        """
        msg = await self._recv.receive()
        return Message(str(ID(bytes(msg.from_id))), bytes(msg.data))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
