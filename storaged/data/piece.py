"""Pieces: what one provider stores for one file, and its commitment.

A file put with k-of-n coding has n *slots*; the piece of slot i is share i of every segment,
concatenated in segment order.  Share i of segment j therefore sits at
``piece_offset(manifest, j)`` and is ``share_length(manifest, j)`` bytes long, so a reader
fetches exactly the byte range it needs from the provider of that slot.

A piece is sealed into one sector.  Sectors are powers of two (at least 4 KiB), so the piece is
padded with zeros to :func:`padded_size`; the deal's piece commitment is the Merkle root
(``comm_d``, :func:`proofs.seal.comm_d`) of the padded bytes.  Client and provider compute it
independently, which is what ties the deal on chain to the bytes the provider seals.
"""

from __future__ import annotations

from pathlib import Path

from proofs import seal as proofs_seal
from storaged.data import erasure
from storaged.data.manifest import Manifest
from storaged.errors import ResourceError

MIN_SECTOR = 4096


def padded_size(length: int) -> int:
    """The sector size holding ``length`` bytes: the next power of two, at least 4 KiB."""
    size = MIN_SECTOR
    while size < length:
        size <<= 1
    return size


def share_length(manifest: Manifest, segment: int) -> int:
    """Bytes of each share of ``segment``."""
    return erasure.share_size(manifest.stored_length(segment), manifest.k)


def piece_offset(manifest: Manifest, segment: int) -> int:
    """Where the shares of ``segment`` start inside every slot's piece."""
    return sum(share_length(manifest, j) for j in range(segment))


def piece_length(manifest: Manifest) -> int:
    """Total bytes of each slot's piece (the same for every slot)."""
    return piece_offset(manifest, manifest.segment_count())


def commitment_of(data: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """``(comm_d, padded size)`` of a piece held in memory.

    Memory: one padded copy of the piece (the Merkle tree is built in C over it).
    """
    size = padded_size(len(data))
    padded = bytearray(size)
    padded[: len(data)] = data
    return proofs_seal.comm_d(padded), size


def commitment_of_file(path: Path) -> tuple[bytes, int]:
    """``(comm_d, padded size)`` of a piece stored in ``path``.

    Raises:
        ResourceError: the file cannot be read.
    """
    try:
        length = path.stat().st_size
        size = padded_size(length)
        padded = bytearray(size)
        with path.open("rb") as f:
            f.readinto(memoryview(padded)[:length])
    except OSError as exc:
        raise ResourceError(f"cannot read piece {path}: {exc}") from exc
    return proofs_seal.comm_d(padded), size
