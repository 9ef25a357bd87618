"""Gossip among real hosts: a burst arrives whole, oversized messages are dropped, RPC writes
never interleave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from storaged.errors import LocalBugError
from storaged.net.direct import CONSENSUS, DirectLanes
from storaged.net.gossip import (
    OUTBOUND_HIGH_WATER,
    STUCK_AFTER,
    TXS,
    VOTES,
    Gossip,
    Subscription,
    Topic,
)
from storaged.net.testing import cluster


@asynccontextmanager
async def _publisher_and_subscriber(
    topic: Topic,
) -> AsyncIterator[tuple[Gossip, Subscription, trio.Nursery]]:
    """Gossip on two real hosts: the first publishes, the second is subscribed to ``topic``
    (yields once the publisher sees the subscription)."""
    async with cluster(2) as (a, b), trio.open_nursery() as nursery:
        ga, gb = Gossip(a), Gossip(b)
        with trio.fail_after(30):
            await nursery.start(ga.run)
            await nursery.start(gb.run)
            sub = await gb.subscribe(topic)
            await ga.wait_for_topic_peers(topic, 1, timeout=20)
        yield ga, sub, nursery
        nursery.cancel_scope.cancel()


async def test_burst_of_200_from_one_peer_all_arrive() -> None:
    async with cluster(3) as nodes, trio.open_nursery() as nursery:
        gossips = [Gossip(n) for n in nodes]
        with trio.fail_after(30):
            for g in gossips:
                await nursery.start(g.run)
            subs = [await g.subscribe(TXS) for g in gossips[1:]]
            await gossips[0].wait_for_topic_peers(TXS, 2, timeout=20)
            for g in gossips[1:]:
                await g.wait_for_topic_peers(TXS, 1, timeout=20)
            sent = [f"tx-{i:03d}".encode() * 10 for i in range(200)]
            for data in sent:
                await gossips[0].publish(TXS, data)
            for sub in subs:
                got = [await sub.receive() for _ in range(200)]
                assert sorted(m.data for m in got) == sorted(sent)
                assert {m.origin for m in got} == {nodes[0].peer_id}
        assert all(g.dropped == 0 for g in gossips)
        nursery.cancel_scope.cancel()


async def test_oversized_message_is_dropped_by_receivers() -> None:
    big = Topic(VOTES.name, max_size=10_000, queue=16)  # the sender's looser view of the topic
    async with _publisher_and_subscriber(VOTES) as (ga, sub, _):
        with trio.fail_after(30):
            await ga.publish(big, b"x" * (VOTES.max_size + 1))
            await ga.publish(VOTES, b"small vote")
            msg = await sub.receive()  # the oversized one never shows up first
            assert msg.data == b"small vote"
            with pytest.raises(LocalBugError):
                await ga.publish(VOTES, b"x" * (VOTES.max_size + 1))


class _SplittingStream:
    """A stream whose writes go out in two pieces with a yield between, as a Yamux write
    larger than the peer's window does."""

    def __init__(self) -> None:
        self.wire = bytearray()

    async def write(self, data: bytes) -> None:
        half = len(data) // 2
        self.wire += data[:half]
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        self.wire += data[half:]


async def test_concurrent_rpc_writes_to_one_stream_stay_whole() -> None:
    """The receiver's parse of each length-prefixed RPC fails if two writes mixed."""
    from libp2p.pubsub.pb import rpc_pb2

    async with cluster(1) as (node,):
        gossip = Gossip(node)
        stream = _SplittingStream()
        rpcs = []
        for i in range(20):
            rpc = rpc_pb2.RPC()
            msg = rpc.publish.add()
            msg.data = f"message {i} ".encode() * (i + 1)
            msg.topicIDs.append(VOTES.name)
            rpcs.append(rpc)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for rpc in rpcs:
                    nursery.start_soon(gossip._pubsub.write_msg, stream, rpc)
        got, wire = [], bytes(stream.wire)
        while wire:
            size, shift, used = 0, 0, 0
            while True:  # uvarint length prefix
                byte = wire[used]
                size |= (byte & 0x7F) << shift
                shift, used = shift + 7, used + 1
                if byte < 0x80:
                    break
            one = rpc_pb2.RPC()
            one.ParseFromString(wire[used:used + size])  # raises on interleaved bytes
            got.append(one.publish[0].data)
            wire = wire[used + size:]
        assert sorted(got) == sorted(r.publish[0].data for r in rpcs)


class _FakeQueue:
    """Stands in for libp2p's per-peer outbound queue: only its length matters to pacing."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def close(self) -> None:
        self.size = 0


async def test_publish_waits_for_a_draining_peer_but_not_for_a_stuck_one() -> None:
    from libp2p.peer.id import ID

    async with _publisher_and_subscriber(TXS) as (ga, sub, nursery):
        with trio.fail_after(30):
            queues = ga._pubsub.peer_queues
            draining, stuck = _FakeQueue(30), _FakeQueue(30)

            async def drain() -> None:
                while draining.size > 0:  # a reader taking one RPC per scheduling turn
                    await trio.lowlevel.checkpoint()
                    draining.size -= 1

            queues[ID(b"draining-peer")] = draining  # type: ignore[assignment]
            nursery.start_soon(drain)
            await ga.publish(TXS, b"after the drain")
            assert draining.size < OUTBOUND_HIGH_WATER  # it waited for the reader
            del queues[ID(b"draining-peer")]

            queues[ID(b"stuck-peer")] = stuck  # type: ignore[assignment]
            started = trio.current_time()
            await ga.publish(TXS, b"despite the stuck peer")
            assert STUCK_AFTER <= trio.current_time() - started < STUCK_AFTER + 3
            started = trio.current_time()
            await ga.publish(TXS, b"no second wait")
            assert trio.current_time() - started < 1
            del queues[ID(b"stuck-peer")]
            got = {(await sub.receive()).data for _ in range(3)}
            assert got == {b"after the drain", b"despite the stuck peer", b"no second wait"}


async def test_direct_lane_message_overtakes_a_gossip_flood() -> None:
    """A consensus message on a direct lane is not queued behind transaction gossip: it
    arrives while most of a TXS flood is still on its way, and before a VOTES gossip message
    published at the same moment (which waits behind the flood in pubsub's per-peer queue)."""
    async with cluster(2) as (a, b), trio.open_nursery() as nursery:
        ga, gb = Gossip(a), Gossip(b)
        la, lb = DirectLanes(a, CONSENSUS), DirectLanes(b, CONSENSUS)
        flood = [bytes([i]) * (60 << 10) for i in range(150)]
        arrived: list[str] = []
        with trio.fail_after(60):
            for s in (ga, gb, la, lb):
                await nursery.start(s.run)
            txs, votes = await gb.subscribe(TXS), await gb.subscribe(VOTES)
            await ga.wait_for_topic_peers(TXS, 1, timeout=20)
            await ga.wait_for_topic_peers(VOTES, 1, timeout=20)
            half_way, vote_seen = trio.Event(), trio.Event()

            async def count_txs() -> None:
                async for _ in txs:
                    arrived.append("tx")

            async def flood_txs() -> None:
                for i, data in enumerate(flood):
                    await ga.publish(TXS, data)
                    if i == 40:
                        half_way.set()

            async def first_vote() -> None:
                await votes.receive()
                arrived.append("gossip vote")
                vote_seen.set()

            nursery.start_soon(count_txs)
            nursery.start_soon(first_vote)
            nursery.start_soon(flood_txs)
            await half_way.wait()  # pubsub's queue to b is full of 60 KiB TXS messages
            assert la.send_all(b"lane vote") == 1
            nursery.start_soon(ga.publish, VOTES, b"gossip vote")
            peer, message = await lb.receive()
            arrived.append("lane vote")
            assert (peer, message) == (a.peer_id, b"lane vote")
            await vote_seen.wait()
        assert arrived.index("lane vote") < arrived.index("gossip vote")
        assert arrived.index("lane vote") < len(flood) // 2  # most of the flood was behind it
        assert la.dropped == 0 and lb.dropped_incoming == 0
        nursery.cancel_scope.cancel()


async def test_a_peers_signed_record_is_verified_once_not_per_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """libp2p attaches the sender's signed peer record to every RPC; checking it each time
    was ~12% of the chain benchmark's CPU.  A record already verified is not checked again."""
    import libp2p.pubsub.utils as pubsub_utils

    checks = 0
    original = pubsub_utils.consume_envelope

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal checks
        checks += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pubsub_utils, "consume_envelope", counting)
    async with _publisher_and_subscriber(TXS) as (ga, sub, _):
        with trio.fail_after(30):
            before = checks
            for i in range(50):
                await ga.publish(TXS, b"message %d" % i)
            assert {(await sub.receive()).data for _ in range(50)} == {
                b"message %d" % i for i in range(50)}
            assert checks - before <= 2  # once per record (a fresh one every RECORD_TTL s)


async def test_direct_lane_backs_off_from_a_peer_that_does_not_serve_it() -> None:
    """A peer without the protocol (a light client) costs one failed open per back-off
    period, doubling, not one per message."""
    async with cluster(2) as (a, b), trio.open_nursery() as nursery:
        lanes = DirectLanes(a, CONSENSUS, retry_s=1.0)  # b runs no DirectLanes
        with trio.fail_after(30):
            await nursery.start(lanes.run)
            assert lanes.send_all(b"first") == 1
            # quiescence: the writer's open was refused ('na') and handled
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert lanes.dropped == 1 and lanes.sent == 0
            q = lanes._peers[b.peer_id]
            assert q.failures == 1
            assert 0.5 < q.refuse_until - trio.current_time() <= 1.0
            assert lanes.send_all(b"refused") == 0  # inside the back-off: not even queued
            assert lanes.dropped == 2
            await trio.sleep_until(q.refuse_until)  # the back-off period itself is the subject
            assert lanes.send_all(b"again") == 1
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert q.failures == 2 and lanes.dropped == 3
            assert 1.5 < q.refuse_until - trio.current_time() <= 2.0  # doubled
        nursery.cancel_scope.cancel()
