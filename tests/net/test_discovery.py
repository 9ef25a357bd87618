"""Bootstrap from config and peers from the provider registry."""

from __future__ import annotations

import trio

from storaged.net.discovery import Directory, PeerRecord
from storaged.net.host import Node, NodeConfig
from storaged.net.testing import cluster


async def test_bootstrap_peer_is_dialed_at_start() -> None:
    async with cluster(1) as (seed,):
        node = Node(NodeConfig(bootstrap=(seed.addrs[0],)))
        connected = trio.Event()
        node.on_peer_connected(lambda peer: connected.set() if peer == seed.peer_id else None)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(node.run)
                await connected.wait()
            assert seed.peer_id in node.connected_peers()
            nursery.cancel_scope.cancel()


async def test_registry_records_make_peers_reachable_by_id() -> None:
    async with cluster(3, connect=False) as (a, b, c):
        directory = Directory(a)
        records = [
            PeerRecord(b.peer_id, tuple(x.split("/p2p/")[0] for x in b.addrs)),
            PeerRecord(c.peer_id, tuple(c.addrs)),
            PeerRecord("not-a-peer-id", ("/ip4/127.0.0.1/tcp/1",)),
            PeerRecord(a.peer_id, tuple(a.addrs)),  # ourselves: ignored
        ]
        assert directory.update(records) == 2
        with trio.fail_after(15):
            peers = await directory.connect_some(2)
            assert sorted(peers) == sorted([b.peer_id, c.peer_id])
            assert await a.ping(b.peer_id) > 0
