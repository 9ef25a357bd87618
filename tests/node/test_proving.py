"""PoSts across proving periods, and scrub → declare_fault → re-seal → recovery, against the
real chain rules and real proofs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import trio

from storaged.node import sectors as sec
from storaged.node.sectors import Sector
from tests.node.conftest import SealingEnv, overwrite, sealing_env


async def activated(s: SealingEnv, data: bytes) -> Sector:
    with trio.fail_after(60):
        deal_id, _ = await s.push_deal(data)
    rec: Sector = await s.until(lambda: (r := s.sealer.store.by_deal(deal_id)) is not None
                                and r.state in (sec.ACTIVE, sec.FAILED) and r, seconds=60)
    assert rec.state == sec.ACTIVE, rec.error
    return rec


async def test_posts_keep_the_deal_active_and_pay_the_provider(tmp_path: Path) -> None:
    async with sealing_env(tmp_path) as s:
        rec = await activated(s, os.urandom(20_000))
        me = bytes(s.env.provider_key.verify_key)
        app = s.env.chain.app
        before = app.account(me).total()
        await s.until(lambda: s.prover.ok_count >= 2, seconds=60)
        assert s.deal_state(rec.deal) == "ACTIVE"
        assert s.chain_sector(rec.sector)["state"] == "ACTIVE"
        assert s.prover.missed_count == 0
        assert app.account(me).total() > before  # payments exceed the tx fees
        last = s.sealer.store.last_post(rec.sector)
        assert last is not None and last["ok"] and last["period"] >= 1
        status = s.prover.proving_status()
        assert status["posts_ok"] >= 2
        assert [x["sector"] for x in status["sectors"]] == [rec.sector]
        assert json.loads(json.dumps(status))["sectors"][0]["last_post"]["ok"] is True
        assert s.metrics.get_sample_value("storaged_posts_ok_total") == s.prover.ok_count
        assert s.metrics.get_sample_value("storaged_posts_missed_total") == 0


async def test_a_corrupted_replica_is_declared_then_recovered(tmp_path: Path) -> None:
    async with sealing_env(tmp_path, scrub_interval=1) as s:
        rec = await activated(s, os.urandom(20_000))
        bytes(s.env.provider_key.verify_key)
        path = s.sealer.store.replica_path(rec.sector)
        overwrite(path, 10_000, b"\xff\x00\xff\x00")  # bit rot in the middle
        # The scrubber finds it and declares it before any PoSt is missed ...
        await s.until(lambda: any(e["event"] == "declared"
                                  for e in s.sealer.store.events(rec.sector)), seconds=30)
        # ... then rebuilds the replica from the unsealed piece; the next PoSt recovers it.
        done = await s.until(lambda: (r := s.sealer.store.require(rec.sector)).state
                             == sec.ACTIVE and any(e["event"] == "recovered"
                                                   for e in s.sealer.store.events(rec.sector))
                             and r, seconds=60)
        events = [e["event"] for e in s.sealer.store.events(done.sector)]
        assert events[:2] == ["fault", "declared"]
        assert "resealed" in events and events[-1] == "recovered"
        assert s.chain_sector(rec.sector)["state"] == "ACTIVE"
        assert s.deal_state(rec.deal) == "ACTIVE"
        assert s.prover.missed_count == 0
        assert path.read_bytes()[10_000:10_004] != b"\xff\x00\xff\x00"


async def test_a_lost_replica_is_declared_before_its_window(tmp_path: Path) -> None:
    """Without a scheduled scrub, the pre-window check finds a deleted replica, declares it,
    and the unsealed piece brings it back."""
    async with sealing_env(tmp_path, scrub_interval=3600, post_margin=3) as s:
        rec = await activated(s, os.urandom(20_000))
        await s.until(lambda: s.prover.ok_count >= 1, seconds=60)  # the prover knows the window
        s.sealer.store.replica_path(rec.sector).unlink()
        await s.until(lambda: any(e["event"] == "declared"
                                  for e in s.sealer.store.events(rec.sector)), seconds=30)
        first = s.sealer.store.events(rec.sector)[0]
        assert first["event"] == "fault" and "before window" in first["reason"]
        await s.until(lambda: s.sealer.store.require(rec.sector).state == sec.ACTIVE
                      and s.sealer.store.has_replica(rec.sector, rec.size), seconds=60)
        assert s.prover.missed_count == 0


async def test_without_the_unsealed_piece_a_fault_stays_declared(tmp_path: Path) -> None:
    """Bit rot in the replica AND the unsealed piece gone: the fault is declared, recovery
    fails with its reason recorded, and no PoSt is sent for the sector."""
    async with sealing_env(tmp_path, scrub_interval=1) as s:
        rec = await activated(s, os.urandom(20_000))
        me = bytes(s.env.provider_key.verify_key)
        s.env.market.pieces.path(rec.comm_d).unlink()
        overwrite(s.sealer.store.replica_path(rec.sector), 100, b"\x00" * 64)
        await s.until(lambda: any(e["event"] == "recovery_failed"
                                  for e in s.sealer.store.events(rec.sector)), seconds=30)
        assert s.sealer.store.require(rec.sector).state == sec.FAULTY
        assert s.chain_sector(rec.sector)["state"] == "FAULTY"
        failed = [e for e in s.sealer.store.events(rec.sector) if e["event"] == "recovery_failed"]
        assert "not on disk" in failed[0]["reason"]
        # Let the sector's current window close (or a full period pass): still no proof.
        proofs_sent = s.prover.ok_count
        head = s.env.chain.head().height
        due = s.env.chain.view().post_due(me, head)
        until = due[0].close + 1 if due else head + 12
        await s.until(lambda: s.env.chain.head().height >= until, seconds=30)
        assert s.prover.ok_count == proofs_sent  # nothing was proven for a bad replica
        assert s.sealer.store.require(rec.sector).state == sec.FAULTY


async def test_a_sector_is_retired_when_its_deal_ends(tmp_path: Path) -> None:
    async with sealing_env(tmp_path, duration=25) as s:
        rec = await activated(s, os.urandom(20_000))
        deal = s.env.chain.view().deal(rec.deal)
        assert deal is not None
        end = deal["proposal"]["end"]
        done = await s.until(lambda: (r := s.sealer.store.require(rec.sector)).state
                             == sec.DONE and r, seconds=30)
        assert s.env.chain.head().height >= end
        assert s.deal_state(rec.deal) == "COMPLETED"
        assert not s.sealer.store.replica_path(rec.sector).exists()
        assert not s.sealer.store.tree_path(rec.sector).exists()
        assert "COMPLETED" in done.error
        assert s.prover.ok_count >= 2 and s.prover.missed_count == 0
