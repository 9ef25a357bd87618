"""Finding peers: bootstrap multiaddrs from config, then the chain's provider registry.

Bootstrap addresses (``NodeConfig.bootstrap``, full ``/ip4/../tcp/../p2p/<id>`` multiaddrs) are
dialed by :meth:`Node.run` at start.  After that the chain is the directory: every registered
provider publishes its peer id and multiaddrs on chain, and the node feeds those records here
whenever the registry changes (:meth:`Directory.update`).  Dialing is lazy: ``open_stream`` to a
known peer id dials it with the recorded addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from storaged.errors import ConfigError, PeerUnavailable
from storaged.net.host import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerRecord:
    """Where a peer listens, as the chain's provider registry states it."""

    peer_id: str
    addrs: tuple[str, ...]


class Directory:
    """The peers this node knows how to reach."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.known: dict[str, PeerRecord] = {}

    def update(self, records: Iterable[PeerRecord]) -> int:
        """Learn (or refresh) peers from registry records; return how many were accepted.

        Malformed records (bad peer id or multiaddr: the chain stores what providers claim)
        are skipped with a log line, never raised: one bad registration must not stop
        discovery of the rest.
        """
        accepted = 0
        for rec in records:
            if rec.peer_id == self.node.peer_id:
                continue
            try:
                self.node.add_peer_addrs(rec.peer_id, rec.addrs)
            except ConfigError as exc:
                log.info("skipping registry record for %s: %s", rec.peer_id, exc)
                continue
            self.known[rec.peer_id] = rec
            accepted += 1
        return accepted

    async def connect_some(self, want: int, *, timeout: float = 10.0) -> list[str]:
        """Dial known peers (concurrently) until ``want`` are connected or all were tried;
        return the peers connected now.  Unreachable peers are logged and skipped."""
        connected = set(self.node.connected_peers())
        candidates = [p for p in self.known if p not in connected]

        async def dial(peer: str) -> None:
            try:
                await self.node.connect(peer, timeout=timeout)
            except PeerUnavailable as exc:
                log.info("registry peer %s unreachable: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in candidates[: max(0, want - len(connected))]:
                nursery.start_soon(dial, peer)
        return self.node.connected_peers()
