"""put edge cases: empty and public files round trip, missing file, low funds, --wait deadline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from storaged.client.get import get_file
from storaged.client.put import DealsNotActive, put_file, wait_active
from storaged.data.capability import parse_capability
from storaged.errors import UserError
from tests.client.env import OPTIONS, storage_net


async def test_public_file_and_empty_file_round_trip(tmp_path: Path) -> None:
    async with storage_net(tmp_path) as net:
        with trio.fail_after(90):
            src = tmp_path / "public"
            data = b"hello " * 9999
            src.write_bytes(data)
            result = await put_file(net.light, src, replace(OPTIONS, public=True),
                                    workdir=tmp_path)
            cap = parse_capability(result.capability)
            assert cap.key is None
            out = tmp_path / "public.out"
            await get_file(net.light, cap, out)
            assert out.read_bytes() == data
            empty = tmp_path / "empty"
            empty.write_bytes(b"")
            result = await put_file(net.light, empty, OPTIONS, workdir=tmp_path)
            assert result.size == 0 and result.piece_size == 0
            assert len(result.placements) == OPTIONS.n  # deals for a minimal padded piece
            out = tmp_path / "empty.out"
            out.write_bytes(b"stale")  # replaced, not appended to
            await get_file(net.light, parse_capability(result.capability), out)
            assert out.read_bytes() == b""


async def test_missing_file_and_too_little_money_are_user_errors(tmp_path: Path) -> None:
    async with storage_net(tmp_path, client_funds=50) as net:
        with trio.fail_after(60):
            with pytest.raises(UserError, match="is not a readable file"):
                await put_file(net.light, tmp_path / "nope", OPTIONS, workdir=tmp_path)
            src = tmp_path / "f"
            src.write_bytes(b"x" * 100_000)
            with pytest.raises(UserError, match="not enough funds"):
                await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            assert [p for p in net.providers if p.market.local_deals()] == []


async def test_wait_ends_at_its_deadline_or_when_a_deal_expires(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"y" * 10_000)
    async with storage_net(tmp_path) as net:
        with trio.fail_after(60):
            # No sealer runs here, so no deal becomes ACTIVE.  Far start: the deadline ends it.
            late = await put_file(net.light, src, replace(OPTIONS, start_margin=10_000),
                                  workdir=tmp_path)
            deals = [p.deal for p in late.placements]
            with pytest.raises(DealsNotActive, match=r"not ACTIVE after 0\.5 s") as info:
                await wait_active(net.light, deals, timeout=0.5, poll=0.1)
            for d in deals:
                assert f"{d} PUBLISHED" in str(info.value)
            # Near start (10 blocks of 50 ms): the chain expires the deals unactivated.
            soon = await put_file(net.light, src, OPTIONS, workdir=tmp_path)
            with pytest.raises(DealsNotActive, match="EXPIRED_UNACTIVATED: not activated"):
                await wait_active(net.light, [p.deal for p in soon.placements], timeout=30,
                                  poll=0.1)
