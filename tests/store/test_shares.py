"""Share store: put/get/has/delete/list, streaming writer, verification, recovery, ENOSPC."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from storaged.errors import IntegrityError, NotFound, ResourceError
from storaged.store import schema, shares
from storaged.store.kv import LevelKV
from storaged.store.shares import IndexRecord, ShareKey, ShareStore

PIECE = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ShareStore]:
    kv = LevelKV(tmp_path / "index")
    yield ShareStore.open(tmp_path / "shares", kv)
    kv.close()


VECTOR = json.loads(
    (Path(__file__).parent.parent / "vectors" / "store_v1.json").read_text()
)["share_index"]


def test_index_record_golden_vector() -> None:
    rec = IndexRecord(size=VECTOR["size"], digest=bytes.fromhex(VECTOR["digest"]))
    assert rec.encode().hex() == VECTOR["record"]
    assert IndexRecord.decode(bytes.fromhex(VECTOR["record"])) == rec
    key = schema.share_key(bytes.fromhex(VECTOR["piece"]), VECTOR["segment"], VECTOR["index"])
    assert key.hex() == VECTOR["key"]
    with pytest.raises(shares.CorruptIndexError, match="version 2"):
        IndexRecord.decode(b"\x02" + rec.encode()[1:])
    with pytest.raises(shares.CorruptIndexError, match="40 bytes"):
        IndexRecord.decode(rec.encode()[:-1])


def test_put_get_has_delete_list(store: ShareStore) -> None:
    k1, k2, k3 = ShareKey(PIECE, 0, 1), ShareKey(PIECE, 0, 0), ShareKey(PIECE, 1, 0)
    other = ShareKey(b"\xff" * 32, 0, 0)
    for k in (k1, k2, k3, other):
        store.put(k, f"{k}".encode() * 3)
    assert store.get(k1) == f"{k1}".encode() * 3
    assert store.has(k3) and not store.has(ShareKey(PIECE, 9, 9))
    assert store.list_piece(PIECE) == [k2, k1, k3]
    assert store.total_bytes() == sum(len(f"{k}".encode() * 3) for k in (k1, k2, k3, other))
    store.delete(k1)
    with pytest.raises(NotFound, match=str(k1)):
        store.get(k1)
    assert store.delete_piece(PIECE) == 2
    assert store.list_piece(PIECE) == []
    assert store.get(other) == f"{other}".encode() * 3


def test_empty_share(store: ShareStore) -> None:
    key = ShareKey(PIECE, 0, 0)
    store.put(key, b"")
    assert store.get(key) == b""


def test_flipped_bit_on_disk_is_caught(store: ShareStore, tmp_path: Path) -> None:
    key = ShareKey(PIECE, 2, 5)
    store.put(key, b"x" * 1000)
    path = next((tmp_path / "shares").rglob("*.share"))
    data = bytearray(path.read_bytes())
    data[500] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{PIECE.hex()}/2/5"):
        store.get(key)


def test_streaming_writer_checks_digest(store: ShareStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 256 * 1024 + 17)
    key = ShareKey(PIECE, 0, 0)
    w = store.writer(key, blake3.blake3(data).digest())
    for off in range(0, len(data), 256 * 1024):
        w.write(data[off : off + 256 * 1024])
    w.commit()
    assert store.get(key) == data
    bad = ShareKey(PIECE, 0, 1)
    w = store.writer(bad, blake3.blake3(b"other").digest())
    w.write(data)
    with pytest.raises(IntegrityError, match="expected blake3"):
        w.commit()
    assert not store.has(bad)
    assert not list((tmp_path / "shares").rglob(".tmp-*"))
    assert len(list((tmp_path / "shares").rglob("*.share"))) == 1


def test_enospc_is_resource_error_and_leaves_nothing(
    store: ShareStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    key = ShareKey(PIECE, 0, 0)
    with pytest.raises(ResourceError, match="disk full"):
        store.put(key, b"data")
    monkeypatch.undo()
    assert not store.has(key)
    assert [p for p in (tmp_path / "shares").rglob("*") if p.is_file()] == []


def test_recovery_sweep(tmp_path: Path) -> None:
    kv = LevelKV(tmp_path / "index")
    store = ShareStore.open(tmp_path / "shares", kv)
    good, missing, short = ShareKey(PIECE, 0, 0), ShareKey(PIECE, 0, 1), ShareKey(PIECE, 0, 2)
    for k in (good, missing, short):
        store.put(k, b"abc" * 100)
    root = tmp_path / "shares"
    files = sorted(root.rglob("*.share"))
    files[1].unlink()
    files[2].write_bytes(b"abc")
    (files[0].parent / ".tmp-deadbeef").write_bytes(b"partial")
    (files[0].parent / "00000009-0000.share").write_bytes(b"orphan")
    store = ShareStore.open(root, kv)
    rep = store.last_recovery
    assert rep.temp_files_removed == 1
    assert set(rep.dropped_entries) == {missing, short}
    assert rep.orphan_files_removed == 2  # the truncated file lost its entry, plus the orphan
    assert store.list_piece(PIECE) == [good]
    assert store.get(good) == b"abc" * 100
    assert sorted(root.rglob("*.share")) == [files[0]]
    kv.close()
