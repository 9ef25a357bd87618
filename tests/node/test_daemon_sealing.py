"""The whole provider in one daemon: a client's deal and piece -> sealed -> ACTIVE on chain,
seen through the daemon's snapshots and the deal protocol's deal_status."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from storaged.net.host import Node
from storaged.net.host import NodeConfig as HostConfig
from storaged.net.rpc import DEAL, Rpc
from storaged.node.daemon import Daemon
from tests.node.test_daemon import _client_home, _deal_and_push


async def test_daemon_seals_a_clients_piece_and_activates_the_deal(tmp_path: Path) -> None:
    cfg, client_key, _ = _client_home(tmp_path / "p4")
    daemon = Daemon(tmp_path / "p4", cfg, chain_mode="local", block_interval=0.05)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(120):
            await nursery.start(daemon.run)
            assert daemon.sealer is not None and daemon.node is not None
            client = Node(HostConfig())
            await nursery.start(client.run)
            await client.connect(daemon.node.addrs[0])
            # The deal starts ~10 s of blocks ahead: time to seal before its activation deadline.
            deal_id, _ = await _deal_and_push(daemon, client, os.urandom(40_000), client_key,
                                              lead=200)
            while True:
                sectors = daemon.sectors()["sectors"]
                if sectors and sectors[0]["state"] in ("ACTIVE", "FAILED"):
                    break
                await daemon.sealer.changed.wait()
        assert sectors[0]["state"] == "ACTIVE", sectors[0]
        status = await Rpc(client).request(daemon.node.peer_id, DEAL,
                                           {"op": "deal_status", "deal": deal_id}, timeout=10)
        assert status["state"] == "sector_active" and status["sector"] == sectors[0]["sector"]
        assert status["chain_state"] == "ACTIVE"
        assert daemon.proving()["available"] is True
        assert daemon.status()["parts"]["sealer"] == "running"
        nursery.cancel_scope.cancel()
