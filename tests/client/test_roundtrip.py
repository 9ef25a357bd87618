"""put and get through real libp2p against in-process providers on one LocalChain."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from storaged.chain import deals as chain_deals
from storaged.client.get import TooFewProviders, get_file
from storaged.client.progress import Quiet
from storaged.client.put import PutFailed, put_file
from storaged.data.capability import Capability, parse_capability
from storaged.data.manifest import Manifest, SegmentEntry
from storaged.data.piece import piece_length
from storaged.errors import CapabilityError, NotFound
from tests.client.env import OPTIONS, Net, Provider, storage_net


async def test_put_then_get_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    data = os.urandom(300_000)  # 5 segments of 64 KiB (the last short)
    src.write_bytes(data)
    async with storage_net(tmp_path) as net:
        with trio.fail_after(90):
            result = await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            assert len(result.placements) == OPTIONS.n
            assert len({p.peer_id for p in result.placements}) == OPTIONS.n
            assert result.manifest_copies == OPTIONS.n
            for p in result.placements:
                deal = await net.light.need_chain().deal(p.deal)
                assert deal is not None and deal["state"] == chain_deals.PUBLISHED
                assert deal["proposal"]["client"] == net.light.public_key
                assert net.provider(p.peer_id).market.pieces.has(deal["proposal"]["piece"])
            cap = parse_capability(result.capability)
            out = tmp_path / "out.bin"
            manifest = await get_file(net.light, cap, out)
            assert out.read_bytes() == data
            assert manifest.deals == tuple(p.deal for p in result.placements)
            assert manifest.pieces is not None and result.piece_size == piece_length(manifest)
            assert _leftovers(tmp_path) == []


def _leftovers(d: Path) -> list[str]:
    return [f.name for f in d.iterdir() if f.name.endswith(".part")]


class KillAfterFirstBytes(Quiet):
    """Kills the given providers the first time get reports bytes written."""

    def __init__(self, net: Net, peers: list[str]) -> None:
        self.net, self.peers, self.at = net, peers, -1
        self.done = 0

    def advance(self, n: int) -> None:
        if self.at < 0:
            self.at = self.done
            for peer in self.peers:
                self.net.provider(peer).kill()
        self.done += n


async def test_get_survives_providers_killed_mid_get(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    data = os.urandom(1_000_000)  # 16 segments
    src.write_bytes(data)
    async with storage_net(tmp_path) as net:
        with trio.fail_after(90):
            result = await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            # Slots 0 and 1 are asked first (fastest-first, ties by index); kill both (n - k).
            victims = [result.placements[0].peer_id, result.placements[1].peer_id]
            killer = KillAfterFirstBytes(net, victims)
            out = tmp_path / "out.bin"
            await get_file(net.light, parse_capability(result.capability), out, reporter=killer)
            assert 0 <= killer.at < len(data)  # they died while the get was running
            for peer in victims:
                assert net.provider(peer).stopped.is_set()
            assert out.read_bytes() == data


async def test_fewer_than_k_providers_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(150_000))
    async with storage_net(tmp_path) as net:
        with trio.fail_after(90):
            result = await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            dead = [p.peer_id for p in result.placements[:3]]  # n - k + 1
            for peer in dead:
                await net.kill(peer)
            out = tmp_path / "out.bin"
            with pytest.raises(TooFewProviders) as info:
                await get_file(net.light, parse_capability(result.capability), out)
            text = str(info.value)
            assert "only 1 of the k=2 providers needed answered for segment 0" in text
            for peer in dead:
                assert peer in text
            assert not out.exists()
            assert _leftovers(tmp_path) == []


async def test_wrong_key_is_a_capability_error_and_leaves_no_file(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(100_000))
    async with storage_net(tmp_path) as net:
        with trio.fail_after(90):
            result = await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            cap = parse_capability(result.capability)
            out = tmp_path / "out.bin"
            with pytest.raises(CapabilityError, match="does not decrypt"):
                await get_file(net.light, replace(cap, key=bytes(32)), out)
            with pytest.raises(CapabilityError, match="carries no key"):
                await get_file(net.light, replace(cap, key=None), out)
            assert not out.exists()
            assert _leftovers(tmp_path) == []
            unknown = Manifest(1, 1, 1, 1, "none", None, (SegmentEntry(bytes(32), (bytes(32),)),))
            with pytest.raises(NotFound, match="no provider holds manifest"):
                await get_file(net.light, Capability(unknown.cid(), None), out)


class Sabotage(Quiet):
    """When the pushes start: kill the first candidate, and make the second raise its ask so
    it refuses the proposal it is about to get."""

    def __init__(self, net: Net, victims: list[Provider], raise_ask: list[Provider]) -> None:
        self.net, self.victims, self.raise_ask = net, victims, raise_ask

    def start(self, description: str, total: int) -> None:
        for p in self.victims:
            p.kill()
        for p in self.raise_ask:
            p.market.set_ask(price=1 << 50)


def _candidate_order(net: Net) -> list[Provider]:
    # All asks are equal in price and free space: candidates come in peer id order.
    return sorted(net.providers, key=lambda p: p.peer_id)


async def test_put_replaces_a_dead_and_a_refusing_provider(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    data = os.urandom(200_000)
    src.write_bytes(data)
    async with storage_net(tmp_path, providers=6) as net:
        order = _candidate_order(net)
        dead, refusing = order[0], order[1]
        with trio.fail_after(90):
            result = await put_file(net.light, src, OPTIONS, workdir=tmp_path,
                                    reporter=Sabotage(net, [dead], [refusing]))
            used = {p.peer_id for p in result.placements}
            assert used == {p.peer_id for p in order[2:]}
            assert refusing.market.local_deals() == []
            out = tmp_path / "out.bin"
            await get_file(net.light, parse_capability(result.capability), out)
            assert out.read_bytes() == data


async def test_put_fails_naming_providers_when_too_few_are_left(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(100_000))
    async with storage_net(tmp_path, providers=5) as net:
        order = _candidate_order(net)
        with trio.fail_after(90):
            with pytest.raises(PutFailed) as info:
                await put_file(net.light, src, OPTIONS, workdir=tmp_path,
                               reporter=Sabotage(net, order[:2], []))
            text = str(info.value)
            assert "could not be placed" in text
            for p in order[:2]:
                assert p.peer_id in text


async def test_put_says_why_providers_are_not_eligible(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(10_000))
    async with storage_net(tmp_path, providers=4) as net:
        with trio.fail_after(60):
            with pytest.raises(PutFailed, match=r"only 0 of 4 .*price 1048576 > price-max 5"):
                await put_file(net.light, src, replace(OPTIONS, price_max=5), workdir=tmp_path)


async def test_get_replaces_a_provider_serving_corrupt_bytes(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    data = os.urandom(200_000)
    src.write_bytes(data)
    async with storage_net(tmp_path) as net:
        with trio.fail_after(90):
            result = await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            manifest_pieces = [p.peer_id for p in result.placements]
            cap = parse_capability(result.capability)
            # Flip a byte in slot 0's stored piece (the slot asked first).
            victim = net.provider(manifest_pieces[0])
            deal = await net.light.need_chain().deal(result.placements[0].deal)
            assert deal is not None
            path = victim.market.pieces.path(deal["proposal"]["piece"])
            raw = bytearray(path.read_bytes())
            raw[10] ^= 0xFF
            path.write_bytes(bytes(raw))
            out = tmp_path / "out.bin"
            await get_file(net.light, cap, out)
            assert out.read_bytes() == data
