"""An in-process storage network for client tests: one LocalChain, several provider markets
(each its own libp2p host, piece store and local deal book), and the client's light node.

All parts are the real ones: the chain app and mempool, LevelDB, libp2p hosts on 127.0.0.1,
the market's deal protocol and piece store, the push/fetch transfers.  The providers share the
one chain's LevelDB for chain state (as nodes of one chain see the same committed state) and
keep their market tables (0x50-0x5F) in a store of their own (:class:`SplitKV`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from storaged.chain.access import TxSender
from storaged.chain.app import ChainApp
from storaged.chain.genesis import Genesis, apply_genesis
from storaged.chain.local import LocalChain
from storaged.client.chain import LocalChainAdapter
from storaged.client.light import LightNode, open_light_node
from storaged.client.put import PutOptions
from storaged.config import Config, MarketConfig
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import Rpc
from storaged.net.transfer import Transfers
from storaged.node.market import Market
from storaged.store.kv import KV, LevelKV, MemoryKV, WriteBatch

CHAIN = "storaged-client-test"
FUNDS = 10**15
MARKET = MarketConfig(price_per_gib_epoch=1 << 20, capacity_bytes=64 << 20, min_duration=10,
                      max_duration=100_000, collateral=0, max_deal_bytes=64 << 20,
                      min_start_delay=5, publish_timeout=10)
OPTIONS = PutOptions(k=2, n=4, segment_size=64 << 10, duration=200, start_margin=5,
                     candidates_extra=4)


def key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([0x70 + i]) * 32)


class SplitKV:
    """Market tables (prefixes 0x50-0x5F) in this provider's own store, the rest (chain
    state) in the chain's shared store.  Batches here only ever touch one side."""

    def __init__(self, shared: KV, own: KV) -> None:
        self.shared, self.own = shared, own

    def _for(self, key: bytes) -> KV:
        return self.own if key and 0x50 <= key[0] <= 0x5F else self.shared

    def get(self, key: bytes) -> bytes | None:
        return self._for(key).get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._for(key).put(key, value)

    def delete(self, key: bytes) -> None:
        self._for(key).delete(key)

    def scan(self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
             ) -> Iterator[tuple[bytes, bytes]]:
        return self._for(prefix).scan(prefix, start=start, reverse=reverse)

    @contextlib.contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        ops: list[tuple[bytes, bytes | None]] = []

        class _B:
            def put(self, key: bytes, value: bytes) -> None:
                ops.append((key, value))

            def delete(self, key: bytes) -> None:
                ops.append((key, None))

        yield _B()
        for side in (self.own, self.shared):
            mine = [(k, v) for k, v in ops if self._for(k) is side]
            if mine:
                with side.batch() as b:
                    for k, v in mine:
                        if v is None:
                            b.delete(k)
                        else:
                            b.put(k, v)

    def close(self) -> None:
        self.own.close()


@dataclass
class Provider:
    index: int
    key: nacl.signing.SigningKey
    node: Node
    market: Market
    scope: trio.CancelScope
    stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def peer_id(self) -> str:
        return self.node.peer_id

    def kill(self) -> None:
        """Stop the provider's host (its connections drop; nothing answers any more)."""
        self.scope.cancel()


@dataclass
class Net:
    chain: LocalChain
    providers: list[Provider]
    light: LightNode
    home: Path

    def provider(self, peer_id: str) -> Provider:
        return next(p for p in self.providers if p.peer_id == peer_id)

    async def kill(self, peer_id: str) -> None:
        p = self.provider(peer_id)
        p.kill()
        with trio.fail_after(15):
            await p.stopped.wait()


async def _run_provider(p: Provider, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    try:
        with p.scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(p.node.run)
                p.market.serve(Rpc(p.node))
                transfers = Transfers(p.node, stall_timeout=5)
                transfers.serve_push(p.market.pieces)
                transfers.serve_fetch(p.market.pieces)
                await nursery.start(p.market.run)
                task_status.started()
    finally:
        p.stopped.set()


@asynccontextmanager
async def storage_net(tmp: Path, *, providers: int = 5, market: MarketConfig = MARKET,
                      asks: dict[int, MarketConfig] | None = None,
                      client_funds: int = FUNDS) -> AsyncIterator[Net]:
    """A chain, ``providers`` registered provider markets and the client's light node."""
    client_key = key(0)
    home = tmp / "client"
    home.mkdir()
    (home / "node.key").write_bytes(bytes(client_key))
    (home / "node.key").chmod(0o600)
    chain_kv = LevelKV(tmp / "chain-db")
    keys = [key(i + 1) for i in range(providers)]
    alloc = {bytes(k.verify_key): FUNDS for k in keys}
    alloc[bytes(client_key.verify_key)] = client_funds
    apply_genesis(chain_kv, Genesis(CHAIN, 1_700_000_000, allocations=alloc))
    app = ChainApp(chain_kv, CHAIN)
    chain = LocalChain(app, key(60), interval=0.05)
    stores: list[KV] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(chain.run)
            provs = []
            for i, k in enumerate(keys):
                node = Node(NodeConfig())
                own = MemoryKV()
                stores.append(own)
                config = (asks or {}).get(i, market)
                m = Market(SplitKV(chain_kv, own), chain, k, config, tmp / f"pieces-{i}",
                           peer_id=node.peer_id)
                m.enqueue = lambda deal_id: None
                p = Provider(i, k, node, m, trio.CancelScope())
                await nursery.start(_run_provider, p)
                provs.append(p)
            with trio.fail_after(30):
                async with trio.open_nursery() as reg:
                    for p in provs:
                        c = p.market.config
                        reg.start_soon(lambda p=p, c=c: TxSender(chain, p.key).send_and_wait(
                            "register_provider", {"peer_id": p.peer_id, "addrs": p.node.addrs,
                                                  "price": c.price_per_gib_epoch,
                                                  "capacity": c.capacity_bytes,
                                                  "collateral": 100}, timeout=20))
            async with open_light_node(home, Config(), peers=[],
                                       chain=LocalChainAdapter(chain),
                                       stall_timeout=5) as light:
                yield Net(chain, provs, light, home)
            nursery.cancel_scope.cancel()
    finally:
        for s in stores:
            s.close()
        chain_kv.close()
