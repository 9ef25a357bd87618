"""The trio shell for bulk transfer: serve and call ``/storaged/push/1.0.0`` and
``/storaged/fetch/1.0.0`` (protocol logic in :mod:`storaged.net.push` / :mod:`storaged.net.fetch`,
flow control in :mod:`storaged.net.flow`).

Each receiving side runs two tasks: a reader that keeps draining the stream into a bounded
queue (so Yamux never stalls the sender), and a consumer that hashes and stores chunks and
sends credit back.  Each sending side prefetches chunks from its source in a third task so disk
reads overlap the network.  Every stream wait has a stall deadline; a peer that stops moving
raises :class:`DeadlineExceeded`, a peer that vanishes (reset, EOF mid-object) raises
:class:`StreamBroken`, both :class:`PeerUnavailable`.

Chunks are hashed (blake3) on the event loop: about 0.2 ms per MiB here.  Handing each chunk
to a worker thread was measured slower on this 2-core machine (push 330-360 MB/s vs 385-390
MB/s inline, ``bench/net.py``): both cores are already busy with the two ends of the transfer,
so the thread buys no parallelism and costs a hand-off per chunk.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import blake3
import trio

from storaged.errors import IntegrityError, LocalBugError, PeerUnavailable, StoragedError
from storaged.net import fetch as fetch_proto
from storaged.net import push as push_proto
from storaged.net.errors import RemoteIntegrityFailure, StreamBroken, first_error
from storaged.net.flow import (
    CHUNK_SIZE,
    DEFAULT_WINDOW,
    MIN_CHUNK,
    ChunkSink,
    ChunkSource,
)
from storaged.net.host import Node
from storaged.net.rpc import error_code_for
from storaged.net.stream import Stream

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20
Consumer = Callable[[int, bytes], Awaitable[None]]


@dataclass(frozen=True)
class PushResult:
    """How a push went: the last attempt started at ``resumed_from`` (> 0 when the provider
    already held a prefix, e.g. after a broken earlier attempt)."""

    size: int
    resumed_from: int
    attempts: int


@dataclass(frozen=True)
class FetchResult:
    """How a fetch went: ``size`` of the whole object, ``length`` of the range delivered."""

    size: int
    length: int
    attempts: int


async def hash_source(source: ChunkSource, key: bytes, size: int) -> bytes:
    """blake3 of a whole object read from ``source`` in CHUNK_SIZE pieces."""
    hasher = blake3.blake3()
    pos = 0
    while pos < size:
        chunk = await source.read(key, pos, min(CHUNK_SIZE, size - pos))
        if not chunk:
            raise LocalBugError(f"source returned no bytes at {pos} of {size}")
        hasher.update(chunk)
        pos += len(chunk)
    digest: bytes = hasher.digest()
    return digest


async def _refuse(
    stream: Stream, refuse: Callable[[str, str], bytes], exc: StoragedError, timeout: float
) -> None:
    """Tell the peer why, as the protocol's ``error`` frame (``refuse(code, message)``) with
    the code that matches ``exc``, instead of resetting the stream."""
    await stream.write(refuse(error_code_for(exc), str(exc)), timeout=timeout)


async def _read_some(stream: Stream, timeout: float, what: str) -> bytes:
    data = await stream.read(READ_SIZE, timeout=timeout)
    if not data:
        raise StreamBroken(f"{what}: peer ended the stream early")
    return data


async def _receive(
    stream: Stream,
    feed: Callable[[bytes], list[Any]],
    consume: Callable[[Any], Awaitable[None]],
    *,
    terminal: type,
    capacity: int,
    stall_timeout: float,
    what: str,
) -> None:
    """Drain ``stream`` through ``feed`` into a bounded queue consumed by ``consume`` until an
    event of type ``terminal`` has been consumed.  The queue cannot overflow because the sender
    is held to the credit the consumer grants; if it does, the peer cheated."""
    send, recv = trio.open_memory_channel[Any](capacity)

    async def reader() -> None:
        async with send:
            while True:
                for event in feed(await _read_some(stream, stall_timeout, what)):
                    try:
                        send.send_nowait(event)
                    except trio.WouldBlock:
                        raise LocalBugError(f"{what}: receive queue overflow") from None
                    if isinstance(event, terminal):
                        return

    with first_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            async with recv:
                async for event in recv:
                    await consume(event)


async def _prefetch(
    source: ChunkSource,
    key: bytes,
    start: int,
    end: int,
    send: trio.MemorySendChannel[bytes | StoragedError],
) -> None:
    async with send:
        pos = start
        while pos < end:
            item: bytes | StoragedError
            try:
                item = await source.read(key, pos, min(CHUNK_SIZE, end - pos))
            except StoragedError as exc:
                item = exc  # raised by the sender in turn, not in the middle of a write
            if not isinstance(item, StoragedError):
                if not item:
                    raise LocalBugError(f"source returned no bytes for {key.hex()} at {pos}")
                pos += len(item)
            try:
                await send.send(item)
            except trio.BrokenResourceError:
                return  # the sender stopped on an error of its own: that is the one to report
            if isinstance(item, StoragedError):
                return


async def _send_chunks(
    source: ChunkSource,
    key: bytes,
    start: int,
    end: int,
    send_one: Callable[[bytes], Awaitable[None]],
) -> None:
    """Read [start, end) of ``key`` in a prefetching task and pass each chunk to ``send_one``.

    A source error is raised here after the chunks read before it were sent: raising it in
    the prefetching task would cancel ``send_one`` in the middle of writing a frame, and the
    peer could not read an error frame behind half a data frame.

    Raises:
        StoragedError: from ``source``.
    """
    send, recv = trio.open_memory_channel[bytes | StoragedError](2)
    with first_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_prefetch, source, key, start, end, send)
            async with recv:
                async for item in recv:
                    if isinstance(item, StoragedError):
                        raise item
                    await send_one(item)


class Transfers:
    """Push and fetch service on a :class:`Node`."""

    def __init__(
        self,
        node: Node,
        *,
        window: int = DEFAULT_WINDOW,
        stall_timeout: float = 30.0,
        max_inbound: int = 16,
    ) -> None:
        """``max_inbound`` bounds concurrent served transfers (each may buffer ``window``
        bytes); beyond it, new ones are refused with ``busy`` at once."""
        if window < 2 * CHUNK_SIZE:
            raise LocalBugError("transfer window must hold at least two chunks")
        self.node = node
        self.window = window
        self.stall_timeout = stall_timeout
        self.max_inbound = max_inbound
        self.inbound = 0
        self._idle = trio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no served transfer is running.  A provider may still be storing a
        push whose client already gave up (up to a window of queued chunks)."""
        while self.inbound:
            await self._idle.wait()

    async def _admit(self, stream: Stream, refusal: bytes) -> bool:
        """Count one more served transfer, or refuse it (busy) and close the stream."""
        if self.inbound >= self.max_inbound:
            await stream.write(refusal, timeout=self.stall_timeout)
            await stream.close()
            return False
        self.inbound += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        return True

    def _release(self) -> None:
        self.inbound -= 1
        if not self.inbound:
            self._idle.set()

    # -- provider side -----------------------------------------------------------------------

    def serve_push(self, sink: ChunkSink) -> None:
        """Accept pushes into ``sink``."""

        busy = push_proto.PushReceiverSession.refuse("busy", "too many transfers; retry later")

        async def handler(stream: Stream) -> None:
            if await self._admit(stream, busy):
                try:
                    await self._serve_push(sink, stream)
                finally:
                    self._release()

        self.node.set_handler(push_proto.PROTOCOL, handler)

    def serve_fetch(self, source: ChunkSource) -> None:
        """Answer ranged retrievals from ``source``."""

        busy = fetch_proto.FetchServerSession.refuse("busy", "too many transfers; retry later")

        async def handler(stream: Stream) -> None:
            if await self._admit(stream, busy):
                try:
                    await self._serve_fetch(source, stream)
                finally:
                    self._release()

        self.node.set_handler(fetch_proto.PROTOCOL, handler)

    async def _serve_push(self, sink: ChunkSink, stream: Stream) -> None:
        t = self.stall_timeout
        what = f"{push_proto.PROTOCOL} from {stream.peer[:16]}"
        session = push_proto.PushReceiverSession(self.window)
        events = session.receive_data(await _read_some(stream, t, what))
        while not events:
            events = session.receive_data(await _read_some(stream, t, what))
        offer = events[0]
        if not isinstance(offer, push_proto.Offered) or len(events) > 1:
            raise LocalBugError("push session yielded data before accept")
        try:
            offset = await sink.begin(offer.key, offer.size, offer.digest)
            if not 0 <= offset <= offer.size:
                raise LocalBugError(f"sink resumed at {offset} of {offer.size}")
            hasher = blake3.blake3()
            pos = 0
            while pos < offset:
                held = await sink.read_back(offer.key, pos, min(CHUNK_SIZE, offset - pos))
                hasher.update(held)
                pos += len(held)
        except StoragedError as exc:
            await _refuse(stream, session.refuse, exc, t)
            await stream.close()
            return
        await stream.write(session.accept(offset), timeout=t)

        async def consume(event: Any) -> None:
            if isinstance(event, push_proto.Chunk):
                hasher.update(event.data)
                await sink.write(offer.key, event.offset, event.data)
                credit = session.stored(len(event.data))
                if credit is not None:
                    await stream.write(credit, timeout=t)
            elif hasher.digest() == offer.digest:
                await sink.commit(offer.key)
                await stream.write(session.done(), timeout=t)
            else:
                await sink.discard(offer.key)
                msg = "received bytes do not match the offered blake3"
                await stream.write(session.refuse("integrity", msg), timeout=t)

        try:
            await _receive(
                stream,
                session.receive_data,
                consume,
                terminal=push_proto.Ended,
                capacity=self.window // MIN_CHUNK + 2,
                stall_timeout=t,
                what=what,
            )
        except StoragedError as exc:
            if isinstance(exc, PeerUnavailable):
                raise
            # The sink refused mid-way: tell the client and end the stream gracefully. Raising
            # would make the handler guard reset the stream, and a reset that arrives in the
            # same read as the refusal discards it: the client saw "stream reset", not why.
            log.info("%s: refused: %s: %s", what, type(exc).__name__, exc)
            await _refuse(stream, session.refuse, exc, t)
        await stream.close()

    async def _serve_fetch(self, source: ChunkSource, stream: Stream) -> None:
        t = self.stall_timeout
        what = f"{fetch_proto.PROTOCOL} from {stream.peer[:16]}"
        session = fetch_proto.FetchServerSession()
        request = None
        while request is None:
            request = session.receive_data(await _read_some(stream, t, what))
        try:
            size = await source.size(request.key)
        except StoragedError as exc:
            await _refuse(stream, session.refuse, exc, t)
            await stream.close()
            return
        meta, length = session.meta(size)
        await stream.write(meta, timeout=t)
        hasher = blake3.blake3()
        flow = session.flow
        if flow is None:
            raise LocalBugError("fetch: no flow after meta")

        async def send_one(chunk: bytes) -> None:
            while flow.allowed() < len(chunk):
                session.receive_data(await _read_some(stream, t, what))
            await stream.write(session.data(chunk), timeout=t)
            hasher.update(chunk)

        start = request.offset
        try:
            await _send_chunks(source, request.key, start, start + length, send_one)
        except StoragedError as exc:
            if isinstance(exc, PeerUnavailable):
                raise
            # The source failed mid-range (a block corrupt on disk, a file gone): say why, as
            # an error frame the client reads in place of the rest, instead of a bare reset.
            log.warning("%s: %s failed mid-range: %s: %s", what, request.key.hex()[:16],
                        type(exc).__name__, exc)
            await _refuse(stream, session.refuse, exc, t)
            await stream.close()
            return
        await stream.write(session.end(hasher.digest()), timeout=t)
        await stream.close()

    # -- client side -------------------------------------------------------------------------

    async def push(
        self,
        peer: str,
        key: bytes,
        source: ChunkSource,
        *,
        digest: bytes | None = None,
        attempts: int = 3,
    ) -> PushResult:
        """Upload object ``key`` from ``source`` to ``peer``; resume where the peer stopped.

        ``digest`` (the object's blake3) is computed from ``source`` when not given.  After a
        broken stream the push is retried up to ``attempts`` times, each retry resuming from
        the offset the provider reports.

        Raises:
            RemoteRejected subclass: the provider refused (busy, integrity, bad_request...).
            ProtocolViolation: the provider broke the protocol.
            PeerUnavailable: the provider stalled or vanished on every attempt.
            NotFound (from ``source``): the object is not held locally.
        """
        size = await source.size(key)
        if digest is None:
            digest = await hash_source(source, key, size)
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                offset = await self._push_once(peer, key, size, digest, source)
                return PushResult(size, offset, attempt)
            except _Progress as progress:
                exc = progress.cause
                if attempt == attempts:
                    raise exc from None
                log.info("push %s to %s broke (%s); resuming", key.hex()[:16], peer[:16], exc)
                await trio.sleep(delay * (0.5 + random.random()))
                delay *= 2
        raise LocalBugError("push: attempts < 1")

    async def _push_once(
        self, peer: str, key: bytes, size: int, digest: bytes, source: ChunkSource
    ) -> int:
        t = self.stall_timeout
        what = f"{push_proto.PROTOCOL} to {peer[:16]}"
        session = push_proto.PushSenderSession(key, size, digest)
        stream: Stream | None = None
        offset = 0
        try:
            stream = await self.node.open_stream(peer, push_proto.PROTOCOL, timeout=t)
            await stream.write(session.offer(), timeout=t)
            while session.flow is None:
                session.receive_data(await _read_some(stream, t, what))
            offset = session.flow.position
            flow = session.flow

            async def send_one(chunk: bytes) -> None:
                while flow.allowed() < len(chunk):
                    session.receive_data(await _read_some(stream, t, what))
                await stream.write(session.data(chunk), timeout=t)

            await _send_chunks(source, key, offset, size, send_one)
            await stream.write(session.end(), timeout=t)
            while not session.finished:
                session.receive_data(await _read_some(stream, t, what))
            await stream.close()
            return offset
        except PeerUnavailable as exc:
            if stream is not None:
                await stream.reset()
            raise _Progress(offset, exc) from exc
        except BaseException:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.reset()
            raise

    async def fetch(
        self,
        peer: str,
        key: bytes,
        consume: Consumer,
        *,
        offset: int = 0,
        length: int | None = None,
        attempts: int = 3,
    ) -> FetchResult:
        """Retrieve ``length`` bytes (None: to the end) of ``key`` from ``peer`` starting at
        ``offset``, calling ``consume(object_offset, data)`` in order.  A broken stream is
        retried from the first missing byte up to ``attempts`` times; a chunk whose
        ``consume`` call was cancelled by the break counts as missing and is delivered again
        (at the same offset), so ``consume`` should write at the offset it is given.

        Raises:
            RemoteNotFound: the provider does not hold ``key``.
            IntegrityError: a range's bytes do not match the provider's end hash.
            ProtocolViolation / PeerUnavailable: as for :meth:`push`.
        """
        pos, remaining = offset, length
        size = -1
        delay = 0.2
        for attempt in range(1, attempts + 1):
            progress = [0]
            try:
                size = await self._fetch_once(peer, key, pos, remaining, consume, progress)
                total = pos + progress[0] - offset
                return FetchResult(size, total, attempt)
            except PeerUnavailable as exc:
                pos += progress[0]
                if remaining is not None:
                    remaining -= progress[0]
                if attempt == attempts:
                    raise
                log.info("fetch %s from %s broke (%s); resuming", key.hex()[:16], peer[:16], exc)
                await trio.sleep(delay * (0.5 + random.random()))
                delay *= 2
        raise LocalBugError("fetch: attempts < 1")

    async def _fetch_once(
        self,
        peer: str,
        key: bytes,
        offset: int,
        length: int | None,
        consume: Consumer,
        progress: list[int],
    ) -> int:
        t = self.stall_timeout
        what = f"{fetch_proto.PROTOCOL} from {peer[:16]}"
        session = fetch_proto.FetchClientSession(key, offset, length, self.window)
        hasher = blake3.blake3()
        size = [0]

        async def on_event(event: Any) -> None:
            if isinstance(event, fetch_proto.Meta):
                size[0] = event.size
            elif isinstance(event, fetch_proto.Data):
                hasher.update(event.data)
                await consume(event.offset, event.data)
                progress[0] += len(event.data)
                credit = session.consumed(len(event.data))
                if credit is not None:
                    await stream.write(credit, timeout=t)
            elif event.digest != hasher.digest():
                raise IntegrityError(f"{what}: range {offset}+{progress[0]} fails its blake3")

        stream = await self.node.open_stream(peer, fetch_proto.PROTOCOL, timeout=t)
        try:
            await stream.write(session.get(), timeout=t)
            await _receive(
                stream,
                session.receive_data,
                on_event,
                terminal=fetch_proto.End,
                capacity=self.window // MIN_CHUNK + 3,
                stall_timeout=t,
                what=what,
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise
        await stream.close()
        return size[0]


class _Progress(Exception):
    """Internal: a push attempt broke after the provider reported ``offset``."""

    def __init__(self, offset: int, cause: PeerUnavailable) -> None:
        super().__init__(str(cause))
        self.offset = offset
        self.cause = cause


__all__ = [
    "FetchResult",
    "PushResult",
    "RemoteIntegrityFailure",
    "Transfers",
    "hash_source",
]
