"""Chain nodes over real libp2p hosts on 127.0.0.1: consensus, gossip, sync, restart."""

from __future__ import annotations

from pathlib import Path

import trio

from storaged.chain.consensus.certificate import decode_certificate
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.errors import BadNonce
from storaged.chain.node import ChainNode, unwrap, wrap
from storaged.net.gossip import Gossip
from storaged.net.testing import cluster
from storaged.store import schema
from tests.chain.consensus.net_fixture import (
    CLIENT,
    Stack,
    genesis,
    start_stack,
    stop_stack,
)
from tests.chain.helpers import CHAIN, pk, transfer


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
