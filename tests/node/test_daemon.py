"""The provider daemon on a temp home with a LocalChain: serves, registers, stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing
import pytest
import trio
from prometheus_client import generate_latest

from storaged.chain.access import TxSender
from storaged.chain.deals import sign_proposal
from storaged.chain.genesis import GENESIS_FILE, Genesis, write_genesis
from storaged.chain.providers import Provider
from storaged.config import ApiConfig, Config, MarketConfig, NodeConfig, StorageConfig
from storaged.data.piece import commitment_of
from storaged.errors import ConfigError, UserError
from storaged.net.host import Node
from storaged.net.host import NodeConfig as HostConfig
from storaged.net.identity import load_signing_key, peer_id_of
from storaged.net.rpc import DEAL, Rpc
from storaged.net.transfer import Transfers
from storaged.node.daemon import Daemon
from storaged.node.market import deal_collateral, deal_price
from tests.node.market_env import MemorySource

CHAIN = "storaged-daemon-test"


def make_home(home: Path) -> tuple[Config, bytes]:
    """A provider home: key, genesis funding it, config on a free loopback port."""
    pk = bytes(load_signing_key(home).verify_key)
    write_genesis(home / GENESIS_FILE,
                  Genesis(CHAIN, 1_700_000_000, allocations={pk: 10**12}))
    cfg = Config(api=ApiConfig(port=0),
                 node=NodeConfig(listen=("/ip4/127.0.0.1/tcp/0",), chain_id=CHAIN),
                 market=MarketConfig(collateral=1 << 30, capacity_bytes=1 << 20),
                 storage=StorageConfig(min_free_bytes=0))
    return cfg, pk


async def test_daemon_serves_ask_registers_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "p1"
    cfg, pk = make_home(home)
    for restart in (False, True):  # the second start proves the first released home and DB
        daemon = Daemon(home, cfg, chain_mode="local", block_interval=0.05)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                await nursery.start(daemon.run)
                client = Node(HostConfig())
                await nursery.start(client.run)
                assert daemon.node is not None
                await client.connect(daemon.node.addrs[0])
                ask = await Rpc(client).request(daemon.node.peer_id, DEAL, {"op": "ask"},
                                                timeout=10)
                assert ask["provider"] == pk
                assert ask["free"] == 1 << 20
                assert ask["price"] == (7 if restart else 1)  # set_ask below survives restart
                await daemon.registered.wait()
            wallet = daemon.wallet()
            assert wallet["provider"]["capacity"] == 1 << 20
            assert wallet["escrow"] == 1 << 20  # collateral for full capacity, 1 per byte
            status = daemon.status()
            assert status["registration"] == "registered"
            assert status["chain_id"] == CHAIN and status["height"] > 0
            assert status["deals"] == {}
            assert status["parts"]["api"] == "running" and status["api"]
            assert (home / "api.addr").read_text().strip() == status["api"]
            assert daemon.deals() == {"deals": []}
            assert daemon.sectors()["sectors"] == []
            proving = daemon.proving()
            assert proving.get("available") is True or "not available" in proving["reason"]
            text = generate_latest(daemon.metrics).decode()
            assert "storaged_free_bytes 1.048576e+06" in text
            assert "storaged_chain_height" in text
            with pytest.raises(UserError, match="only"):
                await daemon.withdraw(10**15)
            out = await daemon.set_ask(price=7)
            assert out["price"] == 7
            nursery.cancel_scope.cancel()
        with pytest.raises(UserError, match="not running"):
            daemon.status()


async def test_daemon_refuses_a_genesis_of_another_chain(tmp_path: Path) -> None:
    home = tmp_path / "p2"
    cfg, _ = make_home(home)
    other = Config(api=ApiConfig(port=0), node=NodeConfig(chain_id="other-chain"))
    with pytest.raises(ConfigError, match="differs"):
        await Daemon(home, other, chain_mode="local").run()
    with pytest.raises(ConfigError, match="chain mode"):
        Daemon(home, cfg, chain_mode="solo")
    with pytest.raises(ConfigError, match="keep_unsealed"):
        Daemon(home, Config(storage=StorageConfig(keep_unsealed=False)))


async def test_daemon_on_the_networked_chain_as_the_genesis_validator(tmp_path: Path) -> None:
    home = tmp_path / "v1"
    pk = bytes(load_signing_key(home).verify_key)
    genesis_listing = Provider(peer_id=peer_id_of(pk), addrs=[], price=1, capacity=1 << 20,
                               collateral=100, bond=1000)
    write_genesis(home / GENESIS_FILE, Genesis(CHAIN, 1_700_000_000, allocations={pk: 10**9},
                                               providers={pk: genesis_listing}))
    cfg = Config(api=ApiConfig(port=0), node=NodeConfig(chain_id=CHAIN),
                 storage=StorageConfig(min_free_bytes=0))
    daemon = Daemon(home, cfg, chain_mode="network", block_interval=0.1)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            await nursery.start(daemon.run)
            # The genesis listing has no address: the daemon updates it through consensus.
            await daemon.registered.wait()
        status = daemon.status()
        assert status["chain_mode"] == "network" and status["height"] >= 1
        listing = daemon.wallet()["provider"]
        assert listing is not None and listing["bond"] == 1000
        assert daemon.node is not None
        from storaged.chain.providers import load_provider
        from storaged.chain.state import StateOverlay

        assert daemon.kv is not None
        on_chain = load_provider(StateOverlay(daemon.kv), pk)
        assert on_chain is not None and on_chain.addrs == daemon.node.addrs
        nursery.cancel_scope.cancel()


async def _deal_and_push(daemon: Daemon, client: Node, data: bytes,
                         client_key: nacl.signing.SigningKey, *,
                         lead: int = 10) -> tuple[int, bytes]:
    """As a client: escrow, propose (starting ``lead`` blocks after the earliest start the
    provider accepts) through the deal protocol, push the piece."""
    assert daemon.node is not None and daemon.chain is not None and daemon.market is not None
    await TxSender(daemon.chain, client_key).send_and_wait(
        "escrow_deposit", {"amount": 10**9}, timeout=20)
    comm_d, size = commitment_of(data)
    c = daemon.market.config
    start = daemon.chain.head().height + c.min_start_delay + lead
    proposal = {"piece": comm_d, "size": size, "client": bytes(client_key.verify_key),
                "provider": daemon.public_key, "price": deal_price(c.price_per_gib_epoch, size),
                "start": start, "end": start + c.min_duration,
                "collateral": deal_collateral(c.collateral, size)}
    answer = await Rpc(client).request(daemon.node.peer_id, DEAL, {
        "op": "propose", "proposal": proposal,
        "client_sig": sign_proposal(client_key, CHAIN, proposal)}, timeout=20)
    source = MemorySource()
    source.objects[comm_d] = data
    await Transfers(client).push(daemon.node.peer_id, comm_d, source)
    return int(answer["deal"]), comm_d


def _client_home(home: Path) -> tuple[Config, nacl.signing.SigningKey, bytes]:
    client_key = nacl.signing.SigningKey(bytes([0x77]) * 32)
    pk = bytes(load_signing_key(home).verify_key)
    write_genesis(home / GENESIS_FILE, Genesis(CHAIN, 1_700_000_000, allocations={
        pk: 10**12, bytes(client_key.verify_key): 10**12}))
    cfg = Config(api=ApiConfig(port=0), node=NodeConfig(chain_id=CHAIN),
                 market=MarketConfig(min_start_delay=5, min_duration=50),
                 storage=StorageConfig(min_free_bytes=0))
    return cfg, client_key, pk


async def test_daemon_takes_a_deal_and_a_piece_from_a_client(tmp_path: Path) -> None:
    cfg, client_key, _ = _client_home(tmp_path / "p3")
    daemon = Daemon(tmp_path / "p3", cfg, chain_mode="local", block_interval=0.05)
    data = os.urandom(50_000)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            await nursery.start(daemon.run)
            client = Node(HostConfig())
            await nursery.start(client.run)
            assert daemon.node is not None
            await client.connect(daemon.node.addrs[0])
            deal_id, comm_d = await _deal_and_push(daemon, client, data, client_key)
        (deal,) = daemon.deals()["deals"]
        assert (deal["deal"], deal["piece"], deal["received"]) == (deal_id, comm_d.hex(), 50_000)
        assert deal["chain_state"] == "PUBLISHED"
        assert daemon.status()["pieces"]["pieces"] == 1
        text = generate_latest(daemon.metrics).decode()
        assert 'storaged_transfer_bytes_total{direction="in"} 50000.0' in text
        assert 'storaged_deals{state=' in text
        nursery.cancel_scope.cancel()
