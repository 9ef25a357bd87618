"""Routing of the local API: method + path + JSON body -> the daemon's snapshot methods.

Every answer is JSON except ``/metrics`` (Prometheus text).  A failure is a JSON body
``{"error": {"class": <error class>, "message": <text>, "exit_code": <int>}}`` with a status
that says whose fault it was (400 bad input, 404 unknown route, 502 a peer or the chain, 503
this host lacks a resource, 500 a bug).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest

from storaged.errors import (
    LocalBugError,
    NotFound,
    RemoteError,
    ResourceError,
    StoragedError,
    UserError,
)

log = logging.getLogger(__name__)

JSON = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DaemonApi(Protocol):
    """What the API serves (implemented by :class:`storaged.node.daemon.Daemon`)."""

    metrics: CollectorRegistry

    def status(self) -> dict[str, Any]: ...
    def deals(self) -> dict[str, Any]: ...
    def sectors(self) -> dict[str, Any]: ...
    def proving(self) -> dict[str, Any]: ...
    def wallet(self) -> dict[str, Any]: ...
    async def set_ask(self, price: int | None = None,
                      collateral: int | None = None) -> dict[str, Any]: ...
    async def withdraw(self, amount: int) -> dict[str, Any]: ...


class Reply:
    """An HTTP answer: status, content type, body bytes."""

    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body


def json_reply(status: int, obj: Any) -> Reply:
    """A JSON answer (keys sorted, so answers diff cleanly)."""
    return Reply(status, JSON, json.dumps(obj, sort_keys=True).encode())


def error_reply(exc: BaseException) -> Reply:
    """The JSON error body for ``exc`` with the status for its place in the error tree."""
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, UserError):
        status = 400
    elif isinstance(exc, RemoteError):
        status = 502
    elif isinstance(exc, ResourceError):
        status = 503
    else:
        status = 500
    code = exc.exit_code if isinstance(exc, StoragedError) else LocalBugError.exit_code
    return json_reply(status, {"error": {"class": type(exc).__name__, "message": str(exc),
                                         "exit_code": code}})


def _body_object(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"request body is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise UserError("request body must be a JSON object")
    return obj


def _int_field(obj: dict[str, Any], name: str, required: bool) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise UserError(f"field {name!r} is required")
        return None
    if type(value) is not int:
        raise UserError(f"field {name!r} must be an integer, got {value!r}")
    return value


async def _ask(daemon: DaemonApi, obj: dict[str, Any]) -> Any:
    unknown = set(obj) - {"price", "collateral"}
    if unknown:
        raise UserError(f"unknown field(s) {sorted(unknown)}; expected price, collateral")
    price = _int_field(obj, "price", False)
    collateral = _int_field(obj, "collateral", False)
    if price is None and collateral is None:
        raise UserError("give price and/or collateral")
    return await daemon.set_ask(price=price, collateral=collateral)


async def _withdraw(daemon: DaemonApi, obj: dict[str, Any]) -> Any:
    unknown = set(obj) - {"amount"}
    if unknown:
        raise UserError(f"unknown field(s) {sorted(unknown)}; expected amount")
    amount = _int_field(obj, "amount", True)
    assert amount is not None
    return await daemon.withdraw(amount)


_GETS: dict[str, Callable[[DaemonApi], dict[str, Any]]] = {
    "/v1/status": lambda d: d.status(),
    "/v1/deals": lambda d: d.deals(),
    "/v1/sectors": lambda d: d.sectors(),
    "/v1/proving": lambda d: d.proving(),
    "/v1/wallet": lambda d: d.wallet(),
}
_POSTS: dict[str, Callable[[DaemonApi, dict[str, Any]], Awaitable[Any]]] = {
    "/v1/ask": _ask,
    "/v1/withdraw": _withdraw,
}


async def dispatch(daemon: DaemonApi, method: str, target: str, body: bytes) -> Reply:
    """Answer one authenticated request; every failure becomes an error reply (never raised:
    the connection loop only moves bytes)."""
    path = target.split("?", 1)[0]
    try:
        if path == "/metrics":
            if method != "GET":
                return _not_allowed(method, path)
            return Reply(200, METRICS_TYPE, generate_latest(daemon.metrics))
        if path in _GETS:
            if method != "GET":
                return _not_allowed(method, path)
            return json_reply(200, _GETS[path](daemon))
        if path in _POSTS:
            if method != "POST":
                return _not_allowed(method, path)
            return json_reply(200, await _POSTS[path](daemon, _body_object(body)))
        return json_reply(404, {"error": {"class": "NotFound", "message":
                                          f"no such route {path!r}", "exit_code": 5}})
    except StoragedError as exc:
        return error_reply(exc)
    except Exception as exc:  # a bug in a snapshot method must not take the daemon down
        log.exception("API %s %s failed", method, path)
        return error_reply(LocalBugError(f"{type(exc).__name__}: {exc}"))


def _not_allowed(method: str, path: str) -> Reply:
    return json_reply(405, {"error": {"class": "UserError", "exit_code": 2,
                                      "message": f"{method} is not allowed on {path}"}})
