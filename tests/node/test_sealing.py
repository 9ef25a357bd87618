"""The PoRep pipeline against the real chain rules: market hand-off → seal (C labelling) →
precommit → seed → PoRep → provecommit → deal ACTIVE; and a restart mid-pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import trio

from storaged.chain import block as block_mod
from storaged.chain.tx import decode_tx
from storaged.node import sectors as sec
from tests.node.conftest import SealingEnv, overwrite, sealing_env
from tests.node.market_env import CHAIN


def tx_kinds(s: SealingEnv, kind: str) -> list[dict[str, object]]:
    """Bodies of every committed tx of ``kind`` (scans the block store)."""
    out = []
    app = s.env.chain.app
    for h in range(1, app.head().height + 1):
        raw = app.block_at(h)
        assert raw is not None
        for tx_raw in block_mod.decode_block(raw).txs:
            tx = decode_tx(tx_raw, CHAIN)
            if tx.kind == kind:
                out.append(tx.body)
    return out


async def test_a_pushed_piece_is_sealed_and_its_deal_activated(tmp_path: Path) -> None:
    async with sealing_env(tmp_path) as s:
        with trio.fail_after(60):
            deal_id, comm_d = await s.push_deal(os.urandom(40_000))
        rec = await s.until(lambda: (r := s.sealer.store.by_deal(deal_id)) is not None
                            and r.state in (sec.ACTIVE, sec.FAILED) and r, seconds=60)
        assert rec.state == sec.ACTIVE, rec.error
        view = s.env.chain.view()
        me = bytes(s.env.provider_key.verify_key)
        assert s.deal_state(deal_id) == "ACTIVE"
        on_chain = view.sector(me, rec.sector)
        assert on_chain is not None and on_chain["comm_r"] == rec.comm_r
        assert rec.comm_d == comm_d and rec.size == 64 << 10
        assert s.sealer.store.has_replica(rec.sector, 64 << 10)
        # The replica is not the data: the unsealed piece and the replica differ.
        assert (s.sealer.store.replica_path(rec.sector).read_bytes()
                != s.env.market.pieces.path(comm_d).read_bytes())
        assert [b["sector"] for b in tx_kinds(s, "precommit_sector")] == [rec.sector]
        assert [b["sector"] for b in tx_kinds(s, "provecommit_sector")] == [rec.sector]
        jobs = s.sealer.sealing_jobs()["jobs"]
        assert jobs == []  # nothing left in the pipeline
        snap = json.loads(json.dumps(s.sealer.snapshot()))
        assert snap[0]["state"] == sec.ACTIVE and snap[0]["comm_r"] == rec.comm_r.hex()
        assert s.metrics.get_sample_value("storaged_sectors_sealed_total") == 1
        assert s.metrics.get_sample_value("storaged_sectors_activated_total") == 1


async def test_restart_between_precommit_and_provecommit_resumes(tmp_path: Path) -> None:
    async with sealing_env(tmp_path) as s:
        with trio.fail_after(60):
            deal_id, _ = await s.push_deal(os.urandom(30_000))
            while (rec := s.sealer.store.by_deal(deal_id)) is None \
                    or rec.state != sec.PRECOMMITTED:
                assert rec is None or rec.state in sec.PIPELINE, rec.error
                await s.sealer.changed.wait()
        s.stop()  # "crash" while waiting for the seed: nothing beyond the precommit is done
        me = bytes(s.env.provider_key.verify_key)
        assert s.deal_state(deal_id) == "PUBLISHED"
        assert s.env.chain.view().sector(me, rec.sector) is not None
        # Worse: the crash came after the precommit committed but before the local record
        # said so.  The resumed job must find it on chain instead of sending it again.
        s.sealer.store.update(rec, state=sec.SEALED)
        await s.start()  # new Sealer and Prover on the same LevelDB and sector files
        done = await s.until(lambda: (r := s.sealer.store.require(rec.sector)).state
                             in (sec.ACTIVE, sec.FAILED) and r, seconds=60)
        assert done.state == sec.ACTIVE, done.error
        assert s.deal_state(deal_id) == "ACTIVE"
        # The precommit was sent once; the resumed job did not re-seal or re-send it.
        assert len(tx_kinds(s, "precommit_sector")) == 1
        assert done.ticket_height == rec.ticket_height and done.comm_r == rec.comm_r


async def test_a_piece_rotten_before_sealing_fails_its_job_only(tmp_path: Path) -> None:
    async with sealing_env(tmp_path, start=False) as s:
        with trio.fail_after(60):
            bad_deal, bad_piece = await s.push_deal(os.urandom(30_000))
        # The stored piece rots on disk before the sealer gets to it.
        overwrite(s.env.market.pieces.path(bad_piece), 1000, b"rot!")
        await s.start()
        s.sealer.enqueue(bad_deal)
        with trio.fail_after(60):
            good_deal, _ = await s.push_deal(os.urandom(30_000))
        good = await s.until(lambda: (r := s.sealer.store.by_deal(good_deal)) is not None
                             and r.state in (sec.ACTIVE, sec.FAILED) and r, seconds=60)
        assert good.state == sec.ACTIVE, good.error
        bad = s.sealer.store.by_deal(bad_deal)
        assert bad is not None and bad.state == sec.FAILED
        assert "comm_d" in bad.error
        assert not s.sealer.store.replica_path(bad.sector).exists()
        assert [b["sector"] for b in tx_kinds(s, "precommit_sector")] == [good.sector]
        assert [j["sector"] for j in s.sealer.sealing_jobs()["jobs"]] == [bad.sector]
        assert s.metrics.get_sample_value("storaged_sealing_failures_total") == 1


async def test_waiting_sectors_are_sealed_as_one_batch(tmp_path: Path) -> None:
    # Five deals wait for the one seal worker (seal_workers=1 here); one piece rots first.
    # The good four are sealed together (one batch, or one alone and three batched), each
    # replica is the one a lone seal gives (checked against proofs.seal.seal and by the chain's
    # PoRep verification), and the rotten one fails alone.
    from proofs import seal as proofs_seal
    from storaged.node.sectors import map_file

    async with sealing_env(tmp_path, start=False) as s:
        deals = []
        with trio.fail_after(120):
            for _ in range(5):
                deals.append(await s.push_deal(os.urandom(40_000)))
        bad_deal, bad_piece = deals.pop(2)
        overwrite(s.env.market.pieces.path(bad_piece), 1000, b"rot!")
        await s.start()
        for deal_id, _ in [*deals, (bad_deal, bad_piece)]:
            s.sealer.enqueue(deal_id)
        done = await s.until(lambda: all(
            (r := s.sealer.store.by_deal(d)) is not None and r.state in (sec.ACTIVE, sec.FAILED)
            for d, _ in deals), seconds=120)
        assert done
        assert s.metrics.get_sample_value("storaged_sectors_batch_sealed_total") >= 3
        me = bytes(s.env.provider_key.verify_key)
        view = s.env.chain.view()
        for deal_id, comm_d in deals:
            rec = s.sealer.store.by_deal(deal_id)
            assert rec is not None and rec.state == sec.ACTIVE, rec
            assert s.deal_state(deal_id) == "ACTIVE"
            rid = view.replica_id(me, rec.sector)
            alone = bytearray(rec.size)
            with map_file(s.env.market.pieces.path(comm_d)) as data:
                comms = proofs_seal.seal(data, rid, s.sealer.profile().layers, alone)
            assert comms.comm_r == rec.comm_r
            assert s.sealer.store.replica_path(rec.sector).read_bytes() == alone
        bad = await s.until(lambda: (r := s.sealer.store.by_deal(bad_deal)) is not None
                            and r.state == sec.FAILED and r, seconds=60)
        assert "comm_d" in bad.error
        assert not s.sealer.store.replica_path(bad.sector).exists()
        assert s.metrics.get_sample_value("storaged_sectors_sealed_total") == 4


def test_batch_size_is_bounded_by_labelling_memory() -> None:
    # (16 + lanes) x size must fit BATCH_MEMORY, and a batch is worth it from 3 sectors.
    from storaged.node.sealing import BATCH_MEMORY, batch_lanes

    mib = 1 << 20
    assert batch_lanes(64 << 10) == 8
    assert batch_lanes(64 * mib) == 8
    assert batch_lanes(200 * mib) == 4
    assert (16 + 4) * 200 * mib <= BATCH_MEMORY < (16 + 5) * 200 * mib
    assert batch_lanes(230 * mib) == 1  # room for 1 or 2 lanes only: seal alone
    assert batch_lanes(8 << 30) == 1
