"""Chain over the network: 4 validators on real libp2p hosts (127.0.0.1, one process).

Run: ``.venv/bin/python -m bench.chain_net [TXS] [BLOCK_INTERVAL]`` (defaults 2000, 1.0), as a
module from the repository root (a script run would put ``bench/`` first on ``sys.path``, where
``bench/proofs.py`` shadows the ``proofs`` package).

Measures, on the networked :class:`ChainNode` (consensus over gossipsub, WAL fsynced, LevelDB
stores with synced batches):

- **block interval**: mean time between commits at validator 0 on an idle chain;
- **commit latency**: submit-to-receipt of single transfers, one at a time (median, max);
- **end-to-end tx/s**: TXS transfers from 200 senders submitted round-robin to the four
  validators, from the first submit until every receipt is committed at validator 0.

All four validators share this process (and its GIL), so each block is validated and
applied four times over on the same cores: a real network of separate machines does a
quarter of this work per host.  Target (devnet): ~1 s blocks, >= 200 tx/s end to end.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
import trio

from storaged.chain.accounts import Params
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


def _key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey((1000 + i).to_bytes(32, "big"))


async def main(n_txs: int, interval: float) -> None:
    vkeys = [_key(i) for i in range(4)]
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
            t = time.perf_counter()
            hashes = [await chains[i % 4].submit(raw) for i, raw in enumerate(txs)]
            submit_s = time.perf_counter() - t
            h_start = v0.head().height
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
            nursery.cancel_scope.cancel()
        for kv in kvs:
            kv.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    iv = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    trio.run(main, n, iv)
