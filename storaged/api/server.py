"""The local HTTP/1.1 API: h11 over trio sockets, bearer token, JSON, Prometheus ``/metrics``.

Listens on ``[api] host:port`` (loopback by default; port 0 picks a free one) and writes the
bound ``host:port`` to ``home/api.addr`` once listening.  Every request needs
``Authorization: Bearer <home/api.token>``.  A client that is slow (``READ_TIMEOUT`` per request
head+body), sends more than ``MAX_BODY`` / ``MAX_HEAD`` bytes, or speaks malformed HTTP gets an
error answer (when possible) and is disconnected; it costs the daemon one task and a bounded
buffer, never an exception.  At most ``MAX_CONNECTIONS`` connections are served at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h11
import trio

from storaged.api.routes import DaemonApi, Reply, dispatch, json_reply
from storaged.api.token import ensure_token, token_matches, write_addr
from storaged.config import Config
from storaged.errors import ResourceError

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0  # seconds for one request (head and body) to arrive
HANDLER_TIMEOUT = 120.0  # seconds for a route (set_ask/withdraw wait on the chain)
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may sit between requests
MAX_CONNECTIONS = 64
SERVER = b"storaged"


class _Reject(Exception):
    """The request cannot be served; answer ``reply`` and close."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _error(status: int, cls: str, message: str, code: int) -> Reply:
    return json_reply(status, {"error": {"class": cls, "message": message, "exit_code": code}})


async def serve_api(daemon: DaemonApi, home: Path, config: Config, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the API until cancelled; ``task_status.started("host:port")`` once listening.

    Raises:
        ResourceError: the address cannot be bound, or the token/address file cannot be
            written.
    """
    token = ensure_token(home)
    host, port = config.api.host, config.api.port
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ResourceError(f"cannot listen for the API on {host}:{port}: {exc}") from exc
    sock = listeners[0].socket
    bound_host, bound_port = sock.getsockname()[:2]
    addr = f"{bound_host}:{bound_port}"
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        async with limiter:
            await _serve_connection(stream, daemon, token)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        write_addr(home, addr)
        log.info("API listening on http://%s", addr)
        task_status.started(addr)


async def _serve_connection(stream: trio.SocketStream, daemon: DaemonApi, token: str) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        while True:
            try:
                request, body = await _read_request(conn, stream)
            except _Reject as rej:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, stream, rej.reply, close=True)
                    await _linger(stream)
                return
            if request is None:
                return
            auth = dict(request.headers).get(b"authorization")
            if not token_matches(token, auth):
                reply = _error(401, "UserError", "missing or wrong API token (Authorization: "
                               "Bearer <home/api.token>)", 2)
            else:
                with trio.move_on_after(HANDLER_TIMEOUT) as scope:
                    reply = await dispatch(daemon, request.method.decode(),
                                           request.target.decode("ascii", "replace"), body)
                if scope.cancelled_caught:
                    reply = _error(504, "PeerUnavailable", "the daemon did not answer in "
                                   f"{HANDLER_TIMEOUT:.0f} s", 3)
            await _send(conn, stream, reply, close=False)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        return  # the client went away or broke the exchange: nothing more to say to it
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close and discard what the client still sends (bounded in bytes and time), so
    closing with unread input does not reset the connection before it reads the answer."""
    await stream.send_eof()
    budget = MAX_BODY * 4
    with trio.move_on_after(1.0):
        while budget > 0:
            data = await stream.receive_some(16384)
            if not data:
                return
            budget -= len(data)


async def _read_request(conn: h11.Connection, stream: trio.SocketStream,
                        ) -> tuple[h11.Request | None, bytes]:
    """The next request and its body, or (None, b"") at a clean end of the connection.

    Raises:
        _Reject: too slow, too large or malformed.
    """
    request: h11.Request | None = None
    body = bytearray()
    # Waiting for a kept-alive client's next request may take IDLE_TIMEOUT; once its first
    # bytes arrive, the whole request must follow within READ_TIMEOUT (no slow drip).
    deadline = trio.current_time() + IDLE_TIMEOUT
    started = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Reject(_error(exc.error_status_hint, "ProtocolViolation",
                                 f"malformed HTTP request: {exc}", 3)) from exc
        if event is h11.NEED_DATA:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise _Reject(_error(408, "PeerUnavailable", "request not received in time", 3))
            data = b""
            with trio.move_on_after(remaining):
                data = await stream.receive_some(16384)
                if data and not started:
                    started = True
                    deadline = min(deadline, trio.current_time() + READ_TIMEOUT)
                conn.receive_data(data)
                continue
            raise _Reject(_error(408, "PeerUnavailable", "request not received in time", 3))
        if isinstance(event, h11.ConnectionClosed):
            return None, b""
        if isinstance(event, h11.Request):
            request = event
            length = dict(event.headers).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                raise _Reject(_error(413, "UserError", f"request body over {MAX_BODY} bytes", 2))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _Reject(_error(413, "UserError", f"request body over {MAX_BODY} bytes", 2))
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)


async def _send(conn: h11.Connection, stream: trio.SocketStream, reply: Reply, *,
                close: bool) -> None:
    headers = [(b"content-type", reply.content_type.encode()),
               (b"content-length", str(len(reply.body)).encode()), (b"server", SERVER)]
    if close:
        headers.append((b"connection", b"close"))
    data = conn.send(h11.Response(status_code=reply.status, headers=headers))
    data = (data or b"") + (conn.send(h11.Data(data=reply.body)) or b"")
    data += conn.send(h11.EndOfMessage()) or b""
    with trio.move_on_after(READ_TIMEOUT):
        await stream.send_all(data)
        return
    raise trio.BrokenResourceError("client does not read its answer")

