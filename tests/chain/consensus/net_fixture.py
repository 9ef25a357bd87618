"""Chain nodes on real libp2p hosts in one process: genesis, stacks, start and stop.

Each :class:`Stack` is one node's whole network stack (libp2p Node, Rpc, Gossip, ChainNode)
over its own LevelDB (``home/db``) and WAL (``home/wal``), started in a cancel scope of its
own so a test can kill one node and restart it on the same home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import trio

from storaged.chain.accounts import Params
from storaged.chain.consensus.machine import Timeouts
from storaged.chain.genesis import Genesis, apply_genesis
from storaged.chain.node import ChainNode
from storaged.chain.providers import Provider
from storaged.net.gossip import Gossip
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import Rpc
from storaged.store.kv import LevelKV
from tests.chain.helpers import CHAIN, GENESIS_TIME, key, pk

FAST = Timeouts(propose=1500, prevote=600, precommit=600, delta=300)
CLIENT = 10  # key number of the funded client account


def genesis(validators: int) -> Genesis:
    """``validators`` genesis providers (bond 10 each) and a funded client (key 10)."""
    return Genesis(
        chain_id=CHAIN, time=GENESIS_TIME, params=Params(),
        allocations={pk(CLIENT): 1_000_000, **{pk(i): 1_000 for i in range(validators)}},
        providers={pk(i): Provider(peer_id=f"p{i}", collateral=100, bond=10)
                   for i in range(validators)})


@dataclass
class Stack:
    """One node: libp2p host + rpc + gossip + chain node, in its own cancel scope."""

    index: int
    home: Path
    key: nacl.signing.SigningKey
    validator: bool
    node: Node
    chain: ChainNode | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: trio.Event = field(default_factory=trio.Event)


async def start_stack(nursery: trio.Nursery, index: int, home: Path, g: Genesis, *,
                      validator: bool, peers: list[Node], node: Node | None = None,
                      gossip: Gossip | None = None, block_interval: float = 0.3) -> Stack:
    """Start a chain node on ``home`` (genesis applied if new), connected to ``peers``.

    Gossip runs before any connection is made: pubsub only greets peers on connection
    events, so a peer connected before our gossip handler existed would never get our
    messages.  Pass a running ``node`` and ``gossip`` (e.g. from ``cluster``) to reuse them.
    Returns once the chain node serves and has caught up (its ``run`` started).
    """
    node = node or Node(NodeConfig())
    stack = Stack(index, home, key(index), validator, node)

    async def life(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        kv = LevelKV(home / "db", sync=False)
        try:
            apply_genesis(kv, g)
            with stack.scope:
                async with trio.open_nursery() as inner:
                    g_ = gossip
                    if g_ is None:
                        await inner.start(node.run)
                        g_ = Gossip(node)
                        await inner.start(g_.run)
                    for p in peers:
                        await node.connect(p.addrs[0])
                    stack.chain = ChainNode(node, Rpc(node), g_, kv, CHAIN, stack.key,
                                            validator=validator, wal_dir=home / "wal",
                                            block_interval=block_interval, timeouts=FAST,
                                            rebroadcast_s=0.5)
                    await inner.start(stack.chain.run)
                    task_status.started()
        finally:
            kv.close()
            stack.stopped.set()

    await nursery.start(life)
    return stack


async def stop_stack(stack: Stack) -> None:
    """Cancel the stack (its host closes) and wait until its store is closed."""
    stack.scope.cancel()
    with trio.fail_after(15):
        await stack.stopped.wait()
