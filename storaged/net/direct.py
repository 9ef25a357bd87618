"""Direct lanes: one long-lived stream to each connected peer for a small, urgent flow.

Gossipsub (:mod:`storaged.net.gossip`) gives every peer ONE stream and ONE outbound queue for
all topics, and the receiver handles that stream's RPCs strictly in order (signature check,
validation, forwarding).  A consensus vote published while a burst of transaction batches is
queued therefore waits behind all of them, at the sender and again at the receiver: measured
on the 4-validator benchmark, the first busy height needed 6 s to gather a prevote quorum and
5 s more for the precommits (``bench/chain_net.py --trace``).  A :class:`DirectLanes` service
sends its messages on a stream of its own protocol instead: Yamux gives that stream its own
flow-control window and our reader task drains it as frames arrive, so nothing else that is
queued on the connection delays it beyond the frames already in flight.

Semantics, chosen for consensus messages (which their sender re-sends periodically anyway):

- :meth:`DirectLanes.send_all` never blocks: it queues the message for every connected peer.
  Each peer's queue is bounded (``queue_bytes``); when full, the *oldest* queued message is
  dropped (a newer consensus message supersedes older ones) and counted in :attr:`dropped`.
- One writer task per peer opens the stream on first use and writes whole frames in order.
  A failed open or write drops what is queued for that peer (counted) and refuses new
  messages for ``retry_s``, doubling per consecutive failure up to ``MAX_RETRY_S`` (a light
  client connected for queries never serves the protocol), then tries a fresh stream.  A
  peer that is no longer connected is forgotten.  Nothing is retried here; the owner's
  periodic re-send (and gossip) is the recovery.
- Delivery to the owner is through :meth:`DirectLanes.receive`, a bounded channel; a message
  arriving when it is full is dropped and counted in :attr:`dropped_incoming`.
- The peer is authenticated by the connection (Noise); the lane adds no signature, so the
  owner must check its messages' own signatures (consensus messages carry them).

Wire format (version-1 frames of :mod:`storaged.net.wire`): the stream carries any number of
frames of one type, ``0x01 message`` (RAW body, at most the protocol's ``max_message`` bytes),
from the opener to the acceptor only; the acceptor never writes.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

from storaged.errors import LocalBugError, RemoteError
from storaged.net.errors import DeadlineExceeded
from storaged.net.host import Node
from storaged.net.stream import Stream
from storaged.net.wire import Codec, FrameDecoder, MessageTable, MessageType

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
IDLE_READ_S = 60.0  # a quiet lane is normal: the reader just waits again
MAX_RETRY_S = 60.0


@dataclass(frozen=True)
class LaneProtocol:
    """A direct-lane protocol: its id and the largest message it carries."""

    protocol_id: str
    max_message: int

    def table(self) -> MessageTable:
        return MessageTable(self.protocol_id,
                            [MessageType(0x01, "message", Codec.RAW, self.max_message)])


# Proposals carry a block (proposers cap a block's transactions at 128 KiB; the chain's
# BLOCKS gossip topic allows 2 MiB), votes are ~200 bytes.
CONSENSUS = LaneProtocol("/storaged/consensus/1.0.0", max_message=2 << 20)


@dataclass
class _PeerQueue:
    frames: deque[bytes]
    size: int = 0
    refuse_until: float = 0.0
    failures: int = 0  # consecutive failed opens or writes
    task_running: bool = False
    wake: trio.Event | None = None


class DirectLanes:
    """Direct streams to every connected peer for one :class:`LaneProtocol`.

    ``await nursery.start(lanes.run)`` registers the handler and starts the service; then
    :meth:`send_all` and :meth:`receive`.
    """

    def __init__(self, node: Node, protocol: LaneProtocol, *, queue_bytes: int = 4 << 20,
                 incoming: int = 4096, retry_s: float = 1.0, write_timeout: float = 5.0) -> None:
        self.node = node
        self.protocol = protocol
        self.queue_bytes = queue_bytes
        self.retry_s = retry_s
        self.write_timeout = write_timeout
        self._table = protocol.table()
        self._peers: dict[str, _PeerQueue] = {}
        self._in_send, self._in_recv = trio.open_memory_channel[tuple[str, bytes]](incoming)
        self._nursery: trio.Nursery | None = None
        self.dropped = 0  # outgoing messages dropped (queue full, or the peer's lane failed)
        self.dropped_incoming = 0
        self.sent = 0
        self.received = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the protocol and run the per-peer writers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.node.set_handler(self.protocol.protocol_id, self._serve)
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- sending ----------------------------------------------------------------------------

    def send_all(self, message: bytes) -> int:
        """Queue ``message`` for every connected peer; return how many peers it was queued for.

        Raises:
            LocalBugError: the service is not running, or ``message`` exceeds the protocol's
                ``max_message`` (peers would refuse it).
        """
        if self._nursery is None:
            raise LocalBugError("DirectLanes.send_all before run() started")
        frame = self._table.encode("message", message)
        now = trio.current_time()
        queued = 0
        for peer in self.node.connected_peers():
            q = self._peers.get(peer)
            if q is None:
                q = self._peers[peer] = _PeerQueue(deque())
            if now < q.refuse_until:
                self.dropped += 1
                continue
            while q.frames and q.size + len(frame) > self.queue_bytes:
                q.size -= len(q.frames.popleft())
                self.dropped += 1
            q.frames.append(frame)
            q.size += len(frame)
            queued += 1
            if not q.task_running:
                q.task_running = True
                self._nursery.start_soon(self._write_loop, peer, q)
            elif q.wake is not None:
                q.wake.set()
        return queued

    def queued(self) -> int:
        """Messages waiting in all peers' queues (for metrics and tests)."""
        return sum(len(q.frames) for q in self._peers.values())

    async def _write_loop(self, peer: str, q: _PeerQueue) -> None:
        stream: Stream | None = None
        try:
            while True:
                if not q.frames:
                    q.wake = trio.Event()
                    await q.wake.wait()
                    continue
                if stream is not None and not stream.reusable:  # died while idle: no loss
                    await stream.reset()
                    stream = None
                try:
                    if stream is None:
                        stream = await self.node.open_stream(peer, self.protocol.protocol_id,
                                                             timeout=self.write_timeout)
                    frame = q.frames[0]
                    await stream.write(frame, timeout=self.write_timeout)
                except RemoteError as exc:  # StreamBroken, DeadlineExceeded: peer gone or slow
                    log.info("direct lane %s to %s failed: %s", self.protocol.protocol_id,
                             peer[:16], exc)
                    if stream is not None:
                        await stream.reset()
                        stream = None
                    self.dropped += len(q.frames)
                    q.frames.clear()
                    q.size = 0
                    if peer not in self.node.connected_peers():
                        if self._peers.get(peer) is q:
                            del self._peers[peer]
                        return
                    q.refuse_until = trio.current_time() + min(
                        self.retry_s * 2 ** q.failures, MAX_RETRY_S)
                    q.failures += 1
                    continue
                q.failures = 0
                if q.frames and q.frames[0] is frame:
                    q.frames.popleft()
                    q.size -= len(frame)
                self.sent += 1
        finally:
            q.task_running = False
            q.wake = None
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.reset()

    # -- receiving --------------------------------------------------------------------------

    async def receive(self) -> tuple[str, bytes]:
        """The next (peer id, message) from any peer's lane, in arrival order per peer."""
        return await self._in_recv.receive()

    async def _serve(self, stream: Stream) -> None:
        """Read frames until the opener closes the lane.

        Raises:
            ProtocolViolation: a malformed or oversized frame (the guard resets the stream).
            StreamBroken: the lane broke (the peer left).
        """
        decoder = FrameDecoder(self._table)
        while True:
            try:
                data = await stream.read(READ_SIZE, timeout=IDLE_READ_S)
            except DeadlineExceeded:
                continue  # an idle lane: nothing to send is not an error
            if not data:
                await stream.close()
                return
            decoder.feed(data)
            while (frame := decoder.next_frame()) is not None:
                self.received += 1
                try:
                    self._in_send.send_nowait((stream.peer, frame.body))
                except trio.WouldBlock:
                    self.dropped_incoming += 1
