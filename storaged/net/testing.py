"""An in-process cluster of real libp2p nodes on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from storaged.net.host import Node, NodeConfig


@asynccontextmanager
async def cluster(
    n: int,
    *,
    setup: Callable[[Node], None] | None = None,
    connect: bool = True,
    timeout: float = 30.0,
) -> AsyncIterator[list[Node]]:
    """Start ``n`` nodes on ``/ip4/127.0.0.1/tcp/0``; yield once all listen (and, with
    ``connect``, every pair is connected).  ``setup(node)`` runs before each node starts, to
    register handlers.  Leaving the block closes every host.

    Raises:
        trio.TooSlowError: the cluster did not come up within ``timeout`` seconds.
    """
    nodes = [Node(NodeConfig()) for _ in range(n)]
    async with trio.open_nursery() as nursery:
        with trio.fail_after(timeout):
            for node in nodes:
                if setup:
                    setup(node)
                await nursery.start(node.run)
            if connect:
                async with trio.open_nursery() as dials:
                    for i, a in enumerate(nodes):
                        for b in nodes[i + 1 :]:
                            dials.start_soon(a.connect, b.addrs[0])
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()
