"""Piece store under stress: resumed pushes, corruption on disk, crash leftovers."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest
import trio

from storaged.config import MarketConfig
from storaged.errors import IntegrityError, NotFound, PeerUnavailable
from storaged.node.market import AWAITING_DATA, RECEIVED, SEALING
from storaged.node.pieces import SYNC_EVERY
from storaged.store import schema
from tests.node.market_env import MemorySource, market_env, random_bytes

CONFIG = MarketConfig(price_per_gib_epoch=1, capacity_bytes=1 << 30, min_duration=50,
                      max_duration=500, collateral=0, max_deal_bytes=64 << 20,
                      min_start_delay=5, publish_timeout=10)


def flip_bit(path: Path, offset: int) -> None:
    """Corrupt one bit of a file, as a failing disk would."""
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 1]))


class CuttingSource(MemorySource):
    """A client whose connection to the provider drops once ``cut_at`` bytes were read."""

    node: object
    cut_at: int
    cut_done = False
    not_before: trio.Event | None = None  # also wait for this before cutting

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        data = await super().read(key, offset, length)
        if not self.cut_done and offset >= self.cut_at:
            self.cut_done = True
            if self.not_before is not None:
                await self.not_before.wait()
            for peer in self.node.connected_peers():  # type: ignore[attr-defined]
                await self.node.disconnect(peer)  # type: ignore[attr-defined]
        return data


async def test_push_resumes_after_the_connection_breaks(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        source = CuttingSource()
        source.node, source.cut_at = env.client_node, 12 << 20
        env.source = source
        data = random_bytes(20 << 20)
        with trio.fail_after(90):
            deal_id, comm_d = await env.deal_for(data)
            digest = blake3.blake3(data).digest()  # so the source is read only by the push
            result = await env.client_transfers.push(env.provider_peer, comm_d, source,
                                                     digest=digest, attempts=3)
        assert source.cut_done
        assert result.attempts == 2
        assert 0 < result.resumed_from < len(data)
        pieces = env.market.pieces
        assert pieces.has(comm_d) and env.enqueued == [deal_id]
        assert await pieces.read(comm_d, (20 << 20) - 5, 100) == data[-5:]
        assert not list(pieces.dir.glob("*.part"))


async def test_corrupt_block_is_an_integrity_error_not_served(tmp_path: Path) -> None:
    async with market_env(tmp_path, CONFIG) as env:
        data = random_bytes(700_000)
        with trio.fail_after(60):
            _, comm_d = await env.deal_for(data)
            await env.client_transfers.push(env.provider_peer, comm_d, env.source)
        pieces = env.market.pieces
        assert await pieces.read(comm_d, 300_000, 10) == data[300_000:300_010]
        flip_bit(pieces.path(comm_d), 300_000)  # in the second 256 KiB block
        with pytest.raises(IntegrityError, match="block 1 is corrupt"):
            await pieces.read(comm_d, 299_990, 20)
        # Other blocks are still served.
        assert await pieces.read(comm_d, 0, 100) == data[:100]
        assert await pieces.read(comm_d, 600_000, 100_000) == data[600_000:]
        with pytest.raises(NotFound):
            await pieces.size(bytes(32))


async def test_an_empty_piece_is_stored_padded_and_handed_to_the_sealer(tmp_path: Path
                                                                        ) -> None:
    """A 0-byte file's piece carries no bytes: the push still commits (zero padding only)."""
    async with market_env(tmp_path, CONFIG) as env:
        with trio.fail_after(60):
            deal_id, comm_d = await env.deal_for(b"")
            result = await env.client_transfers.push(env.provider_peer, comm_d, env.source)
        assert result.attempts == 1
        pieces = env.market.pieces
        assert pieces.has(comm_d) and env.enqueued == [deal_id]
        assert await pieces.size(comm_d) == 0
        assert pieces.path(comm_d).stat().st_size == 4096


async def test_restart_hands_over_a_piece_stored_before_a_crash(tmp_path: Path) -> None:
    data = random_bytes(50_000)
    async with market_env(tmp_path, CONFIG) as env:
        with trio.fail_after(60):
            deal_id, comm_d = await env.deal_for(data)
            await env.client_transfers.push(env.provider_peer, comm_d, env.source)
        assert env.enqueued == [deal_id]
        market = env.market
        # Simulate a crash between the piece index write and the deal state update, plus a
        # complete-looking piece file whose index write never happened.
        local = market.local_deal(deal_id)
        assert local is not None and local.state == SEALING
        from dataclasses import replace

        market.kv.put(schema.market_deal_key(deal_id),
                      replace(local, state=AWAITING_DATA).encode())
        stray = market.pieces.dir / ("ab" * 32)
        stray.write_bytes(b"half")
        partial = market.pieces.dir / f"{'cd' * 32}.{'ef' * 32}.part"
        partial.write_bytes(b"resume point")
    async with market_env(tmp_path, CONFIG) as env3:  # same LevelDB and piece directory
        assert env3.enqueued == [deal_id]
        deal = env3.market.local_deal(deal_id)
        assert deal is not None and deal.state == SEALING
        assert not stray.exists()
        assert partial.exists()
        assert env3.market.pieces.has(comm_d)
        assert env3.market.pieces.path(comm_d).stat().st_size == 64 << 10


async def test_after_a_restart_only_the_fsynced_prefix_is_trusted(tmp_path: Path) -> None:
    data = random_bytes(20 << 20)
    async with market_env(tmp_path, CONFIG) as env:
        source = CuttingSource()
        source.node, source.cut_at = env.client_node, 15 << 20  # between two syncs (every 8 MiB)
        # ... and only once the provider has stored past the first sync: the client reads
        # ahead of what the provider has stored, so without this the cut can land while the
        # provider is still in its fsync at 8 MiB, leaving no unsynced tail to test.
        source.not_before = past_sync = trio.Event()
        pieces, write = env.market.pieces, env.market.pieces.write

        async def watched_write(key: bytes, offset: int, chunk: bytes) -> None:
            await write(key, offset, chunk)
            if pieces.bytes_received > SYNC_EVERY:
                past_sync.set()

        pieces.write = watched_write  # type: ignore[method-assign]
        env.source = source
        with trio.fail_after(60):
            _, comm_d = await env.deal_for(data)
            digest = blake3.blake3(data).digest()
            with pytest.raises(PeerUnavailable):
                await env.client_transfers.push(env.provider_peer, comm_d, source,
                                                digest=digest, attempts=1)
            # The provider may still be storing chunks it had queued (and syncing them):
            # read what is durable only once it is done, or the garbling below would hit
            # bytes it synced in the meantime.
            await env.provider_transfers.wait_idle()
        pieces = env.market.pieces
        (part,) = pieces.dir.glob("*.part")
        synced = int.from_bytes(env.kv.get(schema.piece_upload_key(comm_d, digest)) or b"",
                                "big")
        assert synced >= SYNC_EVERY and synced % SYNC_EVERY == 0
        assert part.stat().st_size > synced
    # A crash garbles the unsynced tail; the restarted store cuts it and resumes from the
    # durable length, and the push completes from there.
    with part.open("r+b") as f:
        f.seek(synced)
        f.write(b"\xff" * 4096)
    async with market_env(tmp_path, CONFIG) as env2:
        env2.source.objects[comm_d] = data
        with trio.fail_after(60):
            result = await env2.client_transfers.push(env2.provider_peer, comm_d, env2.source,
                                                      digest=digest)
        assert result.resumed_from == synced
        assert env2.market.pieces.has(comm_d)
        assert await env2.market.pieces.read(comm_d, synced, 8192) == data[synced:synced + 8192]
        assert env2.kv.get(schema.piece_upload_key(comm_d, digest)) is None


async def test_a_failing_sealer_hook_never_fails_the_push(tmp_path: Path) -> None:
    data = random_bytes(40_000)
    async with market_env(tmp_path, CONFIG) as env:

        def refuse(deal_id: int) -> None:
            raise NotFound(f"deal {deal_id}: sealer not ready")

        env.market.enqueue = refuse
        with trio.fail_after(60):
            deal_id, comm_d = await env.deal_for(data)
            await env.client_transfers.push(env.provider_peer, comm_d, env.source)
        assert env.market.pieces.has(comm_d)
        local = env.market.local_deal(deal_id)
        assert local is not None and local.state == RECEIVED
    async with market_env(tmp_path, CONFIG) as env2:  # restart: handed over again
        assert env2.enqueued == [deal_id]
        local = env2.market.local_deal(deal_id)
        assert local is not None and local.state == SEALING
