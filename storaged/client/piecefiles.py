"""The n piece files of a put: share i of every segment appended to file i, in segment order.

The encoder's sink writes each segment's n shares straight to disk, so a put holds only the
pipeline's window of segments in memory whatever the file size.  Once written, the files are
the :class:`~storaged.net.flow.ChunkSource` the pushes read from (keyed by each piece's comm_d).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import trio

from proofs import merkle
from storaged.data.piece import commitment_of_file, padded_size
from storaged.errors import LocalBugError, NotFound, ResourceError

HASH_BLOCK = 1 << 20
COMM_D_CHUNK = 1 << 20  # leaves per subtree: 32 Ki leaves of 32 bytes (a power of two)


class PieceFiles:
    """``n`` append-only piece files in ``directory`` (the caller owns and removes it)."""

    def __init__(self, directory: Path, n: int) -> None:
        self.dir = directory
        self.paths = [directory / f"piece-{i:03d}" for i in range(n)]
        self._files = [p.open("wb") for p in self.paths]
        self._by_key: dict[bytes, Path] = {}
        self.on_read: Callable[[int], None] | None = None

    # -- writing (the encoder's ShareSink, called from its worker thread) -----------------------

    def __call__(self, segment: int, shares: list[bytes]) -> None:
        """Append share i of ``segment`` to piece i.

        Raises:
            ResourceError: the disk is full or the file cannot be written.
        """
        if len(shares) != len(self._files):
            raise LocalBugError(f"segment {segment}: {len(shares)} shares for "
                                f"{len(self._files)} pieces")
        try:
            for f, share in zip(self._files, shares, strict=True):
                f.write(share)
        except OSError as exc:
            raise ResourceError(f"cannot write piece files in {self.dir}: {exc}") from exc

    def close(self) -> None:
        """Flush and close the files (idempotent)."""
        for f in self._files:
            if not f.closed:
                f.close()

    # -- commitments ---------------------------------------------------------------------------

    def commitments(self) -> list[tuple[bytes, int, bytes]]:
        """``(comm_d, padded size, blake3)`` of every piece, by slot.  Pieces are hashed in
        parallel threads (the C Merkle code and blake3 release the GIL; each thread holds one
        1 MiB subtree, see :func:`streamed_comm_d`).  Registers each piece as a source under
        its comm_d.  Run it in a thread.

        Raises:
            ResourceError: a piece cannot be read.
        """
        self.close()

        def one(path: Path) -> tuple[bytes, int, bytes]:
            comm_d, padded = streamed_comm_d(path)
            return comm_d, padded, _blake3_file(path)

        with ThreadPoolExecutor(max(1, min(len(self.paths), os.cpu_count() or 1)),
                                thread_name_prefix="comm_d") as pool:
            out = list(pool.map(one, self.paths))
        for path, (comm_d, _, _) in zip(self.paths, out, strict=True):
            self._by_key[comm_d] = path
        return out

    # -- ChunkSource --------------------------------------------------------------------------

    def _path(self, key: bytes) -> Path:
        path = self._by_key.get(key)
        if path is None:
            raise NotFound(f"piece {key.hex()[:16]} is not one of this put's pieces")
        return path

    async def size(self, key: bytes) -> int:
        return self._path(key).stat().st_size

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        path = self._path(key)

        def pread() -> bytes:
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, length, offset)
            finally:
                os.close(fd)

        data = await trio.to_thread.run_sync(pread)
        if self.on_read is not None:
            self.on_read(len(data))
        return data


def _subtree_root(chunk: bytes | bytearray) -> bytes:
    return merkle.merkle_root(chunk, merkle.merkle_tree(chunk))


def streamed_comm_d(path: Path) -> tuple[bytes, int]:
    """``(comm_d, padded size)`` of the piece in ``path``, equal to
    :func:`storaged.data.piece.commitment_of_file` but in O(COMM_D_CHUNK) memory.

    The comm_d tree is binary over 32-byte leaves with one node function at every level, and
    the padded size and the chunk are powers of two; so the root is the tree over the roots
    of the aligned chunks (zero chunks past the data share one precomputed root).

    Raises:
        ResourceError: the file cannot be read.
    """
    try:
        length = path.stat().st_size
        padded = padded_size(length)
        if padded <= COMM_D_CHUNK:
            return commitment_of_file(path)
        roots = bytearray()
        zero_root: bytes | None = None
        with path.open("rb") as f:
            for _ in range(padded // COMM_D_CHUNK):
                chunk = f.read(COMM_D_CHUNK)
                if not chunk:
                    if zero_root is None:
                        zero_root = _subtree_root(bytes(COMM_D_CHUNK))
                    roots += zero_root
                    continue
                if len(chunk) < COMM_D_CHUNK:
                    chunk += bytes(COMM_D_CHUNK - len(chunk))
                roots += _subtree_root(chunk)
    except OSError as exc:
        raise ResourceError(f"cannot read piece {path}: {exc}") from exc
    return _subtree_root(roots), padded


def _blake3_file(path: Path) -> bytes:
    hasher = blake3.blake3()
    try:
        with path.open("rb") as f:
            while block := f.read(HASH_BLOCK):
                hasher.update(block)
    except OSError as exc:
        raise ResourceError(f"cannot read piece {path}: {exc}") from exc
    digest: bytes = hasher.digest()
    return digest
