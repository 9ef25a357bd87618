"""The optional ``pieces`` field of the manifest (one comm_d per slot)."""

from __future__ import annotations

import cbor2
import pytest

from storaged.data.manifest import (
    CIPHER_NONE,
    Manifest,
    ManifestError,
    SegmentEntry,
    decode_manifest,
)


def _manifest(pieces: tuple[bytes, ...] | None) -> Manifest:
    seg = SegmentEntry(b"\x01" * 32, (b"\x02" * 32, b"\x03" * 32, b"\x04" * 32))
    return Manifest(10, 16, 2, 3, CIPHER_NONE, None, (seg,), deals=(4, 5, 6),
                    providers=("a", "b", "c"), pieces=pieces)


def test_pieces_round_trip_and_change_the_cid() -> None:
    with_pieces = _manifest((b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32))
    data = with_pieces.encode()
    assert decode_manifest(data, with_pieces.cid()) == with_pieces
    assert cbor2.loads(data)["pieces"] == [b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32]
    without = _manifest(None)
    assert "pieces" not in cbor2.loads(without.encode())
    assert decode_manifest(without.encode()) == without
    assert without.cid() != with_pieces.cid()


@pytest.mark.parametrize("bad", [
    [b"\xaa" * 32, b"\xbb" * 32],  # not n entries
    [b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 31],  # not 32 bytes
    [b"\xaa" * 32, b"\xbb" * 32, "text"],
    b"\xaa" * 96,
])
def test_malformed_pieces_are_refused(bad: object) -> None:
    obj = cbor2.loads(_manifest(None).encode())
    obj["pieces"] = bad
    with pytest.raises(ManifestError, match="piece"):
        decode_manifest(cbor2.dumps(obj, canonical=True))
