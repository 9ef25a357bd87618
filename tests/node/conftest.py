"""Shared fixtures for tests/node.

``sealing_env``: the real market (deal protocol and pushes over two libp2p hosts, LevelDB,
one-validator LocalChain with genesis funding a client and the provider) with a real
:class:`Sealer` and :class:`Prover` attached the way the daemon attaches them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from storaged.config import Config, MarketConfig, ProofsConfig, StorageConfig
from tests.node.market_env import Env, market_env

# Small deals (16-64 KiB sectors), prices and collateral in real units.
SEAL_MARKET = MarketConfig(price_per_gib_epoch=1 << 20, capacity_bytes=1 << 20,
                           min_duration=200, max_duration=2000, collateral=1 << 30,
                           max_deal_bytes=64 << 10, min_start_delay=20, publish_timeout=10)


@dataclass
class SealingEnv:
    """A market env plus the provider's sealer and prover (see ``start``/``stop``)."""

    env: Env
    home: Path
    config: Config
    nursery: trio.Nursery
    sealer: Any = None
    prover: Any = None
    scope: trio.CancelScope | None = None
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)

    async def start(self) -> None:
        """Start (or restart, on the same LevelDB and sector files) sealer and prover; a
        restart gets a fresh metrics registry, as a new process would."""
        from storaged.node.proving import Prover
        from storaged.node.sealing import Sealer

        env = self.env
        self.metrics = CollectorRegistry()
        self.sealer = Sealer(env.kv, env.chain, env.provider_key, self.home, self.config,
                             pieces=env.market.pieces, sender=env.market.sender,
                             metrics=self.metrics)
        self.prover = Prover(env.kv, env.chain, env.provider_key, self.home, self.config,
                             sender=env.market.sender, metrics=self.metrics)
        env.market.enqueue = self.sealer.enqueue
        scope_ready = trio.Event()

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                self.scope = scope
                async with trio.open_nursery() as inner:
                    await inner.start(self.sealer.run)
                    await inner.start(self.prover.run)
                    scope_ready.set()
                    task_status.started()

        await self.nursery.start(serve)
        await scope_ready.wait()

    def stop(self) -> None:
        """Cancel sealer and prover (a crash, as far as they can tell)."""
        assert self.scope is not None
        self.scope.cancel()

    async def until(self, cond: Callable[[], Any], seconds: float) -> Any:
        """Wait, block by block (event-driven), until ``cond()`` is truthy; return its value.

        Raises:
            trio.TooSlowError: not within ``seconds``.
        """
        chain = self.env.chain
        with trio.fail_after(seconds):
            while not (result := cond()):
                await chain.wait_height(chain.head().height + 1, timeout=seconds)
            return result

    def deal_state(self, deal_id: int) -> str:
        """The chain's state of ``deal_id``."""
        deal = self.env.chain.view().deal(deal_id)
        assert deal is not None, f"deal {deal_id} is not on chain"
        return str(deal["state"])

    def chain_sector(self, number: int) -> dict[str, Any]:
        """The chain's record of the provider's sector ``number``."""
        rec = self.env.chain.view().sector(bytes(self.env.provider_key.verify_key), number)
        assert rec is not None, f"sector {number} is not on chain"
        return rec

    async def push_deal(self, data: bytes) -> tuple[int, bytes]:
        """Client side: propose a deal for ``data`` and push the piece."""
        deal_id, comm_d = await self.env.deal_for(data)
        await self.env.client_transfers.push(self.env.provider_peer, comm_d, self.env.source)
        return deal_id, comm_d


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Damage a file on disk in place (bit rot, as far as the provider can tell)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@asynccontextmanager
async def sealing_env(tmp: Path, *, scrub_interval: int = 3600, post_margin: int = 3,
                      duration: int | None = None,
                      start: bool = True) -> AsyncIterator[SealingEnv]:
    """A running market, sealer and prover for one provider; deals last ``duration``
    blocks (default ``SEAL_MARKET.min_duration``); with ``start=False`` the test calls
    ``start()`` itself (pieces pushed before then wait for the sealer)."""
    market = SEAL_MARKET if duration is None else dataclasses.replace(
        SEAL_MARKET, min_duration=duration)
    config = Config(market=market, proofs=ProofsConfig(post_margin=post_margin, seal_workers=1),
                    storage=StorageConfig(scrub_interval=scrub_interval))
    async with market_env(tmp, market) as env, trio.open_nursery() as nursery:
        s = SealingEnv(env, tmp / "home", config, nursery)
        env.market.enqueue = None
        if start:
            await s.start()
        yield s
        nursery.cancel_scope.cancel()
