"""Sector store: job records in LevelDB, durable replica files, replica checks with real seals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proofs import seal as proofs_seal
from storaged.config import from_mapping
from storaged.errors import ConfigError, IntegrityError, LocalBugError, NotFound
from storaged.node import sectors as sec
from storaged.node.scrub import check_replica
from storaged.node.sectors import PostOutcome, Sector, SectorStore
from storaged.store import schema
from storaged.store.kv import LevelKV
from tests.node.conftest import overwrite

SIZE = 16 << 10
COMM_D = bytes(range(32))


def test_records_survive_reopen_and_numbers_are_never_reused(tmp_path: Path) -> None:
    kv = LevelKV(tmp_path / "db")
    store = SectorStore(tmp_path / "sectors", kv)
    a = store.create(7, COMM_D, SIZE, height=3)
    assert store.create(7, COMM_D, SIZE, height=9) == a  # idempotent per deal
    b = store.create(8, COMM_D, SIZE, height=4)
    assert (a.sector, b.sector) == (0, 1)
    store.update(a, state=sec.SEALED, comm_r=b"\x01" * 32, ticket_height=3)
    store.record_post(1, PostOutcome(height=12, period=2, ok=False, error="late"))
    store.record_event(0, 5, "fault", "bit rot")
    store.record_event(0, 6, "resealed", "ok")
    kv.close()

    kv = LevelKV(tmp_path / "db")
    store = SectorStore(tmp_path / "sectors", kv)
    got = store.require(0)
    assert (got.state, got.comm_r, got.ticket_height, got.deal) == (
        sec.SEALED, b"\x01" * 32, 3, 7)
    assert store.by_deal(8) == b
    assert store.create(9, COMM_D, SIZE, height=5).sector == 2
    assert store.last_post(1) == {"height": 12, "period": 2, "ok": False, "error": "late"}
    assert [e["event"] for e in store.events(0)] == ["fault", "resealed"]
    assert [s.sector for s in store.all()] == [0, 1, 2]
    snap = got.snapshot()
    assert snap["comm_d"] == COMM_D.hex() and snap["comm_c"] is None
    with pytest.raises(NotFound):
        store.require(99)
    kv.close()


def test_a_damaged_record_is_a_local_bug(tmp_path: Path) -> None:
    kv = LevelKV(tmp_path / "db")
    store = SectorStore(tmp_path / "sectors", kv)
    kv.put(schema.sector_key(4), b"\xa1\x61v\x02")  # {"v": 2}
    with pytest.raises(LocalBugError):
        store.get(4)
    rec = Sector(sector=5, deal=1, comm_d=COMM_D, size=SIZE)
    assert Sector.decode(rec.encode()) == rec
    kv.close()


def test_replica_write_is_atomic(tmp_path: Path) -> None:
    kv = LevelKV(tmp_path / "db")
    store = SectorStore(tmp_path / "sectors", kv)

    def fill(out: memoryview) -> int:
        out[:] = b"\x07" * len(out)
        return len(out)

    assert store.write_replica(3, SIZE, fill) == SIZE
    assert store.has_replica(3, SIZE)

    def broken(out: memoryview) -> None:
        out[:4] = b"XXXX"
        raise RuntimeError("labelling crashed")

    with pytest.raises(RuntimeError):
        store.write_replica(3, SIZE, broken)
    # The old replica is untouched and no temp file is left behind.
    assert store.replica_path(3).read_bytes() == b"\x07" * SIZE
    assert os.listdir(store.dir) == ["3.replica"]
    with store.open_replica(3, SIZE) as view:
        assert bytes(view[:2]) == b"\x07\x07"
    with pytest.raises(IntegrityError), store.open_replica(3, SIZE * 2):
        pass
    with pytest.raises(NotFound), store.open_replica(4, SIZE):
        pass
    kv.close()


async def test_check_replica_finds_rot_and_loss(tmp_path: Path) -> None:
    kv = LevelKV(tmp_path / "db")
    store = SectorStore(tmp_path / "sectors", kv)
    data = os.urandom(SIZE)
    rid = proofs_seal.replica_id(b"p" * 32, 0, proofs_seal.comm_d(data), b"t" * 32)
    comms = store.write_replica(0, SIZE, lambda out: proofs_seal.seal(data, rid, 2, out))
    rec = store.update(store.create(1, comms.comm_d, SIZE, height=1), state=sec.ACTIVE,
                       comm_c=comms.comm_c, comm_r_last=comms.comm_r_last, comm_r=comms.comm_r)
    assert await check_replica(store, rec) is None

    byte = store.replica_path(0).read_bytes()[SIZE // 2 + 5]
    overwrite(store.replica_path(0), SIZE // 2 + 5, bytes([byte ^ 0x10]))  # one flipped bit
    reason = await check_replica(store, rec)
    assert reason is not None and "comm_r_last" in reason

    # Re-sealing under the same replica id rebuilds the identical replica.
    again = store.write_replica(0, SIZE, lambda out: proofs_seal.seal(data, rid, 2, out))
    assert again == comms
    assert await check_replica(store, rec) is None

    store.replica_path(0).unlink()
    reason = await check_replica(store, rec)
    assert reason is not None and "missing" in reason
    kv.close()


def test_proofs_config_keys() -> None:
    cfg = from_mapping({"proofs": {"seal_workers": 3, "post_margin": 0}},
                       env={"STORAGED_PROOFS_POST_MARGIN": "7"})
    assert (cfg.proofs.seal_workers, cfg.proofs.post_margin) == (3, 7)
    assert from_mapping({}).proofs.seal_workers == 0  # one per core
    for bad in ({"seal_workers": -1}, {"seal_workers": 257}, {"post_margin": "x"}):
        with pytest.raises(ConfigError, match="proofs"):
            from_mapping({"proofs": bad})
