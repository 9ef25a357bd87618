"""Chain nodes over real libp2p hosts on 127.0.0.1: consensus, gossip, sync, restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from storaged.chain.consensus.certificate import decode_certificate
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.errors import BadNonce
from storaged.chain.genesis import apply_genesis
from storaged.chain.node import ChainNode, unwrap, wrap
from storaged.net.gossip import TXS, Gossip
from storaged.net.host import Node
from storaged.net.rpc import Rpc
from storaged.net.testing import cluster
from storaged.store import schema
from storaged.store.kv import LevelKV
from tests.chain.consensus.net_fixture import (
    CLIENT,
    FAST,
    Stack,
    genesis,
    start_stack,
    stop_stack,
)
from tests.chain.helpers import CHAIN, key, pk, transfer


def chain(stack: Stack) -> ChainNode:
    assert stack.chain is not None
    return stack.chain


def block_hashes(node: ChainNode, upto: int) -> list[bytes]:
    out = []
    for h in range(1, upto + 1):
        raw = node.app.kv.get(schema.chain_block_key(h))
        assert raw is not None
        out.append(raw)
    return out


def test_envelope_round_trip_and_rejects_garbage() -> None:
    assert unwrap(wrap("txs", [b"abc", b"d"], 7)) == ("txs", [b"abc", b"d"])
    assert wrap("txs", [b"abc"], 7) != wrap("txs", [b"abc"], 8)  # a re-send: a fresh id
    for bad in (b"\xff", wrap("txs", [b"abc"], 1)[:-1], wrap("consensus", [b"a", b"b"], 1)):
        try:
            unwrap(bad)
        except ValueError:
            continue
        raise AssertionError("garbage envelope accepted")


async def test_four_validators_commit_a_transfer_and_a_follower_syncs(tmp_path: Path) -> None:
    g = genesis(4)
    async with cluster(4) as nodes, trio.open_nursery() as nursery:
        with trio.fail_after(240):
            gossips = [Gossip(n) for n in nodes]
            for gs in gossips:
                await nursery.start(gs.run)
            stacks = [await start_stack(nursery, i, tmp_path / f"v{i}", g, validator=True,
                                        peers=[], node=nodes[i], gossip=gossips[i])
                      for i in range(4)]
            v = [chain(s) for s in stacks]
            tx_hash = await v[0].submit(transfer(CLIENT, 3, 777, 0))
            receipt = await v[2].wait_receipt(tx_hash, timeout=60)  # gossip reached others
            assert receipt["height"] >= 1
            # A refused tx gets its specific error, nothing queued.
            try:
                await v[1].submit(transfer(CLIENT, 3, 1, 0))
            except BadNonce:
                pass
            else:
                raise AssertionError("replayed nonce admitted")
            await v[0].wait_height(4, timeout=60)
            # A fifth, non-validator node syncs from scratch, then follows by gossip.
            follower = await start_stack(nursery, 5, tmp_path / "f", g, validator=False,
                                         peers=nodes)
            f = chain(follower)
            assert f.app.head().height >= 4  # caught up before run() reported started
            target = v[0].app.head().height + 3
            for n in [*v, f]:  # generous: four validators and a follower share 2 cores
                await n.wait_height(target, timeout=120)
        for n in [*v, f]:
            assert n.app.account(pk(3)).balance == 1_000 + 777
        reference = block_hashes(v[0], target)
        for n in [*v[1:], f]:
            assert block_hashes(n, target) == reference
        valset = ValidatorSet.of((pk(i), 10) for i in range(4))
        for h in range(1, target + 1):
            decode_certificate(f.app.kv.get(schema.chain_commit_key(h)) or b"").verify(
                CHAIN, valset)
        assert f.evidence == [] and all(n.evidence == [] for n in v)
        nursery.cancel_scope.cancel()


async def test_killed_validator_restarts_on_its_home_and_signs_again(tmp_path: Path) -> None:
    g = genesis(4)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(180):
            stacks: list[Stack] = []
            for i in range(4):
                stacks.append(await start_stack(nursery, i, tmp_path / f"v{i}", g,
                                                validator=True,
                                                peers=[s.node for s in stacks]))
            await chain(stacks[0]).wait_height(3, timeout=60)
            victim = stacks[3]
            await stop_stack(victim)
            down_at = chain(stacks[0]).app.head().height
            # Three of four (30 of 40 power > 2/3) keep committing.
            await chain(stacks[0]).wait_height(down_at + 4, timeout=60)
            restarted = await start_stack(nursery, 3, victim.home, g, validator=True,
                                          peers=[s.node for s in stacks[:3]])
            r = chain(restarted)
            assert r.app.head().height >= down_at + 4  # caught up from its old head
            target = chain(stacks[0]).app.head().height + 3
            await r.wait_height(target, timeout=60)
            for s in stacks[:3]:
                await chain(s).wait_height(target, timeout=60)
        me = pk(3)
        signed_after = 0
        for h in range(target - 2, target + 1):
            cert = decode_certificate(r.app.kv.get(schema.chain_commit_key(h)) or b"")
            signed_after += any(vote.validator == me for vote in cert.votes)
        assert signed_after >= 1  # it precommits again after the restart
        assert block_hashes(r, target) == block_hashes(chain(stacks[0]), target)
        for s in [*stacks[:3], restarted]:
            assert chain(s).evidence == []  # nobody saw a double vote
        nursery.cancel_scope.cancel()


async def test_consensus_runs_on_direct_lanes_alone_through_a_tx_flood(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the gossip copy of every proposal and vote switched off, four validators still
    commit, while each floods the TXS topic: the direct lanes carry consensus by themselves
    and do not queue behind transaction gossip."""

    async def no_gossip_copy(self: ChainNode) -> None:
        async for _ in self._cons_recv:
            pass

    monkeypatch.setattr(ChainNode, "_send_consensus_forever", no_gossip_copy)
    g = genesis(4)
    async with cluster(4) as nodes, trio.open_nursery() as nursery:
        with trio.fail_after(120):
            gossips = [Gossip(n) for n in nodes]
            for gs in gossips:
                await nursery.start(gs.run)
            stacks = [await start_stack(nursery, i, tmp_path / f"v{i}", g, validator=True,
                                        peers=[], node=nodes[i], gossip=gossips[i])
                      for i in range(4)]
            v = [chain(s) for s in stacks]
            await v[0].wait_height(1, timeout=60)
            junk = [b"\xff" * (60 << 10)]  # refused by every mempool

            async def flood(i: int) -> None:
                for counter in range(100):  # distinct envelopes: pubsub drops repeats
                    await gossips[i].publish(TXS, wrap("txs", junk, counter * 4 + i))

            flooded = trio.Event()

            async def flood_all() -> None:
                async with trio.open_nursery() as inner:
                    for i in range(4):
                        inner.start_soon(flood, i)
                flooded.set()

            nursery.start_soon(flood_all)
            target = v[0].app.head().height + 3
            for n in v:
                await n.wait_height(target, timeout=60)
            assert all(n.lanes.received > 0 for n in v)
            await flooded.wait()
        nursery.cancel_scope.cancel()


async def _lone_validator(nursery: trio.Nursery, node: Node, home: Path,
                          **kwargs: Any) -> ChainNode:
    """A one-validator chain node (genesis(1)) that re-gossips after 0.2 s."""
    kv = LevelKV(home / "db", sync=False)
    apply_genesis(kv, genesis(1))
    gossip = Gossip(node)
    await nursery.start(gossip.run)
    c = ChainNode(node, Rpc(node), gossip, kv, CHAIN, key(0), validator=True,
                  wal_dir=home / "wal", block_interval=0.05, timeouts=FAST,
                  regossip_s=0.2, **kwargs)
    return c


async def test_pending_tx_is_regossiped_after_a_block_with_room_left_it_out(
        tmp_path: Path) -> None:
    """Re-gossip is for a tx a proposer did not have: it is re-sent once it is due and a
    block with room did not include it, never while blocks are full (there it is only
    waiting its turn, and re-flooding a backlog slowed the blocks it waited for)."""
    async with cluster(2, connect=False) as (a, b), trio.open_nursery() as nursery:
        with trio.fail_after(60):
            # Blocks that can hold no tx at all (cap of 1 byte): never re-gossiped.
            full = await _lone_validator(nursery, a, tmp_path / "a", max_block_bytes=1)
            await nursery.start(full.run)
            await full.submit(transfer(CLIENT, 3, 5, 0))
            await full.wait_height(full.app.head().height + 8, timeout=30)
            assert full.regossiped == 0 and len(full.mempool) == 1
            # Blocks with room that leave the tx out (this proposer's mempool "lacks" it).
            roomy = await _lone_validator(nursery, b, tmp_path / "b")
            roomy.mempool.candidates = list  # type: ignore[method-assign]
            await nursery.start(roomy.run)
            await roomy.submit(transfer(CLIENT, 3, 5, 0))
            while roomy.regossiped == 0:
                await roomy.wait_height(roomy.app.head().height + 1, timeout=30)
            assert len(roomy.mempool) == 1
        nursery.cancel_scope.cancel()
    full.app.kv.close()
    roomy.app.kv.close()


async def test_a_burst_of_submits_goes_out_in_few_gossip_messages(tmp_path: Path) -> None:
    """The tx sender lets a batch fill before publishing: libp2p's cost per message is
    that of hundreds of txs, and a client's burst went out as one message per few txs."""
    async with cluster(2, connect=False) as (a, b), trio.open_nursery() as nursery:
        with trio.fail_after(60):
            listener = Gossip(b)  # a bare gossip peer, no chain node
            await nursery.start(listener.run)
            sub = await listener.subscribe(TXS)
            c = await _lone_validator(nursery, a, tmp_path / "a")
            await a.connect(b.addrs[0])  # both gossips run: pubsub greets on connection
            await nursery.start(c.run)
            await c.gossip.wait_for_topic_peers(TXS, 1, timeout=20)
            for nonce in range(100):
                await c.submit(transfer(CLIENT, 3, 1, nonce))
            messages, txs = 0, 0
            while txs < 100:
                _kind, payloads = unwrap((await sub.receive()).data)
                messages, txs = messages + 1, txs + len(payloads)
            assert messages <= 5
        nursery.cancel_scope.cancel()
    c.app.kv.close()
