"""Piece files: share layout, streamed comm_d equal to the in-memory one, and the source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storaged.client import piecefiles
from storaged.client.piecefiles import PieceFiles, streamed_comm_d
from storaged.data.piece import commitment_of, piece_offset, share_length
from storaged.data.pipeline import encode_file
from storaged.errors import NotFound


@pytest.mark.parametrize("length", [1, 4096, 70_000, (1 << 20) + 1, 3 << 20, (5 << 20) - 7])
def test_streamed_comm_d_matches_whole_piece(tmp_path: Path, length: int) -> None:
    data = os.urandom(length)
    path = tmp_path / "piece"
    path.write_bytes(data)
    assert streamed_comm_d(path) == commitment_of(data)


def test_streamed_comm_d_uses_chunks_below_the_piece(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Smaller chunks than the default: many subtrees, zero-padded tail chunks included.
    monkeypatch.setattr(piecefiles, "COMM_D_CHUNK", 8192)
    data = os.urandom(50_000)
    path = tmp_path / "piece"
    path.write_bytes(data)
    assert streamed_comm_d(path) == commitment_of(data)


async def test_pieces_hold_share_i_of_every_segment(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(os.urandom(200_000))
    shares: list[list[bytes]] = []
    (tmp_path / "p").mkdir()
    pieces = PieceFiles(tmp_path / "p", 3)

    def sink(segment: int, s: list[bytes]) -> None:
        shares.append(s)
        pieces(segment, s)

    with src.open("rb") as f:
        manifest, _ = encode_file(f, sink, k=2, n=3, segment_size=65536)
    commits = pieces.commitments()
    for i, (comm_d, padded, _digest) in enumerate(commits):
        blob = pieces.paths[i].read_bytes()
        assert (comm_d, padded) == commitment_of(blob)
        for j in range(manifest.segment_count()):
            at, n = piece_offset(manifest, j), share_length(manifest, j)
            assert blob[at : at + n] == shares[j][i]
        assert await pieces.size(comm_d) == len(blob)
        assert await pieces.read(comm_d, 5, 10) == blob[5:15]
    with pytest.raises(NotFound):
        await pieces.size(bytes(32))
