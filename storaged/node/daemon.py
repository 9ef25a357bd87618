"""The provider daemon: one process that runs a chain node, the market, sealing, proving and
the local API, over one LevelDB (``home/db``) and one libp2p host.

Start-up order (all in :meth:`Daemon.run`, one nursery; ``task_status.started()`` once every
part serves):

1. open ``home/db``, load the node key (``home/node.key``: the chain key *is* the libp2p key),
   apply ``home/genesis.json`` (a store from another genesis is a ConfigError);
2. build the host, Rpc, Transfers and the chain: a networked :class:`ChainNode` (``"network"``,
   with Gossip) or a one-validator :class:`LocalChain` (``"local"``: single machine, tests);
3. build the market (deal protocol, piece store) and the sealer/prover, register handlers;
4. start host, gossip, chain, market, sealer, prover, API;
5. in the background (it needs blocks, which in a fresh network need the other validators):
   register this provider on chain with its ask, or update the listing if the ask or address
   changed, and top its free escrow up to the collateral its capacity needs.

Cancellation (SIGTERM in the CLI cancels the scope) stops every task; the finally-blocks close
the host and the LevelDB, so the home can be reopened at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storaged.api.server import serve_api
from storaged.chain import accounts, providers
from storaged.chain.access import ChainAccess, TxSender
from storaged.chain.app import ChainApp
from storaged.chain.genesis import GENESIS_FILE, apply_genesis, load_genesis
from storaged.chain.local import LocalChain
from storaged.chain.state import StateOverlay
from storaged.config import Config
from storaged.errors import ConfigError, LocalBugError, StoragedError, UserError
from storaged.net.gossip import Gossip
from storaged.net.host import Node, NodeConfig
from storaged.net.identity import load_signing_key
from storaged.net.rpc import Rpc
from storaged.net.transfer import Transfers
from storaged.node.market import Market, deal_collateral
from storaged.node.proving import Prover
from storaged.node.sealing import Sealer
from storaged.store.kv import LevelKV

log = logging.getLogger(__name__)

CHAIN_MODES = ("network", "local")
DB_DIR = "db"
WAL_DIR = "wal"
PIECES_DIR = "pieces"
REGISTER_TIMEOUT = 120.0


class _MarketCollector(Collector):
    """Scrape-time metrics of the market and piece store."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        if d.market is None or d.chain is None:
            return
        deals = GaugeMetricFamily("storaged_deals", "Deals of this provider by local state",
                                  labels=["state"])
        for state, n in sorted(Counter(x.state for x in d.market.local_deals()).items()):
            deals.add_metric([state], n)
        yield deals
        pieces = d.market.pieces
        yield GaugeMetricFamily("storaged_piece_bytes", "Bytes of stored unsealed pieces "
                                "(padded)", value=pieces.stored_bytes())
        yield GaugeMetricFamily("storaged_free_bytes", "Capacity still offered to new deals",
                                value=d.market.free_bytes())
        transfer = CounterMetricFamily("storaged_transfer_bytes", "Piece bytes moved by push "
                                       "and fetch since start", labels=["direction"])
        transfer.add_metric(["in"], pieces.bytes_received)
        transfer.add_metric(["out"], pieces.bytes_served)
        yield transfer
        yield GaugeMetricFamily("storaged_chain_height", "Last committed block height",
                                value=d.chain.head().height)


class Daemon:
    """A storage provider: ``await nursery.start(daemon.run)``, then the snapshot methods."""

    def __init__(self, home: Path, config: Config, *, chain_mode: str = "network",
                 block_interval: float = 1.0) -> None:
        """``chain_mode`` is ``"network"`` (a :class:`ChainNode` in the BFT network of the
        genesis validators) or ``"local"`` (this node alone commits blocks every
        ``block_interval`` seconds: single-machine use and tests).

        Raises:
            ConfigError: unknown ``chain_mode``, or ``[storage] keep_unsealed = false``.
        """
        if chain_mode not in CHAIN_MODES:
            raise ConfigError(f"chain mode {chain_mode!r}: expected one of {CHAIN_MODES}")
        if not config.storage.keep_unsealed:
            # Fetch is served from the unsealed piece; unsealing replicas on demand is not
            # built, so dropping pieces would make stored files unretrievable.  Refuse loudly.
            raise ConfigError("[storage] keep_unsealed = false is not supported yet: retrieval "
                              "serves the unsealed copy; set it to true")
        self.home = Path(home)
        self.config = config
        self.chain_mode = chain_mode
        self.block_interval = block_interval
        self.metrics = CollectorRegistry()
        self.metrics.register(_MarketCollector(self))
        self.kv: LevelKV | None = None
        self.node: Node | None = None
        self.chain: ChainAccess | None = None
        self.market: Market | None = None
        self.sender: TxSender | None = None
        self.sealer: Sealer | None = None
        self.prover: Prover | None = None
        self.public_key = b""
        self.registration = "not started"
        self.registered = trio.Event()
        self.api_addr: str | None = None
        self._parts: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the provider until cancelled.

        Raises:
            ConfigError: missing/invalid genesis, or a chain id that differs from
                ``[node] chain_id``.
            ResourceError: the home is in use, the database cannot be opened, or a listen
                address cannot be bound.
        """
        key = load_signing_key(self.home)
        self.public_key = bytes(key.verify_key)
        genesis = load_genesis(self.home / GENESIS_FILE)
        if genesis.chain_id != self.config.node.chain_id:
            raise ConfigError(f"genesis chain id {genesis.chain_id!r} differs from [node] "
                              f"chain_id {self.config.node.chain_id!r}")
        node = Node(NodeConfig(home=self.home, listen=self.config.node.listen,
                               bootstrap=self.config.node.bootstrap))
        self.kv = kv = LevelKV(self.home / DB_DIR)
        try:
            apply_genesis(kv, genesis)
            self.node = node
            rpc = Rpc(node)
            transfers = Transfers(node)
            async with trio.open_nursery() as nursery:
                gossip: Gossip | None = None
                if self.chain_mode == "network":
                    from storaged.chain.node import ChainNode

                    gossip = Gossip(node)
                    chain: Any = ChainNode(node, rpc, gossip, kv, genesis.chain_id, key,
                                           validator=True, wal_dir=self.home / WAL_DIR,
                                           block_interval=self.block_interval)
                else:
                    chain = LocalChain(ChainApp(kv, genesis.chain_id), key,
                                       interval=self.block_interval)
                self.chain = chain
                self.sender = TxSender(chain, key)  # one per key: nonces never collide
                market = Market(kv, chain, key, self.config.market, self.home / PIECES_DIR,
                                peer_id=node.peer_id,
                                min_free=self.config.storage.min_free_bytes,
                                sender=self.sender)
                self.market = market
                market.serve(rpc)
                transfers.serve_push(market.pieces)
                transfers.serve_fetch(market.pieces)
                await nursery.start(node.run)
                if gossip is not None:
                    await nursery.start(gossip.run)
                await nursery.start(chain.run)
                await self._start_sealing(nursery, key)
                await nursery.start(market.run)
                await self._start_api(nursery)
                nursery.start_soon(self._ensure_on_chain)
                log.info("provider %s serving on %s (chain %s, %s)", node.peer_id,
                         node.addrs, genesis.chain_id, self.chain_mode)
                task_status.started()
        finally:
            self.kv = None
            kv.close()

    async def _start_sealing(self, nursery: trio.Nursery, key: nacl.signing.SigningKey) -> None:
        """Attach the sealer (the market's enqueue hook, deal -> sector lookup) and start it
        and the prover, sharing the daemon's TxSender and metrics registry."""
        market, chain, kv = self.market, self.chain, self.kv
        if market is None or chain is None or kv is None:
            raise LocalBugError("sealing wired before the market")
        sealer = Sealer(kv, chain, key, self.home, self.config, pieces=market.pieces,
                        metrics=self.metrics, sender=self.sender)
        prover = Prover(kv, chain, key, self.home, self.config, metrics=self.metrics,
                        sender=self.sender)
        self.sealer, self.prover = sealer, prover
        market.enqueue = sealer.enqueue

        def sector_of(deal_id: int) -> dict[str, Any] | None:
            rec = sealer.store.by_deal(deal_id)
            return None if rec is None else {"sector": rec.sector, "state": rec.state,
                                             "error": rec.error}

        market.sector_of = sector_of
        await nursery.start(sealer.run)
        await nursery.start(prover.run)
        self._parts["sealer"] = self._parts["prover"] = "running"

    async def _start_api(self, nursery: trio.Nursery) -> None:
        """Serve the local HTTP API (token-protected, ``[api] host:port``)."""
        self.api_addr = await nursery.start(serve_api, self, self.home, self.config)
        self._parts["api"] = "running"

    # -- on-chain listing and escrow -------------------------------------------------------------

    def _listing(self) -> dict[str, Any]:
        if self.node is None or self.market is None:
            raise LocalBugError("listing before start")
        c = self.market.config
        addrs = [a for a in self.node.addrs][: providers.MAX_ADDRS]
        return {"peer_id": self.node.peer_id, "addrs": addrs,
                "price": c.price_per_gib_epoch, "capacity": c.capacity_bytes}

    async def _ensure_on_chain(self) -> None:
        """Register (or update) the listing and fund collateral; retried until it works."""
        delay = 1.0
        while True:
            try:
                with trio.fail_after(REGISTER_TIMEOUT):
                    await self._register_once()
                self.registration = "registered"
                self.registered.set()
                return
            except (StoragedError, trio.TooSlowError) as exc:
                self.registration = f"retrying: {exc or 'timed out'}"
                log.warning("provider registration: %s; retrying in %.0f s", exc, delay)
                await trio.sleep(delay)  # back-off between retries, not synchronisation
                delay = min(delay * 2, 60.0)

    async def _register_once(self) -> None:
        if self.kv is None or self.sender is None or self.market is None:
            raise LocalBugError("registration before start")
        state = StateOverlay(self.kv)
        listing = self._listing()
        current = providers.load_provider(state, self.public_key)
        if current is None:
            self.registration = "registering"
            min_coll = accounts.load_params(state).min_provider_collateral
            await self.sender.send_and_wait("register_provider",
                                            {**listing, "collateral": min_coll}, timeout=60)
        elif (current.peer_id, current.addrs, current.price, current.capacity) != (
                listing["peer_id"], listing["addrs"], listing["price"], listing["capacity"]):
            self.registration = "updating listing"
            await self.sender.send_and_wait("update_provider", listing, timeout=60)
        account = accounts.load_account(StateOverlay(self.kv), self.public_key)
        c = self.market.config
        want = deal_collateral(c.collateral, c.capacity_bytes)
        short = want - account.escrow
        if short > 0:
            amount = min(short, max(0, account.balance - 10))  # keep a little for fees
            if amount <= 0:
                log.warning("escrow %d < collateral %d for full capacity, and no balance to "
                            "deposit", account.escrow, want)
                return
            self.registration = "funding collateral escrow"
            await self.sender.send_and_wait("escrow_deposit", {"amount": amount}, timeout=60)

    # -- snapshots for the API and CLI ---------------------------------------------------------

    def _running(self) -> tuple[Market, ChainAccess, Node]:
        if self.market is None or self.chain is None or self.node is None or self.kv is None:
            raise UserError("the provider is not running")
        return self.market, self.chain, self.node

    def status(self) -> dict[str, Any]:
        """Identity, chain head, capacity and the state of every part."""
        market, chain, node = self._running()
        head = chain.head()
        states = Counter(d.state for d in market.local_deals())
        return {
            "peer_id": node.peer_id, "public_key": self.public_key.hex(), "addrs": node.addrs,
            "chain_id": chain.chain_id, "chain_mode": self.chain_mode,
            "height": head.height, "head": head.hash.hex(), "head_time": head.time,
            "peers": len(node.connected_peers()), "registration": self.registration,
            "deals": dict(states), "capacity": self.config.market.capacity_bytes,
            "free": market.free_bytes(), "pieces": market.pieces.describe(),
            "manifests": market.manifests.count(), "parts": dict(self._parts),
            "api": self.api_addr,
        }

    def deals(self) -> dict[str, Any]:
        """``{"deals": [...]}``: every deal of this provider, local and on-chain state."""
        market, _, _ = self._running()
        out = []
        for d in market.local_deals():
            p = d.proposal
            on_chain = market.chain_deal(d.deal_id)
            out.append({"deal": d.deal_id, "state": d.state, "reason": d.reason,
                        "chain_state": on_chain["state"] if on_chain else None,
                        "piece": p["piece"].hex(), "size": p["size"],
                        "client": p["client"].hex(), "price": p["price"],
                        "start": p["start"], "end": p["end"],
                        "collateral": p["collateral"], "published_at": d.height,
                        "received": market.pieces.partial_length(p["piece"])})
        return {"deals": out}

    def sectors(self) -> dict[str, Any]:
        """``{"sectors": [...]}`` from the sealer (empty, with the reason, when sealing is not
        available)."""
        self._running()
        if self.sealer is None:
            return {"sectors": [], "reason": self._parts.get("sealer", "not started")}
        return {"sectors": self.sealer.snapshot(),
                "jobs": len(self.sealer.sealing_jobs()["jobs"])}

    def proving(self) -> dict[str, Any]:
        """The prover's schedule and recent PoSt results."""
        self._running()
        if self.prover is None:
            return {"available": False, "reason": self._parts.get("prover", "not started")}
        return self.prover.proving_status()

    def wallet(self) -> dict[str, Any]:
        """This provider's account: balance, free escrow, locked escrow, nonce, listing."""
        self._running()
        if self.kv is None:
            raise UserError("the provider is not running")
        state = StateOverlay(self.kv)
        account = accounts.load_account(state, self.public_key)
        listing = providers.load_provider(state, self.public_key)
        return {"public_key": self.public_key.hex(), "balance": account.balance,
                "escrow": account.escrow, "locked": account.locked, "nonce": account.nonce,
                "provider": None if listing is None else {
                    "price": listing.price, "capacity": listing.capacity,
                    "collateral": listing.collateral, "bond": listing.bond}}

    async def set_ask(self, price: int | None = None,
                      collateral: int | None = None) -> dict[str, Any]:
        """Change the ask (price / collateral per GiB) for new deals and, if the price
        changed, update the on-chain listing.  Returns the new ask (JSON-able).

        Raises:
            UserError: a negative value, or the provider is not running.
            ChainError: the listing update was refused.
        """
        market, _, _ = self._running()
        for name, value in (("price", price), ("collateral", collateral)):
            if value is not None and (type(value) is not int or not 0 <= value < 1 << 63):
                raise UserError(f"{name} must be a non-negative integer, got {value!r}")
        ask = market.set_ask(price, collateral)
        out = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in ask.items()}
        if self.registered.is_set() and self.sender is not None:
            tx = await self.sender.send("update_provider", self._listing())
            out["tx"] = tx.hex()
        return out

    async def withdraw(self, amount: int) -> dict[str, Any]:
        """Move ``amount`` of free escrow back to the balance (``escrow_withdraw``); returns
        the tx hash once submitted.

        Raises:
            UserError: not a positive integer, or more than the free escrow.
            ChainError: the chain refused the transaction.
        """
        self._running()
        if type(amount) is not int or amount <= 0:
            raise UserError(f"amount must be a positive integer, got {amount!r}")
        if self.kv is None or self.sender is None:
            raise UserError("the provider is not running")
        free = accounts.load_account(StateOverlay(self.kv), self.public_key).escrow
        if amount > free:
            raise UserError(f"cannot withdraw {amount}: only {free} escrow is free "
                            "(the rest backs published deals)")
        tx = await self.sender.send("escrow_withdraw", {"amount": amount})
        return {"tx": tx.hex(), "amount": amount}
