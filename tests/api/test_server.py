"""The local API over a real socket: auth, routes, errors, limits, a slow client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry, Counter

from storaged.api import client
from storaged.api.server import READ_TIMEOUT, serve_api
from storaged.api.token import ADDR_FILE, TOKEN_FILE, read_token
from storaged.config import ApiConfig, Config
from storaged.errors import UserError


class Provider:
    """A data-returning object with the daemon's API surface (the API is the unit here)."""

    def __init__(self) -> None:
        self.metrics = CollectorRegistry()
        self.requests = Counter("test_requests", "requests seen", registry=self.metrics)
        self.price = 5
        self.free = 1000

    def status(self) -> dict[str, Any]:
        self.requests.inc()
        return {"peer_id": "12D3Koo", "height": 7}

    def deals(self) -> dict[str, Any]:
        return {"deals": [{"deal": 1, "state": "active"}]}

    def sectors(self) -> dict[str, Any]:
        return {"sectors": []}

    def proving(self) -> dict[str, Any]:
        raise RuntimeError("prover exploded")

    def wallet(self) -> dict[str, Any]:
        return {"balance": 10, "escrow": self.free}

    async def set_ask(self, price: int | None = None,
                      collateral: int | None = None) -> dict[str, Any]:
        if price is not None and price < 0:
            raise UserError(f"price must be a non-negative integer, got {price}")
        if price is not None:
            self.price = price
        return {"price": self.price, "collateral": collateral}

    async def withdraw(self, amount: int) -> dict[str, Any]:
        if amount > self.free:
            raise UserError(f"cannot withdraw {amount}: only {self.free} escrow is free")
        self.free -= amount
        return {"amount": amount}


async def _start(nursery: trio.Nursery, home: Path) -> tuple[Provider, str]:
    provider = Provider()
    cfg = Config(api=ApiConfig(host="127.0.0.1", port=0))
    addr = await nursery.start(serve_api, provider, home, cfg)
    return provider, addr


async def _call(home: Path, method: str, path: str, body: Any = None) -> Any:
    return await trio.to_thread.run_sync(lambda: client.request(home, method, path, body,
                                                                timeout=10))


async def _raw(addr: str, data: bytes) -> bytes:
    host, _, port = addr.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.fail_after(READ_TIMEOUT + 5):
            while chunk := await stream.receive_some(65536):
                out += chunk
    return out


async def test_routes_token_and_errors(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        provider, addr = await _start(nursery, tmp_path)
        assert (tmp_path / ADDR_FILE).read_text().strip() == addr
        assert (tmp_path / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
        assert await _call(tmp_path, "GET", "/v1/status") == {"peer_id": "12D3Koo", "height": 7}
        assert (await _call(tmp_path, "GET", "/v1/deals"))["deals"][0]["state"] == "active"
        assert await _call(tmp_path, "GET", "/v1/wallet") == {"balance": 10, "escrow": 1000}
        assert (await _call(tmp_path, "POST", "/v1/ask", {"price": 9}))["price"] == 9
        assert provider.price == 9
        assert await _call(tmp_path, "POST", "/v1/withdraw", {"amount": 400}) == {"amount": 400}
        metrics = await _call(tmp_path, "GET", "/metrics")
        assert "test_requests_total 1.0" in metrics

        with pytest.raises(client.ApiError) as info:
            await _call(tmp_path, "POST", "/v1/withdraw", {"amount": 601})
        assert info.value.error_class == "UserError" and info.value.exit_code == 2
        assert "only 600 escrow is free" in str(info.value)
        assert provider.free == 600
        with pytest.raises(client.ApiError, match="must be an integer"):
            await _call(tmp_path, "POST", "/v1/ask", {"price": "cheap"})
        with pytest.raises(client.ApiError, match="unknown field"):
            await _call(tmp_path, "POST", "/v1/ask", {"prise": 3})
        with pytest.raises(client.ApiError) as info:
            await _call(tmp_path, "GET", "/v1/proving")  # a bug: 500, daemon keeps serving
        assert info.value.error_class == "LocalBugError" and "prover exploded" in str(info.value)
        with pytest.raises(client.ApiError, match="no such route"):
            await _call(tmp_path, "GET", "/v1/nothing")
        with pytest.raises(client.ApiError, match="not allowed"):
            await _call(tmp_path, "POST", "/v1/status", {})

        # No or a wrong token: 401 with the JSON error body.
        for auth in (b"", b"Authorization: Bearer nope\r\n"):
            out = await _raw(addr, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + auth +
                             b"Connection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 401 ")
            body = json.loads(out.split(b"\r\n\r\n", 1)[1])
            assert body["error"]["class"] == "UserError" and "token" in body["error"]["message"]
        assert await _call(tmp_path, "GET", "/v1/status")  # still serving
        nursery.cancel_scope.cancel()


async def test_malformed_oversized_and_slow_clients(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        _, addr = await _start(nursery, tmp_path)
        token = read_token(tmp_path).encode()
        out = await _raw(addr, b"NOT HTTP AT ALL\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 ")
        assert b"ProtocolViolation" in out
        big = b"x" * (200 * 1024)
        out = await _raw(addr, b"POST /v1/ask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                         token + b"\r\nContent-Length: " + str(len(big)).encode() +
                         b"\r\n\r\n")  # refused on the head: the body is never read
        assert out.startswith(b"HTTP/1.1 413 ")
        out = await _raw(addr, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" +
                         b"X-Pad: " + b"a" * (64 * 1024) + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 431 ") or out.startswith(b"HTTP/1.1 400 ")

        # A client that sends half a request and stalls is cut off after READ_TIMEOUT, while
        # another client is served meanwhile.
        host, _, port = addr.rpartition(":")
        stalled = await trio.open_tcp_stream(host, int(port))
        await stalled.send_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        assert await _call(tmp_path, "GET", "/v1/status")
        with trio.fail_after(READ_TIMEOUT + 5):
            out = b""
            while chunk := await stalled.receive_some(65536):
                out += chunk
        assert out.startswith(b"HTTP/1.1 408 ")
        await stalled.aclose()
        nursery.cancel_scope.cancel()


async def test_not_running(tmp_path: Path) -> None:
    with pytest.raises(client.NotRunning, match="storaged is not running at"):
        await _call(tmp_path, "GET", "/v1/status")
    # A stale address file (the daemon died): still "not running", not a traceback.
    async with trio.open_nursery() as nursery:
        await _start(nursery, tmp_path)
        nursery.cancel_scope.cancel()
    with pytest.raises(client.NotRunning, match="start it with `storaged start`"):
        await _call(tmp_path, "GET", "/v1/status")
