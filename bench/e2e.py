"""End-to-end client benchmark: ``storage put`` / ``get`` of a large file beside the raw
libp2p stream rate, measured in one run.

A child process runs the network: one BFT chain node (sole validator, 0.2 s blocks) and n
provider markets, each on its own libp2p host with its own piece store, all reading the one
chain state.  This process is the client: a light node verifying chain reads through the
query protocol, exactly as ``storage put``/``get`` run.  The baseline is one raw libp2p
stream (Noise + Yamux) from this process to the child, 1 MiB writes, discarded.

Targets: put >= 0.2x and get >= 0.4x the raw stream rate (file bytes per second; a put moves
n/k times the file, a get k/k).  The child hosts every provider, so all transfers share its
one Python process: the numbers are a floor for a real devnet of separate machines.

Usage: python bench/e2e.py [--mib 256] [-k 4] [-n 6]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nacl.signing
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storaged.chain.access import TxSender
from storaged.chain.genesis import GENESIS_FILE, Genesis, apply_genesis, load_genesis, write_genesis
from storaged.chain.node import ChainNode
from storaged.chain.providers import Provider
from storaged.client.get import get_file
from storaged.client.light import open_light_node
from storaged.client.put import PutOptions, put_file
from storaged.config import Config, MarketConfig
from storaged.config import NodeConfig as CfgNode
from storaged.data.capability import parse_capability
from storaged.net.gossip import Gossip
from storaged.net.host import Node, NodeConfig
from storaged.net.identity import load_signing_key, peer_id_of
from storaged.net.rpc import Rpc
from storaged.net.stream import Stream
from storaged.net.transfer import Transfers
from storaged.node.market import Market
from storaged.store.kv import LevelKV, MemoryKV
from tests.client.env import SplitKV

MIB = 1 << 20
CHAIN = "storaged-bench-e2e"
RAW_PROTOCOL = "/storaged-bench/raw/1.0.0"
MARKET = MarketConfig(price_per_gib_epoch=1, capacity_bytes=8 << 30, min_duration=10,
                      max_duration=1_000_000, collateral=0, max_deal_bytes=8 << 30,
                      min_start_delay=10, publish_timeout=20)


def provider_key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([0x90 + i]) * 32)


# -- the network child ------------------------------------------------------------------------


async def serve(directory: Path, n: int) -> None:
    home = directory / "validator"
    key = load_signing_key(home)
    kv = LevelKV(home / "db")
    apply_genesis(kv, load_genesis(home / GENESIS_FILE))
    node = Node(NodeConfig(home=home))
    rpc, gossip = Rpc(node), Gossip(node)
    chain = ChainNode(node, rpc, gossip, kv, CHAIN, key, validator=True,
                      wal_dir=home / "wal", block_interval=0.2)

    async def raw_handler(stream: Stream) -> None:
        while await stream.read(MIB, timeout=60):
            pass
        await stream.write(b"k", timeout=10)
        await stream.close()

    node.set_handler(RAW_PROTOCOL, raw_handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(gossip.run)
        await nursery.start(chain.run)
        for i in range(n):
            pnode = Node(NodeConfig())
            pkey = provider_key(i)
            market = Market(SplitKV(kv, MemoryKV()), chain, pkey, MARKET,
                            directory / f"pieces-{i}", peer_id=pnode.peer_id)
            market.enqueue = lambda deal_id: None  # no sealing in this benchmark
            market.serve(Rpc(pnode))
            transfers = Transfers(pnode)
            transfers.serve_push(market.pieces)
            transfers.serve_fetch(market.pieces)
            await nursery.start(pnode.run)
            await nursery.start(market.run)
            await TxSender(chain, pkey).send_and_wait("register_provider", {
                "peer_id": pnode.peer_id, "addrs": pnode.addrs, "price": MARKET.price_per_gib_epoch,
                "capacity": MARKET.capacity_bytes, "collateral": 100}, timeout=60)
        print(node.addrs[0], flush=True)


# -- the client (this process) ----------------------------------------------------------------


async def spawn(directory: Path, n: int) -> tuple[trio.Process, str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--serve", str(directory), "-n", str(n)],
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = b""
    with trio.fail_after(120):
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError("network child exited early")
            line += chunk
    return proc, line.decode().strip()


async def bench_raw(node: Node, peer: str, total: int) -> float:
    payload = os.urandom(MIB)
    stream = await node.open_stream(peer, RAW_PROTOCOL)
    start = time.perf_counter()
    for _ in range(total // MIB):
        await stream.write(payload, timeout=60)
    await stream._raw.close()  # half-close: the child sees EOF and acknowledges
    assert await stream.read(1, timeout=60) == b"k"
    return total / (time.perf_counter() - start) / 1e6


def setup(directory: Path, n: int) -> Path:
    validator = directory / "validator"
    client = directory / "client"
    vk = bytes(load_signing_key(validator).verify_key)
    ck = bytes(load_signing_key(client).verify_key)
    alloc = {vk: 10**15, ck: 10**15}
    alloc.update({bytes(provider_key(i).verify_key): 10**15 for i in range(n)})
    g = Genesis(CHAIN, int(time.time()), allocations=alloc, providers={vk: Provider(
        peer_id=peer_id_of(vk), addrs=[], price=1, capacity=0, collateral=100, bond=1000)})
    write_genesis(validator / GENESIS_FILE, g)
    write_genesis(client / GENESIS_FILE, g)
    return client


async def main(mib: int, k: int, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        root = Path(tmp)
        client_home = setup(root, n)
        src = root / "file.bin"
        with src.open("wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MIB))
        proc, addr = await spawn(root, n)
        try:
            config = Config(node=CfgNode(chain_id=CHAIN))
            async with open_light_node(client_home, config, peers=[addr]) as light:
                raw = await bench_raw(light.node, light.bootstrap[0], mib * MIB)
                opts = PutOptions(k=k, n=n, duration=1000, start_margin=50)
                t0 = time.perf_counter()
                result = await put_file(light, src, opts, workdir=root)
                put_s = time.perf_counter() - t0
                out = root / "out.bin"
                t0 = time.perf_counter()
                await get_file(light, parse_capability(result.capability), out)
                get_s = time.perf_counter() - t0
            same = _same(src, out)
        finally:
            proc.kill()
            await proc.wait()
    size = mib * MIB / 1e6
    put_rate, get_rate = size / put_s, size / get_s
    print(f"file {mib} MiB, k={k} n={n}; raw libp2p stream {raw:.1f} MB/s")
    print(f"put {put_s:.1f} s = {put_rate:.1f} MB/s = {put_rate / raw:.2f}x raw (target >= 0.2x)")
    print(f"get {get_s:.1f} s = {get_rate:.1f} MB/s = {get_rate / raw:.2f}x raw (target >= 0.4x)")
    print(f"round trip identical: {same}")
    if not same:
        sys.exit(1)


def _same(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(MIB), fb.read(MIB)
            if x != y:
                return False
            if not x:
                return True


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("-n", type=int, default=6)
    p.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args: Any = p.parse_args(argv)
    if args.serve is not None:
        trio.run(serve, args.serve, args.n)
    else:
        trio.run(main, args.mib, args.k, args.n)


if __name__ == "__main__":
    cli()
