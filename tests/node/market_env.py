"""A provider market on a real LocalChain, LevelDB and two real libp2p hosts, for node tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from storaged.chain.access import TxSender
from storaged.chain.app import ChainApp
from storaged.chain.deals import sign_proposal
from storaged.chain.genesis import Genesis, apply_genesis
from storaged.chain.local import LocalChain
from storaged.config import MarketConfig
from storaged.data.piece import commitment_of
from storaged.errors import NotFound
from storaged.net.rpc import DEAL, Rpc
from storaged.net.testing import cluster
from storaged.net.transfer import Transfers
from storaged.node.market import Market, deal_collateral, deal_price
from storaged.store.kv import LevelKV

CHAIN = "storaged-market-test"
FUNDS = 10**15


def key(i: int) -> nacl.signing.SigningKey:
    """Deterministic test key ``i``."""
    return nacl.signing.SigningKey(bytes([0x40 + i]) * 32)


class MemorySource:
    """The client's side of a push: pieces held in memory (a ChunkSource)."""

    def __init__(self) -> None:
        self.objects: dict[bytes, bytes] = {}
        self.reads = 0

    async def size(self, key: bytes) -> int:
        if key not in self.objects:
            raise NotFound(key.hex())
        return len(self.objects[key])

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        self.reads += 1
        return self.objects[key][offset : offset + length]


@dataclass
class Env:
    """Everything a market test touches."""

    chain: LocalChain
    kv: LevelKV
    market: Market
    provider_peer: str
    client_rpc: Rpc
    client_transfers: Transfers
    client_node: Any
    provider_node: Any
    provider_transfers: Transfers
    client_key: nacl.signing.SigningKey = field(default_factory=lambda: key(1))
    provider_key: nacl.signing.SigningKey = field(default_factory=lambda: key(2))
    enqueued: list[int] = field(default_factory=list)
    source: MemorySource = field(default_factory=MemorySource)

    async def deal(self, body: dict[str, Any]) -> Any:
        return await self.client_rpc.request(self.provider_peer, DEAL, body, timeout=30)

    def proposal(self, piece: bytes, size: int, **over: Any) -> dict[str, Any]:
        """A proposal the market accepts, with fields overridden by ``over``."""
        c = self.market.config
        start = self.chain.head().height + c.min_start_delay + 20
        p = {"piece": piece, "size": size, "client": bytes(self.client_key.verify_key),
             "provider": bytes(self.provider_key.verify_key),
             "price": deal_price(c.price_per_gib_epoch, size), "start": start,
             "end": start + c.min_duration, "collateral": deal_collateral(c.collateral, size)}
        p.update(over)
        return p

    async def propose(self, p: dict[str, Any], sig: bytes | None = None) -> Any:
        if sig is None:
            sig = sign_proposal(self.client_key, CHAIN, p)
        return await self.deal({"op": "propose", "proposal": p, "client_sig": sig})

    async def deal_for(self, data: bytes) -> tuple[int, bytes]:
        """Publish a deal for ``data``; return (deal id, comm_d) and hold it as a source."""
        comm_d, size = await trio.to_thread.run_sync(commitment_of, data)
        self.source.objects[comm_d] = data
        answer = await self.propose(self.proposal(comm_d, size))
        return int(answer["deal"]), comm_d


@asynccontextmanager
async def market_env(
    tmp: Path, config: MarketConfig, *, provider_escrow: int = 10**9,
    min_free: int = 0,
) -> AsyncIterator[Env]:
    """A running market on LevelDB + LocalChain, served over a real libp2p host."""
    client_key, provider_key = key(1), key(2)
    kv = LevelKV(tmp / "db")
    apply_genesis(kv, Genesis(CHAIN, 1_700_000_000, allocations={
        bytes(client_key.verify_key): FUNDS, bytes(provider_key.verify_key): FUNDS}))
    app = ChainApp(kv, CHAIN)
    chain = LocalChain(app, key(9), interval=0.05)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(chain.run)
            with trio.fail_after(30):
                if app.account(bytes(client_key.verify_key)).escrow == 0:  # not a restart
                    await TxSender(chain, client_key).send_and_wait(
                        "escrow_deposit", {"amount": FUNDS // 2}, timeout=20)
                if provider_escrow and not app.account(bytes(provider_key.verify_key)).escrow:
                    await TxSender(chain, provider_key).send_and_wait(
                        "escrow_deposit", {"amount": provider_escrow}, timeout=20)
            async with cluster(2) as (client_node, provider_node):
                market = Market(kv, chain, provider_key, config, tmp / "pieces",
                                peer_id=provider_node.peer_id, min_free=min_free)
                transfers = Transfers(provider_node, stall_timeout=5)
                env = Env(chain, kv, market, provider_node.peer_id, Rpc(client_node),
                          Transfers(client_node, stall_timeout=5), client_node, provider_node,
                          transfers)
                market.enqueue = env.enqueued.append
                market.serve(Rpc(provider_node))
                transfers.serve_push(market.pieces)
                transfers.serve_fetch(market.pieces)
                await nursery.start(market.run)
                yield env
            nursery.cancel_scope.cancel()
    finally:
        kv.close()


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
