"""The deal protocol end to end: real LocalChain, LevelDB and libp2p hosts in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from storaged.chain import deals as chain_deals
from storaged.chain.state import StateOverlay
from storaged.config import MarketConfig
from storaged.data.manifest import Manifest, SegmentEntry
from storaged.net.errors import (
    RemoteBadRequest,
    RemoteIntegrityFailure,
    RemoteNotFound,
    RemoteRejected,
)
from storaged.node.market import AWAITING_DATA, FAILED, SEALING
from tests.node.market_env import CHAIN, key, market_env, random_bytes

GIB = 1 << 30
# Collateral one unit per byte and price 1/1024 per byte per epoch: small deals, real sums.
CONFIG = MarketConfig(price_per_gib_epoch=1 << 20, capacity_bytes=192 << 10,
                      min_duration=50, max_duration=500, collateral=GIB,
                      max_deal_bytes=512 << 10, min_start_delay=5, publish_timeout=10)


async def test_ask_reports_terms_and_free_capacity(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        with trio.fail_after(20):
            ask = await env.deal({"op": "ask"})
        assert ask["provider"] == bytes(env.provider_key.verify_key)
        assert ask["peer_id"] == env.provider_peer
        assert (ask["price"], ask["collateral"]) == (1 << 20, GIB)
        assert (ask["min_duration"], ask["max_duration"]) == (50, 500)
        assert ask["free"] == 192 << 10
        assert ask["max_size"] == 192 << 10  # capacity is below max_deal_bytes


async def test_accepted_proposal_is_published_on_chain(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        with trio.fail_after(30):
            comm_d = bytes(range(32))
            p = env.proposal(comm_d, 64 << 10)
            answer = await env.propose(p)
            deal_id = answer["deal"]
            on_chain = chain_deals.load_deal(StateOverlay(env.kv), deal_id)
            assert on_chain is not None
            assert on_chain["state"] == chain_deals.PUBLISHED
            assert on_chain["proposal"] == p
            status = await env.deal({"op": "deal_status", "deal": deal_id})
            assert status["state"] == AWAITING_DATA
            assert status["chain_state"] == chain_deals.PUBLISHED
            assert status["received"] == 0
            # Capacity is taken by the deal; a retry of the same proposal is the same deal.
            assert (await env.deal({"op": "ask"}))["free"] == (192 - 64) << 10
            again = await env.propose(p)
            assert again["deal"] == deal_id
            assert env.market.committed_bytes() == 64 << 10
            with pytest.raises(RemoteNotFound):
                await env.deal({"op": "deal_status", "deal": deal_id + 100})


async def test_proposal_after_a_height_waits_for_it_or_is_refused(tmp_path: Path) -> None:
    """``after``: the provider checks the client's escrow only once its node has committed
    that height (a client one block ahead); a height far ahead is refused, not waited on."""
    async with market_env(tmp_path, CONFIG) as env:
        with trio.fail_after(30):
            sign = chain_deals.sign_proposal
            p = env.proposal(bytes(range(32)), 64 << 10)
            target = env.chain.head().height + 2
            answer = await env.deal({"op": "propose", "proposal": p, "after": target,
                                     "client_sig": sign(env.client_key, CHAIN, p)})
            assert answer["height"] >= target
            assert env.chain.head().height >= target
            far = env.chain.head().height + 1000
            q = env.proposal(bytes(range(1, 33)), 64 << 10)
            with pytest.raises(RemoteRejected, match="still syncing"):
                await env.deal({"op": "propose", "proposal": q, "after": far,
                                "client_sig": sign(env.client_key, CHAIN, q)})
            with pytest.raises(RemoteBadRequest, match="block height"):
                await env.deal({"op": "propose", "proposal": q, "after": -1,
                                "client_sig": sign(env.client_key, CHAIN, q)})


async def test_each_refusal_names_its_reason(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG, provider_escrow=100_000) as env:
        piece = bytes(32)
        base = 64 << 10
        head = env.chain.head().height
        stranger = bytes(key(7).verify_key)
        cases = [
            ("provider", env.proposal(piece, base, provider=stranger)),
            ("size", env.proposal(piece, 5000)),
            ("size", env.proposal(piece, 1 << 20)),
            ("capacity", env.proposal(piece, 256 << 10)),
            ("duration", env.proposal(piece, base, end=env.proposal(piece, base)["start"] + 49)),
            ("duration", env.proposal(piece, base, end=env.proposal(piece, base)["start"] + 501)),
            ("start too soon", env.proposal(piece, base, start=head + 2, end=head + 102)),
            ("price", env.proposal(piece, base, price=63)),
            ("collateral", env.proposal(piece, base, collateral=0)),
            ("client escrow", env.proposal(piece, base, price=10**14)),
            ("provider escrow", env.proposal(piece, 128 << 10)),
        ]
        with trio.fail_after(60):
            for reason, p in cases:
                with pytest.raises(RemoteRejected) as info:
                    await env.propose(p)
                    pytest.fail(f"accepted a proposal that should fail on {reason}")
                assert type(info.value) is RemoteRejected, reason
                assert reason in str(info.value), (reason, str(info.value))
            good = env.proposal(piece, base)
            with pytest.raises(RemoteRejected, match="client signature"):
                await env.propose(good, sig=bytes(64))
            with pytest.raises(RemoteRejected, match="client signature"):
                await env.propose(good, sig=chain_deals.sign_proposal(key(1), "other", good))
            with pytest.raises(RemoteBadRequest):
                await env.deal({"op": "propose", "proposal": {"piece": piece},
                                "client_sig": b"x" * 64})
            with pytest.raises(RemoteBadRequest):
                await env.deal({"op": "nonsense"})
            # Nothing was published and no capacity is held by the refusals.
            assert env.market.local_deals() == []
            assert env.market.free_bytes() == 192 << 10
            await env.propose(good)
            assert len(env.market.local_deals()) == 1


async def test_pushed_piece_is_checked_stored_sealed_and_fetched(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        data = random_bytes(100_000)
        with trio.fail_after(60):
            deal_id, comm_d = await env.deal_for(data)
            result = await env.client_transfers.push(env.provider_peer, comm_d, env.source)
            assert result.size == len(data)
            assert env.enqueued == [deal_id]
            pieces = env.market.pieces
            assert pieces.has(comm_d)
            assert pieces.stored_bytes() == 128 << 10
            # On disk the piece is zero-padded to the deal size, for the sealer.
            on_disk = pieces.path(comm_d).read_bytes()
            assert on_disk == data + bytes((128 << 10) - len(data))
            status = await env.deal({"op": "deal_status", "deal": deal_id})
            assert (status["state"], status["received"]) == (SEALING, len(data))
            for offset, length in [(0, 100_000), (12_345, 70_000), (99_990, 10), (99_999, 1)]:
                got = bytearray()

                async def consume(at: int, chunk: bytes, got: bytearray = got) -> None:
                    got.extend(chunk)

                await env.client_transfers.fetch(env.provider_peer, comm_d, consume,
                                                 offset=offset, length=length)
                assert bytes(got) == data[offset : offset + length], (offset, length)


async def test_wrong_piece_unknown_piece_and_oversize_are_refused(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        data = random_bytes(60_000)
        with trio.fail_after(60):
            deal_id, comm_d = await env.deal_for(data)
            # Other bytes under the deal's comm_d: blake3 matches the offer, comm_d does not.
            env.source.objects[comm_d] = random_bytes(60_000)
            with pytest.raises(RemoteIntegrityFailure, match="comm_d mismatch"):
                await env.client_transfers.push(env.provider_peer, comm_d, env.source)
            pieces = env.market.pieces
            assert not pieces.has(comm_d)
            assert pieces.stored_bytes() == 0
            assert list(pieces.dir.iterdir()) == []
            assert env.enqueued == []
            assert (await env.deal({"op": "deal_status", "deal": deal_id}))["state"] == \
                AWAITING_DATA
            # No deal for this key.
            env.source.objects[bytes(32)] = b"x" * 1000
            with pytest.raises(RemoteNotFound, match="no published deal"):
                await env.client_transfers.push(env.provider_peer, bytes(32), env.source)
            # More bytes than the deal holds.
            env.source.objects[comm_d] = random_bytes((64 << 10) + 1)
            with pytest.raises(RemoteBadRequest, match="larger than its deal"):
                await env.client_transfers.push(env.provider_peer, comm_d, env.source)
            # The right bytes still go through afterwards.
            env.source.objects[comm_d] = data
            await env.client_transfers.push(env.provider_peer, comm_d, env.source)
            assert pieces.has(comm_d) and env.enqueued == [deal_id]


async def test_push_refused_when_the_disk_is_full(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG, min_free=1 << 62) as env:
        from storaged.net.errors import RemoteBusy

        with trio.fail_after(60):
            _, comm_d = await env.deal_for(random_bytes(10_000))
            with pytest.raises(RemoteBusy, match="disk full"):
                await env.client_transfers.push(env.provider_peer, comm_d, env.source)
            assert not env.market.pieces.has(comm_d)
            assert list(env.market.pieces.dir.iterdir()) == []


def _manifest(deals: list[int]) -> Manifest:
    seg = SegmentEntry(bytes(32), (bytes([1]) * 32, bytes([2]) * 32))
    return Manifest(size=10, segment_size=1 << 20, k=1, n=2, cipher="none", nonce_prefix=None,
                    segments=(seg,), deals=tuple(deals), providers=("a", "b"))


async def test_manifest_put_get_and_refusals(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        with trio.fail_after(60):
            deal_id = (await env.propose(env.proposal(bytes(32), 4096)))["deal"]
            mine = _manifest([deal_id + 50, deal_id])
            cid = mine.cid()
            with pytest.raises(RemoteNotFound):
                await env.deal({"op": "manifest_get", "cid": cid})
            other = _manifest([deal_id + 1])
            with pytest.raises(RemoteIntegrityFailure, match="do not match CID"):
                await env.deal({"op": "manifest_put", "cid": cid, "manifest": other.encode()})
            with pytest.raises(RemoteRejected, match="none of this provider's deals"):
                await env.deal({"op": "manifest_put", "cid": other.cid(),
                                "manifest": other.encode()})
            with pytest.raises(RemoteBadRequest, match="CID"):
                await env.deal({"op": "manifest_put", "cid": "bogus", "manifest": b"x"})
            with pytest.raises(RemoteBadRequest, match="manifest"):
                from storaged.data.cid import DAG_CBOR, cid_for

                await env.deal({"op": "manifest_put", "cid": cid_for(DAG_CBOR, b"junk"),
                                "manifest": b"junk"})
            assert await env.deal({"op": "manifest_put", "cid": cid,
                                   "manifest": mine.encode()}) == {}
            got = await env.deal({"op": "manifest_get", "cid": cid})
            assert got["manifest"] == mine.encode()
            assert env.market.manifests.count() == 1


def test_chain_id_is_the_test_chain() -> None:
    assert CHAIN.startswith("storaged-")


async def test_second_deal_for_a_stored_piece_and_an_expired_deal(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        data = random_bytes(30_000)
        with trio.fail_after(60):
            first, comm_d = await env.deal_for(data)
            await env.client_transfers.push(env.provider_peer, comm_d, env.source)
            assert env.enqueued == [first]
            # Another deal for the same bytes is handed to the sealer as soon as it is published.
            p = env.proposal(comm_d, 32 << 10, end=env.proposal(comm_d, 1)["end"] + 1)
            second = (await env.propose(p))["deal"]
            assert second != first and env.enqueued == [first, second]
            assert (await env.deal({"op": "deal_status", "deal": second}))["state"] == SEALING
            # A deal naming the same comm_d at another size can never be satisfied.
            bad = (await env.propose(env.proposal(comm_d, 64 << 10)))["deal"]
            status = await env.deal({"op": "deal_status", "deal": bad})
            assert status["state"] == FAILED and "commits to 32768" in status["reason"]
            assert env.enqueued == [first, second]
            # A deal whose piece never arrives expires on chain at its start epoch: its
            # capacity comes back and a late push is refused.
            late_data = random_bytes(20_000)
            from storaged.data.piece import commitment_of

            late_piece, size = commitment_of(late_data)
            env.source.objects[late_piece] = late_data
            head = env.chain.head().height
            start = head + CONFIG.min_start_delay + 1
            late = env.proposal(late_piece, size, start=start, end=start + 50)
            late_id = (await env.propose(late))["deal"]
            assert env.market.free_bytes() == (192 - 32 - 32 - 32) << 10
            await env.chain.wait_height(start + 1, timeout=30)
            assert (await env.deal({"op": "deal_status", "deal": late_id}))["chain_state"] == \
                chain_deals.EXPIRED_UNACTIVATED
            assert env.market.free_bytes() == (192 - 64) << 10
            with pytest.raises(RemoteNotFound, match="no published deal"):
                await env.client_transfers.push(env.provider_peer, late_piece, env.source)


async def test_capacity_is_reserved_while_a_publish_is_pending(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        outcomes: list[str] = []

        async def propose(piece: bytes) -> None:
            try:
                await env.propose(env.proposal(piece, 128 << 10))
                outcomes.append("accepted")
            except RemoteRejected as exc:
                outcomes.append(str(exc))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(propose, bytes([1]) * 32)
                nursery.start_soon(propose, bytes([2]) * 32)
        assert sorted(outcomes)[0] == "accepted"
        assert "capacity: 131072 bytes asked, 65536 free" in sorted(outcomes)[1]
        assert env.market.free_bytes() == 64 << 10
