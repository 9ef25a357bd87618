"""Golden vectors: the on-disk formats of the market and piece store (changing one is a
format version bump, not a refactor)."""

from __future__ import annotations

import pytest

from storaged.errors import LocalBugError
from storaged.node.market import LocalDeal, deal_collateral, deal_price
from storaged.node.pieces import PieceRecord
from storaged.store import schema

PIECE_RECORD = bytes.fromhex(
    "a661760165626c6f636b1a0004000066626c616b65335820000102030405060708090a0b0c0d0e0f10111213"
    "1415161718191a1b1c1d1e1f66626c6f636b738158200707070707070707070707070707070707070707070707"
    "070707070707070707666c656e6774680566706164646564191000")
LOCAL_DEAL = bytes.fromhex(
    "a56176016573746174656d6177616974696e675f64617461666865696768741166726561736f6e606870726f"
    "706f73616ca863656e6418c86473697a65191000657069656365582001010101010101010101010101010101"
    "0101010101010101010101010101010165707269636505657374617274186466636c69656e74582002020202"
    "020202020202020202020202020202020202020202020202020202026870726f766964657258200303030303"
    "0303030303030303030303030303030303030303030303030303036a636f6c6c61746572616c09")
PROPOSAL = {"piece": bytes([1]) * 32, "size": 4096, "client": bytes([2]) * 32,
            "provider": bytes([3]) * 32, "price": 5, "start": 100, "end": 200, "collateral": 9}


def test_piece_record_v1() -> None:
    rec = PieceRecord(5, 4096, bytes(range(32)), 262144, (bytes([7]) * 32,))
    assert rec.encode() == PIECE_RECORD
    assert PieceRecord.decode(PIECE_RECORD) == rec


def test_local_deal_record_v1() -> None:
    deal = LocalDeal(3, PROPOSAL, "awaiting_data", "", 17)
    assert deal.encode() == LOCAL_DEAL
    assert LocalDeal.decode(3, LOCAL_DEAL) == deal


def test_market_keys() -> None:
    assert schema.market_deal_key(3) == bytes.fromhex("500000000000000003")
    assert schema.market_piece_deal_key(bytes(32), 1) == b"\x51" + bytes(32) + schema.u64(1)
    assert schema.piece_key(bytes([9]) * 32) == b"\x52" + bytes([9]) * 32
    assert schema.market_manifest_key(bytes(32))[:1] == b"\x53"
    assert schema.market_proposal_key(bytes(32))[:1] == b"\x54"
    assert schema.piece_upload_key(bytes(32), bytes([1]) * 32)[:33] == b"\x55" + bytes(32)


def test_malformed_records_are_our_bug() -> None:
    with pytest.raises(LocalBugError, match="piece index record"):
        PieceRecord.decode(b"\xa0")
    with pytest.raises(LocalBugError, match="local deal 4"):
        LocalDeal.decode(4, b"\x01")


@pytest.mark.parametrize(("per_gib", "size", "want"), [
    (0, 1 << 30, 0), (1, 4096, 1), (1, 1 << 30, 1), (1, (1 << 30) + 1, 2), (1 << 30, 4096, 4096),
    (3, 1 << 31, 6),
])
def test_price_and_collateral_round_up(per_gib: int, size: int, want: int) -> None:
    assert deal_price(per_gib, size) == want
    assert deal_collateral(per_gib, size) == want
