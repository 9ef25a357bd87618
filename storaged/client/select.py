"""Provider choice for a put: ask every registered provider, keep those whose terms fit.

:func:`eligible` is pure (asks in, ordered candidates out), so the policy is tested without a
network: price per GiB per epoch at most ``price_max``, free capacity and maximum deal at
least the piece's padded size, the duration inside the provider's bounds; cheapest first,
then most free space, then peer id (a stable order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from storaged.errors import ProtocolViolation, RemoteError
from storaged.net.rpc import DEAL, Rpc

log = logging.getLogger(__name__)

ASK_FIELDS: dict[str, type] = {"provider": bytes, "peer_id": str, "price": int,
                               "min_duration": int, "max_duration": int, "max_size": int,
                               "free": int, "collateral": int}


@dataclass(frozen=True)
class Ask:
    """A provider's answer to ``ask`` (contracts section 3)."""

    provider: bytes
    peer_id: str
    price: int
    min_duration: int
    max_duration: int
    max_size: int
    free: int
    collateral: int
    min_start_delay: int = 0

    @classmethod
    def parse(cls, peer: str, body: Any) -> Ask:
        """Raises ProtocolViolation: a field is missing, mistyped, or the peer id differs."""
        if not isinstance(body, dict):
            raise ProtocolViolation(f"ask from {peer}: not a map")
        for name, kind in ASK_FIELDS.items():
            if type(body.get(name)) is not kind:
                raise ProtocolViolation(f"ask from {peer}: {name!r} must be {kind.__name__}")
        if body["peer_id"] != peer:
            raise ProtocolViolation(f"ask from {peer} names peer {body['peer_id']}")
        if len(body["provider"]) != 32:
            raise ProtocolViolation(f"ask from {peer}: provider key must be 32 bytes")
        delay = body.get("min_start_delay", 0)
        if type(delay) is not int or delay < 0:
            raise ProtocolViolation(f"ask from {peer}: bad min_start_delay")
        return cls(**{name: body[name] for name in ASK_FIELDS}, min_start_delay=delay)


def eligible(asks: list[Ask], *, size: int, duration: int, price_max: int) -> list[Ask]:
    """The asks that accept a deal of ``size`` bytes for ``duration`` epochs at a price per
    GiB per epoch of at most ``price_max``, best first."""
    fit = [a for a in asks
           if a.price <= price_max and a.free >= size and a.max_size >= size
           and a.min_duration <= duration <= a.max_duration]
    return sorted(fit, key=lambda a: (a.price, -a.free, a.peer_id))


def why_not(ask: Ask, *, size: int, duration: int, price_max: int) -> str:
    """Why :func:`eligible` left ``ask`` out (for the error when too few fit)."""
    if ask.price > price_max:
        return f"price {ask.price} > price-max {price_max}"
    if ask.free < size or ask.max_size < size:
        return f"free {ask.free} / max deal {ask.max_size} < piece {size} bytes"
    return f"duration {duration} outside [{ask.min_duration}, {ask.max_duration}]"


async def gather_asks(rpc: Rpc, peers: list[str], *, timeout: float = 10.0
                      ) -> tuple[list[Ask], dict[str, str]]:
    """Ask every peer in parallel; return (asks, peer -> why it gave none)."""
    asks: list[Ask] = []
    failed: dict[str, str] = {}

    async def one(peer: str) -> None:
        try:  # a read: a stream that breaks off is retried once, within the same deadline
            with trio.fail_after(timeout):
                asks.append(Ask.parse(peer, await rpc.request(peer, DEAL, {"op": "ask"},
                                                              timeout=timeout, attempts=2)))
        except (RemoteError, trio.TooSlowError) as exc:
            log.info("no ask from %s: %s", peer, exc)
            failed[peer] = str(exc) or type(exc).__name__

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(one, peer)
    return asks, failed
