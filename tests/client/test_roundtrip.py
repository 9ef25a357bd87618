"""put and get through real libp2p against in-process providers on one LocalChain."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from storaged.chain import deals as chain_deals
from storaged.client.get import TooFewProviders, get_file
from storaged.client.put import put_file
from storaged.data.capability import parse_capability
from storaged.data.piece import piece_length
from tests.client.env import OPTIONS, storage_net


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
            assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".out")] == []
