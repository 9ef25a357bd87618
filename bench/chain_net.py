"""Chain over the network: 4 validators on real libp2p hosts (127.0.0.1, one process).

Run: ``.venv/bin/python -m bench.chain_net [TXS] [BLOCK_INTERVAL] [--trace]`` (defaults 2000,
1.0), as a module from the repository root (a script run would put ``bench/`` first on
``sys.path``, where ``bench/proofs.py`` shadows the ``proofs`` package).

Measures, on the networked :class:`ChainNode` (consensus over gossipsub, WAL fsynced, LevelDB
stores with synced batches):

- **block interval**: mean time between commits at validator 0 on an idle chain;
- **commit latency**: submit-to-receipt of single transfers, one at a time (median, max);
- **end-to-end tx/s**: TXS transfers from 200 senders submitted round-robin to the four
  validators, from the first submit until every receipt is committed at validator 0.

``--trace`` also prints, for each height of the throughput phase as validator 0 saw it, when
(seconds after entering the height) the proposal arrived, validator 0 prevoted and precommitted,
and the height was decided, with the round and the block's tx count; plus the deepest libp2p
per-peer outbound queue and the largest consensus outbox seen during the height (sampled every
20 ms).

All four validators share this process (and its GIL), so each block is validated and
applied four times over on the same cores: a real network of separate machines does a
quarter of this work per host.  Target (devnet): ~1 s blocks, >= 200 tx/s end to end.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from storaged.chain.accounts import Params
from storaged.chain.block import decode_block
from storaged.chain.consensus import driver as driver_mod
from storaged.chain.consensus.machine import Broadcast, Decide, Machine
from storaged.chain.consensus.messages import PREVOTE, Proposal, Vote
from storaged.chain.genesis import Genesis, apply_genesis
from storaged.chain.node import ChainNode
from storaged.chain.providers import Provider
from storaged.chain.tx import sign_tx
from storaged.net.gossip import Gossip
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import Rpc
from storaged.store.kv import LevelKV

CHAIN = "bench-net"
SENDERS = 200


@dataclass
class _HeightTrace:
    start: float
    events: dict[str, float] = field(default_factory=dict)
    round: int = 0
    txs: int = 0
    queue: int = 0
    outbox: int = 0


class Tracer:
    """Per-height consensus timeline of one validator (bench instrumentation only)."""

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.heights: dict[int, _HeightTrace] = {}

    def install(self) -> None:
        """Wrap the driver's hand-off points (class-level: every driver, filtered by key)."""
        tracer = self
        perform = driver_mod.Driver._perform
        on_message = Machine.on_message
        start = Machine.start

        def traced_start(machine: Machine, height: int) -> list[Any]:
            s = machine.signer
            if s is not None and s.public_key == tracer.public_key:
                tracer.at(height).start = time.perf_counter()
            return start(machine, height)

        def mine(drv: Any) -> bool:
            s = drv.machine.signer
            return s is not None and s.public_key == tracer.public_key

        async def traced_perform(drv: Any, actions: list[Any]) -> None:
            if mine(drv):
                for a in actions:
                    t = tracer.at(drv.machine.height)
                    if isinstance(a, Broadcast) and isinstance(a.message, Vote):
                        name = "prevote" if a.message.kind == PREVOTE else "precommit"
                        t.events.setdefault(name, time.perf_counter())
                        t.round = max(t.round, a.message.round)
                    elif isinstance(a, Broadcast) and isinstance(a.message, Proposal):
                        t.events.setdefault("proposal", time.perf_counter())
                    elif isinstance(a, Decide):
                        t.events.setdefault("decide", time.perf_counter())
                        t.txs = len(decode_block(a.value).txs)
            await perform(drv, actions)

        def traced_on_message(machine: Machine, msg: Any) -> list[Any]:
            s = machine.signer
            if (isinstance(msg, Proposal) and s is not None
                    and s.public_key == tracer.public_key):
                tracer.at(msg.height).events.setdefault("proposal", time.perf_counter())
            return on_message(machine, msg)

        driver_mod.Driver._perform = traced_perform  # type: ignore[method-assign]
        Machine.on_message = traced_on_message  # type: ignore[method-assign]
        Machine.start = traced_start  # type: ignore[method-assign]

    def at(self, height: int) -> _HeightTrace:
        t = self.heights.get(height)
        if t is None:
            t = self.heights[height] = _HeightTrace(time.perf_counter())
        return t

    async def sample(self, chains: list[ChainNode], gossips: list[Gossip]) -> None:
        """Record queue depths every 20 ms into the height validator 0 is in."""
        while True:
            await trio.sleep(0.02)  # sampling clock
            d = chains[0].driver
            if d is None:
                continue
            t = self.at(d.machine.height)
            q = max((len(q) for g in gossips for q in g._pubsub.peer_queues.values()),
                    default=0)
            o = max(c._cons_recv.statistics().current_buffer_used for c in chains)
            t.queue, t.outbox = max(t.queue, q), max(t.outbox, o)

    def report(self, from_height: int) -> None:
        print("height round txs  proposal prevote precommit decide  peer-queue outbox")
        for h in sorted(self.heights):
            t = self.heights[h]
            if h < from_height or "decide" not in t.events:
                continue
            cols = [f"{t.events[k] - t.start:8.2f}" if k in t.events else "       -"
                    for k in ("proposal", "prevote", "precommit", "decide")]
            print(f"{h:6d} {t.round:5d} {t.txs:4d} {' '.join(cols)}  {t.queue:10d} {t.outbox:6d}")


def _key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey((1000 + i).to_bytes(32, "big"))


async def main(n_txs: int, interval: float, trace: bool) -> None:
    vkeys = [_key(i) for i in range(4)]
    tracer = Tracer(bytes(vkeys[0].verify_key))
    if trace:
        tracer.install()
    senders = [_key(100 + i) for i in range(SENDERS)]
    g = Genesis(CHAIN, int(time.time()), Params(max_txs_per_block=5000),
                {bytes(k.verify_key): 10**12 for k in senders},
                {bytes(k.verify_key): Provider(peer_id=f"v{i}", collateral=100, bond=10)
                 for i, k in enumerate(vkeys)})
    with tempfile.TemporaryDirectory() as tmp:
        kvs = [LevelKV(Path(tmp) / f"v{i}" / "db") for i in range(4)]
        for kv in kvs:
            apply_genesis(kv, g)
        nodes = [Node(NodeConfig()) for _ in range(4)]
        async with trio.open_nursery() as nursery:
            gossips = []
            for node in nodes:
                await nursery.start(node.run)
                gossip = Gossip(node)
                await nursery.start(gossip.run)
                gossips.append(gossip)
            for i, a in enumerate(nodes):
                for b in nodes[i + 1:]:
                    await a.connect(b.addrs[0])
            chains = [ChainNode(nodes[i], Rpc(nodes[i]), gossips[i], kvs[i], CHAIN, vkeys[i],
                                validator=True, wal_dir=Path(tmp) / f"v{i}" / "wal",
                                block_interval=interval) for i in range(4)]
            for c in chains:
                await nursery.start(c.run)
            v0 = chains[0]
            if trace:
                nursery.start_soon(tracer.sample, chains, gossips)
            await v0.wait_height(2, timeout=60)

            # Block interval on an idle chain.
            h0, t0 = v0.head().height, time.perf_counter()
            await v0.wait_height(h0 + 10, timeout=120)
            block_s = (time.perf_counter() - t0) / 10

            # Commit latency, one transfer at a time.
            nonces = [0] * SENDERS
            latencies = []
            for j in range(10):
                raw = sign_tx(senders[j], CHAIN, "transfer", nonces[j], 1,
                              {"to": bytes(senders[j + 1].verify_key), "amount": 1})
                nonces[j] += 1
                t = time.perf_counter()
                tx_hash = await chains[j % 4].submit(raw)
                await v0.wait_receipt(tx_hash, timeout=60)
                latencies.append(time.perf_counter() - t)

            # End-to-end throughput.
            txs = []
            for i in range(n_txs):
                s = i % SENDERS
                txs.append(sign_tx(senders[s], CHAIN, "transfer", nonces[s], 1,
                                   {"to": bytes(senders[(s + 1) % SENDERS].verify_key),
                                    "amount": 1}))
                nonces[s] += 1
            h_start = v0.head().height
            if trace:  # a mark for an attached sampling profiler (py-spy --pid)
                print("throughput phase starts", file=sys.stderr, flush=True)
            t = time.perf_counter()
            hashes = [await chains[i % 4].submit(raw) for i, raw in enumerate(txs)]
            submit_s = time.perf_counter() - t
            for tx_hash in hashes:
                await v0.wait_receipt(tx_hash, timeout=300)
            total_s = time.perf_counter() - t
            blocks = v0.head().height - h_start
            print(f"validators: 4 in one process, block_interval {interval:g} s")
            print(f"block interval (idle): {block_s:.2f} s")
            print(f"commit latency: median {statistics.median(latencies):.2f} s, "
                  f"max {max(latencies):.2f} s")
            print(f"end to end: {n_txs} transfers in {total_s:.1f} s = "
                  f"{n_txs / total_s:.0f} tx/s (submit alone {submit_s:.1f} s, "
                  f"{blocks} blocks)")
            if trace:
                tracer.report(h_start)
            nursery.cancel_scope.cancel()
        for kv in kvs:
            kv.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 2000
    iv = float(args[1]) if len(args) > 1 else 1.0
    trio.run(main, n, iv, "--trace" in sys.argv)
