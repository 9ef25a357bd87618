"""The whole ``storage`` CLI against a real provider daemon on the networked chain.

The daemon (genesis validator, BFT chain over libp2p, market, piece store) runs in a second
thread; the CLI runs here with its own light node and verifies every chain read through the
query protocol (:class:`~storaged.chain.client.ChainClient`), as a separate process would.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from cli.storage_cmd import main
from storaged.chain.access import TxSender
from storaged.chain.genesis import GENESIS_FILE, Genesis, apply_genesis, load_genesis, write_genesis
from storaged.chain.node import ChainNode
from storaged.chain.providers import Provider
from storaged.config import Config, MarketConfig, NodeConfig, StorageConfig
from storaged.net.gossip import Gossip
from storaged.net.host import Node
from storaged.net.host import NodeConfig as HostConfig
from storaged.net.identity import load_signing_key, peer_id_of
from storaged.net.rpc import Rpc
from storaged.net.transfer import Transfers
from storaged.node.market import Market
from storaged.store.kv import LevelKV

CHAIN = "storaged-cli-net-test"


@dataclass
class DaemonThread:
    home: Path
    config: Config
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    addrs: list[str] = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        # The provider daemon's parts without sealing and the HTTP API: one libp2p host, one
        # LevelDB, the BFT chain node (sole genesis validator), the market and piece store.
        key = load_signing_key(self.home)
        node = Node(HostConfig(home=self.home))
        kv = LevelKV(self.home / "db")
        try:
            apply_genesis(kv, load_genesis(self.home / GENESIS_FILE))
            rpc, gossip = Rpc(node), Gossip(node)
            chain = ChainNode(node, rpc, gossip, kv, CHAIN, key, validator=True,
                              wal_dir=self.home / "wal", block_interval=0.1)
            market = Market(kv, chain, key, self.config.market, self.home / "pieces",
                            peer_id=node.peer_id)
            market.serve(rpc)
            transfers = Transfers(node)
            transfers.serve_push(market.pieces)
            transfers.serve_fetch(market.pieces)
            async with trio.open_nursery() as nursery:
                with trio.fail_after(60):
                    await nursery.start(node.run)
                    await nursery.start(gossip.run)
                    await nursery.start(chain.run)
                    await nursery.start(market.run)
                    c = self.config.market
                    await TxSender(chain, key).send_and_wait("update_provider", {
                        "peer_id": node.peer_id, "addrs": node.addrs,
                        "price": c.price_per_gib_epoch, "capacity": c.capacity_bytes},
                        timeout=30)
                self.addrs = node.addrs
                self.ready.set()
                await trio.to_thread.run_sync(self.stop.wait)
                nursery.cancel_scope.cancel()
        finally:
            kv.close()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A running provider daemon and a client home; yields (client home, peers env)."""
    provider_home, client_home = tmp_path / "p1", tmp_path / "client"
    pk = bytes(load_signing_key(provider_home).verify_key)
    client_pk = bytes(load_signing_key(client_home).verify_key)
    listing = Provider(peer_id=peer_id_of(pk), addrs=[], price=1 << 20, capacity=64 << 20,
                       collateral=100, bond=1000)
    write_genesis(provider_home / GENESIS_FILE, Genesis(
        CHAIN, 1_700_000_000, allocations={pk: 10**12, client_pk: 10**12},
        providers={pk: listing}))
    shutil.copy(provider_home / GENESIS_FILE, client_home / GENESIS_FILE)
    (client_home / "config.toml").write_text(
        f'[node]\nchain_id = "{CHAIN}"\n\n[client]\nk = 1\nn = 1\nsegment_size = 65536\n'
        'duration = 100\nstart_margin = 5\n')
    cfg = Config(node=NodeConfig(chain_id=CHAIN), storage=StorageConfig(min_free_bytes=0),
                 market=MarketConfig(price_per_gib_epoch=1 << 20, capacity_bytes=64 << 20,
                                     min_duration=10, max_duration=10_000, collateral=0,
                                     min_start_delay=5, publish_timeout=15))
    daemon = DaemonThread(provider_home, cfg)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert daemon.ready.wait(90) and daemon.error is None, daemon.error
        yield client_home, ",".join(daemon.addrs)
    finally:
        daemon.stop.set()
        thread.join(30)


def _cli(home: Path, peers: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args],
                                env={"STORAGE_PEERS": peers})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_put_get_ls_deals_status_wallet_through_the_cli(tmp_path: Path,
                                                        network: tuple[Path, str]) -> None:
    home, peers = network
    src = tmp_path / "hello.bin"
    data = os.urandom(150_000)
    src.write_bytes(data)

    code, out = _cli(home, peers, "wallet", "--json")
    assert code == 0, out
    before = json.loads(out)
    assert before["balance"] == 10**12 and before["escrow"] == 0

    code, out = _cli(home, peers, "put", str(src), "--json")
    assert code == 0, out
    put = json.loads(out)
    assert put["size"] == len(data) and len(put["deals"]) == 1
    assert put["manifest_copies"] == 1
    deal_id = put["deals"][0]["deal"]

    got = tmp_path / "got.bin"
    code, out = _cli(home, peers, "get", put["capability"], "-o", str(got), "--json")
    assert code == 0, out
    assert got.read_bytes() == data

    code, out = _cli(home, peers, "ls", "--json")
    assert code == 0, out
    assert [(f["name"], f["capability"]) for f in json.loads(out)] == [
        ("hello.bin", put["capability"])]

    code, out = _cli(home, peers, "deals", "--json")
    assert code == 0, out
    deals = json.loads(out)
    assert [d["deal"] for d in deals] == [deal_id]
    assert deals[0]["state"] == "PUBLISHED"

    code, out = _cli(home, peers, "status", put["capability"], "--json")
    assert code == 0, out
    status = json.loads(out)
    assert [(d["deal"], d["state"]) for d in status["deals"]] == [(deal_id, "PUBLISHED")]
    assert status["deals"][0]["received"] == put["piece_size"]

    code, out = _cli(home, peers, "wallet", "--json")
    after = json.loads(out)
    assert after["locked"] == deals[0]["price"] * (deals[0]["end"] - deals[0]["start"])
    code, out = _cli(home, peers, "wallet", "deposit", "1000", "--json")
    assert code == 0, out
    assert json.loads(out)["escrow"] == after["escrow"] + 1000
    code, out = _cli(home, peers, "wallet", "withdraw", str(10**15))
    assert code != 0 and "error:" in out


def test_human_output_tables_and_progress(tmp_path: Path, network: tuple[Path, str]) -> None:
    home, peers = network
    src = tmp_path / "notes.txt"
    src.write_bytes(b"some notes\n" * 5000)
    code, out = _cli(home, peers, "put", str(src))
    assert code == 0, out
    caps = [line for line in out.splitlines() if line.startswith("storage://")]
    assert len(caps) == 1 and "#" in caps[0]
    got = tmp_path / "notes.out"
    code, out = _cli(home, peers, "get", caps[0], "-o", str(got))
    assert code == 0, out
    assert got.read_bytes() == src.read_bytes()
    assert f"wrote {src.stat().st_size} bytes" in out
    for args in (["ls"], ["deals"], ["wallet"], ["status", caps[0]]):
        code, out = _cli(home, peers, *args)
        assert code == 0, (args, out)
        assert "PUBLISHED" in out or args[0] in ("ls", "wallet"), (args, out)
    code, out = _cli(home, peers, "ls")
    assert "notes.txt" in out
