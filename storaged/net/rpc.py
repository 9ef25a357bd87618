"""Typed request/response over reusable libp2p streams: ``/storaged/{deal,query,sync}/1.0.0``.

Messages on such a stream (framing in :mod:`storaged.net.wire`)::

    code  name      codec  body
    0x01  request   CBOR   {"id": uint, "body": <any CBOR>}            ≤ protocol.max_request
    0x02  response  CBOR   {"id": uint, "body": <any CBOR>}            ≤ protocol.max_response
    0x03  error     CBOR   {"id": uint, "code": text, "message": text} ≤ 4 KiB

A stream carries any number of requests, strictly one after another: the client sends a
request, the server answers it (response or error, same id), then the next may follow.  Reusing
streams is what makes small requests fast (a new stream costs a multistream negotiation round
trip).  Error codes (``not_found``, ``bad_request``, ``busy``, ``integrity``, ``internal``,
``rejected``) become the :mod:`storaged.net.errors` classes on the caller's side.

The protocol logic lives in the sans-IO :class:`ClientSession` / :class:`ServerSession`; the
:class:`Rpc` service is the trio shell that moves their bytes over :class:`Stream` objects.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from storaged.errors import (
    IntegrityError,
    LocalBugError,
    NotFound,
    PeerUnavailable,
    ProtocolViolation,
    ResourceError,
    StoragedError,
    UserError,
)
from storaged.net.errors import ERROR_CLASSES, DeadlineExceeded, RemoteRejected, StreamBroken
from storaged.net.host import Node
from storaged.net.stream import Stream
from storaged.net.wire import Codec, FrameDecoder, MessageTable, MessageType, require

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 4096
READ_SIZE = 1 << 16


@dataclass(frozen=True)
class RpcProtocol:
    """A request/response protocol: its id, message size limits and retry safety.

    ``idempotent`` protocols (reads) are retried with backoff when the peer breaks off;
    others (deal proposals) are sent once, since a retry could act twice.
    """

    protocol_id: str
    max_request: int
    max_response: int
    idempotent: bool
    handler_timeout: float = 30.0

    def table(self) -> MessageTable:
        return MessageTable(
            self.protocol_id,
            [
                MessageType(0x01, "request", Codec.CBOR, self.max_request),
                MessageType(0x02, "response", Codec.CBOR, self.max_response),
                MessageType(0x03, "error", Codec.CBOR, MAX_ERROR_BODY),
            ],
        )


DEAL = RpcProtocol("/storaged/deal/1.0.0", 1 << 20, 1 << 20, idempotent=False)  # manifests
QUERY = RpcProtocol("/storaged/query/1.0.0", 16 << 10, 4 << 20, idempotent=True)
SYNC = RpcProtocol("/storaged/sync/1.0.0", 16 << 10, 16 << 20, idempotent=True)

RequestHandler = Callable[[str, Any], Awaitable[Any]]
"""``handler(peer_id, request_body) -> response_body``; raise a StoragedError to refuse."""


def error_code_for(exc: BaseException) -> str:
    """The wire error code a handler's exception maps to."""
    if isinstance(exc, RemoteRejected):
        return exc.code
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, ResourceError):
        return "busy"
    if isinstance(exc, UserError | ProtocolViolation):
        return "bad_request"
    if isinstance(exc, IntegrityError):
        return "integrity"
    if isinstance(exc, StoragedError):
        return "rejected"
    return "internal"


# -- sans-IO sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    id: int
    body: Any


@dataclass(frozen=True)
class Response:
    id: int
    body: Any


class ClientSession:
    """Client half of one request/response stream, without I/O."""

    def __init__(self, protocol: RpcProtocol) -> None:
        self.protocol = protocol
        self._table = protocol.table()
        self._decoder = FrameDecoder(self._table)
        self._next_id = 1
        self._pending: int | None = None

    @property
    def idle(self) -> bool:
        """No request awaits its answer and no stray bytes are buffered."""
        return self._pending is None and self._decoder.buffered == 0

    def send_request(self, body: Any) -> bytes:
        """Bytes to send for a new request.

        Raises:
            LocalBugError: a request is still pending, or the body is too large.
        """
        if self._pending is not None:
            raise LocalBugError("request sent before the previous one was answered")
        rid = self._next_id
        self._next_id += 1
        frame = self._table.encode("request", {"id": rid, "body": body})
        self._pending = rid
        return frame

    def receive_data(self, data: bytes) -> Response | None:
        """Feed received bytes; return the response once complete.

        Raises:
            ProtocolViolation: malformed frame, a frame with no request pending, or a wrong id.
            RemoteRejected (subclass by code): the server answered with an error.
        """
        self._decoder.feed(data)
        frame = self._decoder.next_frame()
        if frame is None:
            return None
        what = f"{self.protocol.protocol_id} {frame.name}"
        rid = require(frame.body, "id", int, what)
        if self._pending is None or rid != self._pending or frame.name == "request":
            raise ProtocolViolation(f"{what}: unexpected (id {rid}, pending {self._pending})")
        if self._decoder.buffered:
            raise ProtocolViolation(f"{what}: extra bytes after the answer")
        self._pending = None
        if frame.name == "error":
            code = require(frame.body, "code", str, what)
            message = require(frame.body, "message", str, what)
            raise ERROR_CLASSES.get(code, RemoteRejected)(f"peer refused ({code}): {message}")
        if "body" not in frame.body:
            raise ProtocolViolation(f"{what}: no body")
        return Response(rid, frame.body["body"])


class ServerSession:
    """Server half of one request/response stream, without I/O."""

    def __init__(self, protocol: RpcProtocol) -> None:
        self.protocol = protocol
        self._table = protocol.table()
        self._decoder = FrameDecoder(self._table)
        self._pending: int | None = None

    def receive_data(self, data: bytes) -> Request | None:
        """Feed received bytes; return the next request once complete.

        Raises:
            ProtocolViolation: malformed frame, anything but a request, or a request sent
                while the previous one is unanswered.
        """
        self._decoder.feed(data)
        return self.next_request()

    def next_request(self) -> Request | None:
        """A complete request already buffered, if any (same errors as receive_data)."""
        if self._pending is not None:
            if self._decoder.buffered:
                raise ProtocolViolation(f"{self.protocol.protocol_id}: pipelined request")
            return None
        frame = self._decoder.next_frame()
        if frame is None:
            return None
        what = f"{self.protocol.protocol_id} {frame.name}"
        if frame.name != "request":
            raise ProtocolViolation(f"{what}: a client may only send requests")
        rid = require(frame.body, "id", int, what)
        if rid < 0 or "body" not in frame.body:
            raise ProtocolViolation(f"{what}: bad id or no body")
        self._pending = rid
        return Request(rid, frame.body["body"])

    @property
    def mid_frame(self) -> bool:
        """Part of a frame is buffered (an EOF now means the peer broke off)."""
        return self._decoder.buffered > 0

    def respond(self, body: Any) -> bytes:
        """Bytes answering the pending request.

        Raises:
            LocalBugError: no request is pending, or the response exceeds the protocol limit.
        """
        rid = self._take_pending()
        return self._table.encode("response", {"id": rid, "body": body})

    def refuse(self, code: str, message: str) -> bytes:
        """Bytes answering the pending request with an error code."""
        rid = self._take_pending()
        return self._table.encode("error", {"id": rid, "code": code, "message": message[:1000]})

    def _take_pending(self) -> int:
        if self._pending is None:
            raise LocalBugError("answer without a pending request")
        rid, self._pending = self._pending, None
        return rid


# -- trio shell --------------------------------------------------------------------------------


@dataclass
class _Pooled:
    stream: Stream
    session: ClientSession
    last_used: float


class Rpc:
    """Request/response service on a :class:`Node`: serve protocols, call peers.

    Idle client streams are kept per (peer, protocol) and reused; the server closes a stream
    idle for ``server_idle`` seconds, and the client stops reusing a stream well before that,
    so a reused stream is never one the server is closing.
    """

    def __init__(self, node: Node, *, server_idle: float = 60.0, max_concurrent: int = 64) -> None:
        """``max_concurrent`` bounds handler calls running at once across all served
        protocols; a request beyond it is answered ``busy`` without running the handler."""
        self.node = node
        self.server_idle = server_idle
        self.max_concurrent = max_concurrent
        self.running = 0
        self._client_reuse = server_idle / 3
        self._pool: dict[tuple[str, str], list[_Pooled]] = {}

    # server side

    def serve(self, protocol: RpcProtocol, handler: RequestHandler) -> None:
        """Answer ``protocol`` requests with ``handler`` (any number per stream)."""

        async def on_stream(stream: Stream) -> None:
            await self._serve_stream(protocol, handler, stream)

        self.node.set_handler(protocol.protocol_id, on_stream)

    async def _serve_stream(
        self, protocol: RpcProtocol, handler: RequestHandler, stream: Stream
    ) -> None:
        session = ServerSession(protocol)
        while True:
            request = session.next_request()
            while request is None:
                data = await stream.read(READ_SIZE, timeout=self.server_idle)
                if not data:
                    if session.mid_frame:
                        raise StreamBroken(f"{protocol.protocol_id}: EOF inside a frame")
                    await stream.close()
                    return
                request = session.receive_data(data)
            if self.running >= self.max_concurrent:
                await stream.write(session.refuse("busy", "server busy"), timeout=5)
                continue
            # One deadline for the handler and the write of its answer (a cancel scope per
            # request, not two: they cost ~10 us each on this hot path).
            phase: str = "handler"
            with trio.move_on_after(protocol.handler_timeout) as scope:
                self.running += 1
                try:
                    out = session.respond(await handler(stream.peer, request.body))
                except Exception as exc:
                    out = self._refusal(session, exc, stream.peer)
                finally:
                    self.running -= 1
                phase = "answer"
                await stream.write_in_scope(out)
            if scope.cancelled_caught:
                if phase == "answer":
                    raise DeadlineExceeded(f"{protocol.protocol_id}: answer not taken in time")
                busy = f"handler took over {protocol.handler_timeout:g}s"
                await stream.write(session.refuse("busy", busy), timeout=5)

    def _refusal(self, session: ServerSession, exc: Exception, peer: str) -> bytes:
        """The error answer for a handler's exception (an unexpected one is logged)."""
        code = error_code_for(exc)
        if code == "internal":
            log.exception("%s handler failed for %s", session.protocol.protocol_id, peer)
            return session.refuse(code, "internal error")
        return session.refuse(code, str(exc))

    # client side

    async def request(
        self,
        peer: str,
        protocol: RpcProtocol,
        body: Any,
        *,
        timeout: float = 10.0,
        attempts: int | None = None,
    ) -> Any:
        """Send ``body`` to ``peer`` and return the response body.

        Idempotent protocols are tried up to ``attempts`` times (default 3) with jittered
        exponential backoff when the peer is unreachable or breaks off; ``timeout`` bounds each
        attempt.  A refusal (error code) is never retried.

        Raises:
            RemoteRejected subclass: the peer answered with an error code.
            ProtocolViolation: the peer's answer broke the protocol (the stream is dropped).
            PeerUnavailable (DeadlineExceeded / StreamBroken): no answer after all attempts.
        """
        tries = attempts if attempts is not None else (3 if protocol.idempotent else 1)
        delay = 0.1
        for attempt in range(1, tries + 1):
            try:
                return await self._request_once(peer, protocol, body, timeout)
            except PeerUnavailable as exc:
                if attempt == tries:
                    raise
                log.debug(
                    "%s to %s failed (%s); retry %d", protocol.protocol_id, peer, exc, attempt
                )
                await trio.sleep(delay * (0.5 + random.random()))
                delay *= 2
        raise LocalBugError("unreachable: attempts < 1")

    async def _request_once(
        self, peer: str, protocol: RpcProtocol, body: Any, timeout: float
    ) -> Any:
        with trio.move_on_after(timeout):
            return await self._exchange(peer, protocol, body, timeout)
        raise DeadlineExceeded(f"{protocol.protocol_id} to {peer}: no answer in {timeout:g}s")

    async def _exchange(self, peer: str, protocol: RpcProtocol, body: Any, timeout: float) -> Any:
        pooled = await self._checkout(peer, protocol, timeout)
        try:
            # _request_once's deadline bounds the whole exchange: no scope per read/write.
            await pooled.stream.write_in_scope(pooled.session.send_request(body))
            while True:
                data = await pooled.stream.read_in_scope(READ_SIZE)
                if not data:
                    raise StreamBroken(f"{protocol.protocol_id}: {peer} closed before answering")
                response = pooled.session.receive_data(data)
                if response is not None:
                    break
        except RemoteRejected:
            self._checkin(peer, protocol, pooled)  # a clean refusal leaves the stream usable
            raise
        except BaseException:
            with trio.CancelScope(shield=True):
                await pooled.stream.reset()
            raise
        self._checkin(peer, protocol, pooled)
        return response.body

    async def _checkout(self, peer: str, protocol: RpcProtocol, timeout: float) -> _Pooled:
        idle = self._pool.get((peer, protocol.protocol_id), [])
        now = trio.current_time()
        while idle:
            pooled = idle.pop()
            if not pooled.stream.reusable:  # died idle, e.g. with its connection
                await pooled.stream.reset()
                continue
            if now - pooled.last_used < self._client_reuse:
                return pooled
            await pooled.stream.close()
        stream = await self.node.open_stream(peer, protocol.protocol_id, timeout=timeout)
        return _Pooled(stream, ClientSession(protocol), now)

    def _checkin(self, peer: str, protocol: RpcProtocol, pooled: _Pooled) -> None:
        if not pooled.session.idle:
            return
        pooled.last_used = trio.current_time()
        idle = self._pool.setdefault((peer, protocol.protocol_id), [])
        if len(idle) < 8:
            idle.append(pooled)

    async def close_idle(self) -> None:
        """Close every pooled stream (e.g. before shutdown or after a peer is banned)."""
        pools, self._pool = self._pool, {}
        for idle in pools.values():
            for pooled in idle:
                await pooled.stream.close()


__all__ = [
    "DEAL",
    "QUERY",
    "SYNC",
    "ClientSession",
    "RequestHandler",
    "Rpc",
    "RpcProtocol",
    "ServerSession",
]
