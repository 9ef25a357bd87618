"""Network benchmark: our protocols against their baselines, measured side by side in one run.

Two OS processes (this one and a server child; six children for the fan-out case) on
127.0.0.1.  Prints MB/s for 256 MiB sent as 1 MiB writes over

  1. a plain trio TCP socket                        (the ceiling of the machine)
  2. one raw libp2p stream (Noise + Yamux)          (the ceiling of py-libp2p)
  3. our /storaged/push/1.0.0                       (target: >= 0.9x of 2)

then one client pushing to 6 peers at once, and small request/response round trips per second
on one reused stream (target: >= 1,500/s) next to a raw libp2p echo of the same size (the floor
for any RPC on this transport).  Receivers discard the bytes (push still hashes them with
blake3, as it must), so the numbers measure the network path, not a disk.

The host is shared and noisy, so each measurement runs ``--rounds`` times, interleaved with its
baseline; the summary gives medians, and each ratio is the median of per-round ratios (a round's
numbers share the same background load).

Usage: python bench/net.py [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storaged.errors import NotFound
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import QUERY, Rpc
from storaged.net.stream import Stream
from storaged.net.transfer import Transfers

MIB = 1 << 20
RAW_PROTOCOL = "/storaged-bench/raw/1.0.0"
ECHO_PROTOCOL = "/storaged-bench/echo/1.0.0"


class NullSink:
    """Accepts every push and throws the bytes away."""

    async def begin(self, key: bytes, size: int, digest: bytes) -> int:
        return 0

    async def read_back(self, key: bytes, offset: int, length: int) -> bytes:
        raise NotFound("null sink holds nothing")

    async def write(self, key: bytes, offset: int, data: bytes) -> None:
        return None

    async def commit(self, key: bytes) -> None:
        return None

    async def discard(self, key: bytes) -> None:
        return None


class MemorySource:
    """One object held in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def size(self, key: bytes) -> int:
        return len(self.data)

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


# -- server child -----------------------------------------------------------------------------


async def serve() -> None:
    async def tcp_handler(conn: trio.SocketStream) -> None:
        while await conn.receive_some(MIB):
            pass
        await conn.send_all(b"k")
        await conn.aclose()

    async def raw_handler(stream: Stream) -> None:
        while await stream.read(MIB, timeout=60):
            pass
        await stream.write(b"k", timeout=10)
        await stream.close()

    async def echo(peer: str, body: Any) -> Any:
        return body

    async def raw_echo(stream: Stream) -> None:
        while data := await stream.read(65536, timeout=60):
            await stream.write(data, timeout=10)
        await stream.close()

    node = Node(NodeConfig())
    node.set_handler(RAW_PROTOCOL, raw_handler)
    node.set_handler(ECHO_PROTOCOL, raw_echo)
    Rpc(node).serve(QUERY, echo)
    Transfers(node).serve_push(NullSink())
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, tcp_handler, 0, host="127.0.0.1")
        )
        tcp_port = listeners[0].socket.getsockname()[1]
        addrs = await nursery.start(node.run)
        print(f"{tcp_port} {addrs[0]}", flush=True)


# -- client -----------------------------------------------------------------------------------


async def spawn() -> tuple[trio.Process, int, str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    line = b""
    with trio.fail_after(30):
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError("server child exited early")
            line += chunk
    port, addr = line.decode().split()
    return proc, int(port), addr


async def bench_tcp(port: int, payload: bytes, total: int) -> float:
    conn = await trio.open_tcp_stream("127.0.0.1", port)
    start = time.perf_counter()
    for _ in range(total // len(payload)):
        await conn.send_all(payload)
    await conn.send_eof()
    assert await conn.receive_some(1) == b"k"
    elapsed = time.perf_counter() - start
    await conn.aclose()
    return total / elapsed / 1e6


async def bench_raw(node: Node, peer: str, payload: bytes, total: int) -> float:
    stream = await node.open_stream(peer, RAW_PROTOCOL)
    start = time.perf_counter()
    for _ in range(total // len(payload)):
        await stream.write(payload, timeout=60)
    await stream._raw.close()  # half-close: the server sees EOF and acknowledges
    assert await stream.read(1, timeout=60) == b"k"
    return total / (time.perf_counter() - start) / 1e6


async def bench_push(transfers: Transfers, peer: str, source: MemorySource, digest: bytes) -> float:
    start = time.perf_counter()
    await transfers.push(peer, b"bench", source, digest=digest, attempts=1)
    return len(source.data) / (time.perf_counter() - start) / 1e6


async def bench_rpc(rpc: Rpc, peer: str, n: int) -> float:
    await rpc.request(peer, QUERY, {"warm": 1})
    start = time.perf_counter()
    for i in range(n):
        await rpc.request(peer, QUERY, {"i": i, "op": "ping"})
    return n / (time.perf_counter() - start)


async def bench_raw_echo(node: Node, peer: str, n: int) -> float:
    """Round trips of a 40-byte message on one raw libp2p stream: the floor for any RPC."""
    stream = await node.open_stream(peer, ECHO_PROTOCOL)
    msg = b"x" * 40
    start = time.perf_counter()
    for _ in range(n):
        await stream.write(msg, timeout=10)
        got = b""
        while len(got) < len(msg):
            got += await stream.read(65536, timeout=10)
    rate = n / (time.perf_counter() - start)
    await stream.close()
    return rate


async def bench_rpc_concurrent(rpc: Rpc, peer: str, n: int, callers: int) -> float:
    async def caller(k: int) -> None:
        for i in range(n // callers):
            await rpc.request(peer, QUERY, {"i": i, "k": k})

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(callers):
            nursery.start_soon(caller, k)
    return n / (time.perf_counter() - start)


async def main(mib: int, fanout_mib: int, rounds: int) -> None:
    total = mib * MIB
    payload = bytes(range(256)) * (MIB // 256)
    data = payload * mib
    digest = blake3.blake3(data).digest()
    source = MemorySource(data)
    procs: list[trio.Process] = []
    try:
        proc, port, addr = await spawn()
        procs.append(proc)
        node = Node(NodeConfig())
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            peer = await node.connect(addr)
            transfers = Transfers(node)
            rpc = Rpc(node)
            results: dict[str, list[float]] = {k: [] for k in ("tcp", "raw", "push", "echo", "rpc")}
            for _ in range(rounds):  # interleaved: a round's numbers share one background load
                results["tcp"].append(await bench_tcp(port, payload, total))
                results["raw"].append(await bench_raw(node, peer, payload, total))
                results["push"].append(await bench_push(transfers, peer, source, digest))
            for _ in range(rounds):
                results["echo"].append(await bench_raw_echo(node, peer, 2000))
                results["rpc"].append(await bench_rpc(rpc, peer, 2000))
            conc_rts = await bench_rpc_concurrent(rpc, peer, 4000, 8)

            # fan-out: one client, six server processes at once
            peers = [peer]
            for _ in range(5):
                p, _port, a = await spawn()
                procs.append(p)
                peers.append(await node.connect(a))
            small = MemorySource(data[: fanout_mib * MIB])
            small_digest = blake3.blake3(small.data).digest()
            start = time.perf_counter()
            async with trio.open_nursery() as fan:
                for p_id in peers:
                    fan.start_soon(
                        lambda p_id=p_id: transfers.push(
                            p_id, b"fan", small, digest=small_digest, attempts=1
                        )
                    )
            fan_rate = len(peers) * len(small.data) / (time.perf_counter() - start) / 1e6
            nursery.cancel_scope.cancel()

        med = {k: statistics.median(v) for k, v in results.items()}
        push_raw = _ratios(results["push"], results["raw"])
        rpc_echo = _ratios(results["rpc"], results["echo"])
        print(
            f"storaged.net benchmark, {mib} MiB per stream, 1 MiB writes, two OS processes, "
            f"medians of {rounds} interleaved rounds"
        )
        runs = {k: _fmt(v) for k, v in results.items()}
        print(f"  plain trio TCP socket        {med['tcp']:9.1f} MB/s   (runs: {runs['tcp']})")
        print(
            f"  raw libp2p stream            {med['raw']:9.1f} MB/s   (runs: {runs['raw']})"
            f"   {med['raw'] / med['tcp']:5.3f}x TCP"
        )
        print(
            f"  /storaged/push/1.0.0         {med['push']:9.1f} MB/s   "
            f"(runs: {runs['push']})   {statistics.median(push_raw):5.3f}x raw libp2p "
            f"(rounds: {_fmt(push_raw, 3)})   [target >= 0.9x]"
        )
        print(
            f"  push to 6 peers at once      {fan_rate:9.1f} MB/s total "
            f"({fanout_mib} MiB each)   {fan_rate / med['push']:5.3f}x single push"
        )
        print(
            f"  raw libp2p echo, 1 stream    {med['echo']:9.0f} round trips/s   "
            f"(runs: {runs['echo']}; 40-byte messages)"
        )
        print(
            f"  request/response, 1 stream   {med['rpc']:9.0f} round trips/s   "
            f"(runs: {runs['rpc']})   {statistics.median(rpc_echo):5.3f}x raw echo "
            f"(rounds: {_fmt(rpc_echo, 3)})   [target >= 1500/s]"
        )
        print(f"  request/response, 8 callers  {conc_rts:9.0f} requests/s (8 pooled streams)")
    finally:
        for p in procs:
            p.kill()
            await p.wait()


def _fmt(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _ratios(values: list[float], baselines: list[float]) -> list[float]:
    return [v / b for v, b in zip(values, baselines, strict=True)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--fanout-mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    if args.serve:
        trio.run(serve)
    else:
        trio.run(main, args.mib, args.fanout_mib, args.rounds)
