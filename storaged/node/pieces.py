"""Unsealed pieces on disk: what clients push, what the sealer seals, what fetch serves.

A piece is named by its ``comm_d`` (the deal's piece commitment).  Files under ``home/pieces/``:

- ``<comm_d hex>.<blake3 hex>.part``: an upload in progress (the blake3 in the name keeps a
  resumed push from splicing two different objects).  Every ``SYNC_EVERY`` bytes it is
  fdatasync'ed and the synced length recorded (``0x55``, :func:`schema.piece_upload_key`).  A
  push resumed in the same process continues from the file's length; after a restart, from
  the recorded durable length (the unsynced tail, which a crash may have garbled, is cut).
  A partial file is never counted as stored.
- ``<comm_d hex>``: a complete piece, zero-padded on disk to the deal size (a power of two, so
  the sealer reads the sector's data as is); only its first ``length`` bytes are served.

Index record v1 (LevelDB key :func:`storaged.store.schema.piece_key`), canonical CBOR::

    {"v": 1, "length": uint unpadded bytes, "padded": uint deal size, "blake3": bytes(32) of
     the unpadded bytes, "block": uint block size, "blocks": [bytes(32) blake3 of each block
     of the unpadded bytes]}

Reads verify the blake3 of every block they touch, so a bit flipped on disk is an
IntegrityError, never silently served.  A piece becomes visible only through :meth:`commit`:
fsync, zero-pad to the deal size, comm_d recomputed in a worker thread and compared with the
key, rename, then the index record.  A crash between rename and index leaves a file without a
record; :meth:`PieceStore.sweep` (run at start) deletes it, and the client pushes again.

The store refuses a push it has no deal for; which deals exist is the market's business, asked
through the :class:`PieceDeals` protocol.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import blake3
import trio

from storaged.chain import encoding
from storaged.data.piece import commitment_of_file
from storaged.errors import (
    IntegrityError,
    LocalBugError,
    NotFound,
    ResourceError,
    UserError,
)
from storaged.store import schema
from storaged.store.kv import KV

log = logging.getLogger(__name__)

INDEX_VERSION = 1
BLOCK = 256 << 10
SYNC_EVERY = 8 << 20
RECORD_FIELDS: dict[str, type] = {"v": int, "length": int, "padded": int, "blake3": bytes,
                                  "block": int, "blocks": list}


class PieceDeals(Protocol):
    """What the piece store asks the market about deals."""

    def expected_size(self, comm_d: bytes) -> int:
        """The deal size (padded) of a piece this provider waits for.

        Raises:
            NotFound: no published deal of this provider is waiting for ``comm_d``.
        """
        ...

    def on_received(self, comm_d: bytes) -> Awaitable[None]:
        """A piece was stored and its comm_d checked: hand its deals to the sealer."""
        ...


@dataclass(frozen=True)
class PieceRecord:
    """The index entry of one stored piece."""

    length: int
    padded: int
    blake3: bytes
    block: int
    blocks: tuple[bytes, ...]

    def encode(self) -> bytes:
        return encoding.encode({"v": INDEX_VERSION, "length": self.length, "padded": self.padded,
                                "blake3": self.blake3, "block": self.block,
                                "blocks": list(self.blocks)})

    @classmethod
    def decode(cls, raw: bytes) -> PieceRecord:
        """Raises LocalBugError: the stored record is malformed (our own write)."""
        try:
            obj = encoding.require_map(encoding.decode(raw), RECORD_FIELDS, "piece record")
        except Exception as exc:
            raise LocalBugError(f"piece index record is malformed: {exc}") from exc
        if obj["v"] != INDEX_VERSION:
            raise LocalBugError(f"piece index record version {obj['v']} is unknown")
        return cls(obj["length"], obj["padded"], obj["blake3"], obj["block"],
                   tuple(obj["blocks"]))


def _pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _block_hashes(path: Path, length: int) -> tuple[bytes, tuple[bytes, ...]]:
    whole = blake3.blake3()
    blocks = []
    with path.open("rb") as f:
        left = length
        while left:
            data = f.read(min(BLOCK, left))
            if not data:
                raise LocalBugError(f"{path} is shorter than {length}")
            whole.update(data)
            blocks.append(blake3.blake3(data).digest())
            left -= len(data)
    return whole.digest(), tuple(blocks)


class PieceStore:
    """Unsealed pieces: a :class:`~storaged.net.flow.ChunkSink` (pushes) and a
    :class:`~storaged.net.flow.ChunkSource` (ranged fetches) over ``directory`` + LevelDB.

    ``min_free`` bytes of the file system are kept free: a push that would eat into them is
    refused with ResourceError before a byte is written.
    """

    def __init__(self, directory: Path, kv: KV, deals: PieceDeals, *, min_free: int = 0) -> None:
        self.dir = directory
        self.kv = kv
        self.deals = deals
        self.min_free = min_free
        self.dir.mkdir(parents=True, exist_ok=True)
        self._digests: dict[bytes, bytes] = {}
        self._records: dict[bytes, PieceRecord] = {}
        self._open_uploads: dict[tuple[bytes, bytes], int] = {}  # -> bytes since last sync
        self.bytes_received = 0  # pushed bytes written (this process), for metrics
        self.bytes_served = 0  # fetched bytes read out (this process), for metrics

    # -- paths and index ---------------------------------------------------------------------

    def path(self, comm_d: bytes) -> Path:
        """The complete piece's file (zero-padded to the deal size), for the sealer."""
        return self.dir / schema.hash32(comm_d).hex()

    def _part(self, comm_d: bytes) -> Path:
        digest = self._digests.get(comm_d)
        if digest is None:
            raise LocalBugError(f"no upload in progress for piece {comm_d.hex()}")
        return self.dir / f"{comm_d.hex()}.{digest.hex()}.part"

    def record(self, comm_d: bytes) -> PieceRecord | None:
        """The index record of a stored piece, if stored."""
        cached = self._records.get(comm_d)
        if cached is not None:
            return cached
        raw = self.kv.get(schema.piece_key(comm_d))
        if raw is None:
            return None
        rec = PieceRecord.decode(raw)
        self._records[comm_d] = rec
        return rec

    def has(self, comm_d: bytes) -> bool:
        """Whether the complete piece is stored."""
        return len(comm_d) == 32 and self.record(comm_d) is not None

    def partial_length(self, comm_d: bytes) -> int:
        """Bytes held of an upload in progress (0 if none); the full length once stored."""
        rec = self.record(comm_d) if len(comm_d) == 32 else None
        if rec is not None:
            return rec.length
        best = 0
        for part in self.dir.glob(f"{comm_d.hex()}.*.part"):
            try:
                best = max(best, part.stat().st_size)
            except FileNotFoundError:
                continue
        return best

    def stored_bytes(self) -> int:
        """Sum of the padded sizes of all stored pieces (what they occupy on disk)."""
        total = 0
        for _key, raw in self.kv.scan(schema.PIECE):
            total += PieceRecord.decode(raw).padded
        return total

    def count(self) -> int:
        """Number of stored pieces."""
        return sum(1 for _ in self.kv.scan(schema.PIECE))

    def sweep(self) -> int:
        """Delete complete-piece files that have no index record (a crash between rename and
        index); returns how many.  Partial files are kept: they are resume points."""
        removed = 0
        for entry in self.dir.iterdir():
            name = entry.name
            if "." in name or len(name) != 64:
                continue
            try:
                comm_d = bytes.fromhex(name)
            except ValueError:
                continue
            if self.record(comm_d) is None:
                log.warning("removing unindexed piece file %s", entry)
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

    async def remove(self, comm_d: bytes) -> None:
        """Drop a stored piece (file and record), e.g. once sealed when unsealed copies are
        not kept.  Missing pieces are ignored."""
        self.kv.delete(schema.piece_key(comm_d))
        self._records.pop(comm_d, None)
        await trio.to_thread.run_sync(lambda: self.path(comm_d).unlink(missing_ok=True))

    # -- ChunkSink -----------------------------------------------------------------------------

    async def begin(self, key: bytes, size: int, digest: bytes) -> int:
        """Accept a push of ``size`` bytes hashing to ``digest``; return the durable length
        already held (the resume point).

        Raises:
            UserError: the key is not a 32-byte comm_d, or other bytes are already stored
                under it, or ``size`` exceeds the deal size.
            NotFound: no published deal of this provider waits for this piece.
            ResourceError: the disk cannot hold it (keeping ``min_free`` free).
        """
        if len(key) != 32:
            raise UserError(f"a piece key is a 32-byte comm_d, got {len(key)} bytes")
        deal_size = self.deals.expected_size(key)
        if size > deal_size:
            raise UserError(f"piece of {size} bytes is larger than its deal ({deal_size} bytes)")
        rec = self.record(key)
        if rec is not None:
            # A retry after a lost "done": the bytes are here; the sender re-hashes them.
            if rec.blake3 != digest or rec.length != size:
                raise UserError(f"piece {key.hex()[:16]} is already stored with other bytes")
            self._digests[key] = digest
            return size
        self._digests[key] = digest
        part = self._part(key)
        upload = (key, digest)
        raw_synced = self.kv.get(schema.piece_upload_key(key, digest))
        synced = 0 if raw_synced is None else int.from_bytes(raw_synced, "big")
        # Written by this process: the page cache holds every byte we wrote, so the whole
        # file counts.  Otherwise (a restart) only what was fsynced is trusted.
        trust_all = upload in self._open_uploads

        def prepare() -> int:
            held = part.stat().st_size if part.exists() else 0
            if not trust_all and held > synced:
                os.truncate(part, synced)
                held = synced
            if held > size:
                part.unlink()
                held = 0
            st = os.statvfs(self.dir)
            free = st.f_bavail * st.f_frsize
            # The piece grows to the deal size on commit (zero padding).
            need = deal_size - held
            if need > free - self.min_free:
                raise ResourceError(
                    f"disk full: piece needs {need} more bytes, {free} free in {self.dir} "
                    f"(keeping {self.min_free} free)")
            part.touch()  # exists from here on: an empty piece (a 0-byte file) gets no write
            return held

        held = await trio.to_thread.run_sync(prepare)
        self._open_uploads.setdefault(upload, 0)
        return held

    async def read_back(self, key: bytes, offset: int, length: int) -> bytes:
        """Bytes already held for an upload (the final file after a completed one)."""
        if self.record(key) is not None:
            return await trio.to_thread.run_sync(_pread, self.path(key), offset, length)
        return await trio.to_thread.run_sync(_pread, self._part(key), offset, length)

    async def write(self, key: bytes, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset`` of the upload.

        Raises:
            ResourceError: the disk filled up (the partial file stays, never counted).
        """
        if self.record(key) is not None:
            return  # already complete (a resumed push re-sending nothing new)
        part = self._part(key)
        upload = (key, self._digests[key])
        unsynced = self._open_uploads.get(upload, 0) + len(data)
        sync_now = unsynced >= SYNC_EVERY

        def put() -> int:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data, offset)
                if sync_now:
                    os.fdatasync(fd)
                    return os.fstat(fd).st_size
                return -1
            finally:
                os.close(fd)

        try:
            durable = await trio.to_thread.run_sync(put)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ResourceError(f"disk full writing piece {key.hex()[:16]}: {exc}") from exc
            raise ResourceError(f"cannot write piece {key.hex()[:16]}: {exc}") from exc
        self.bytes_received += len(data)
        if durable >= 0:
            # Chunks arrive in order, so the file's length after fdatasync is all durable.
            self.kv.put(schema.piece_upload_key(*upload), schema.u64(durable))
            unsynced = 0
        self._open_uploads[upload] = unsynced

    async def commit(self, key: bytes) -> None:
        """All bytes arrived and match the offered blake3: check comm_d, make it visible,
        tell the market.

        Raises:
            IntegrityError: the padded bytes do not hash to ``key`` (the upload is deleted).
            ResourceError: the disk cannot take the padding or the rename.
        """
        if self.record(key) is not None:
            # Bytes already stored (a retry, or a second deal for the same piece): hand any
            # deal still waiting for them to the market.
            self._digests.pop(key, None)
            await self.deals.on_received(key)
            return
        part, final = self._part(key), self.path(key)
        digest = self._digests[key]
        deal_size = self.deals.expected_size(key)

        def finish() -> PieceRecord:
            length = part.stat().st_size
            with part.open("r+b") as f:
                os.fsync(f.fileno())
            whole, blocks = _block_hashes(part, length)
            os.truncate(part, deal_size)  # zero padding to the sector size
            comm_d, padded = commitment_of_file(part)
            if comm_d != key or padded != deal_size:
                part.unlink(missing_ok=True)
                raise IntegrityError(
                    f"piece comm_d mismatch: the bytes pushed for {key.hex()[:16]} commit to "
                    f"{comm_d.hex()[:16]} (padded {padded}); discarded")
            with part.open("r+b") as f:
                os.fsync(f.fileno())
            os.replace(part, final)
            _fsync_dir(self.dir)
            return PieceRecord(length, deal_size, whole, BLOCK, blocks)

        try:
            rec = await trio.to_thread.run_sync(finish)
        except IntegrityError:
            self.kv.delete(schema.piece_upload_key(key, digest))
            self._open_uploads.pop((key, digest), None)
            raise
        except OSError as exc:
            raise ResourceError(f"cannot finish piece {key.hex()[:16]}: {exc}") from exc
        finally:
            self._digests.pop(key, None)
        with self.kv.batch() as batch:
            batch.put(schema.piece_key(key), rec.encode())
            batch.delete(schema.piece_upload_key(key, digest))
        self._open_uploads.pop((key, digest), None)
        self._records[key] = rec
        log.info("piece %s stored (%d bytes, deal size %d)", key.hex()[:16], rec.length,
                 rec.padded)
        await self.deals.on_received(key)

    async def discard(self, key: bytes) -> None:
        """The bytes failed their blake3: drop the partial upload."""
        if self.record(key) is not None:
            return
        part = self._part(key)
        await trio.to_thread.run_sync(lambda: part.unlink(missing_ok=True))
        digest = self._digests.pop(key)
        self.kv.delete(schema.piece_upload_key(key, digest))
        self._open_uploads.pop((key, digest), None)

    # -- ChunkSource ---------------------------------------------------------------------------

    def _stored(self, key: bytes) -> PieceRecord:
        rec = self.record(key) if len(key) == 32 else None
        if rec is None:
            raise NotFound(f"piece {key.hex()[:16]} is not stored here")
        return rec

    async def size(self, key: bytes) -> int:
        """Unpadded length of a stored piece.

        Raises:
            NotFound: not stored here.
        """
        return self._stored(key).length

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` of the unpadded piece, every block touched
        checked against its blake3.

        Raises:
            NotFound: not stored here (or the file vanished).
            IntegrityError: a block on disk no longer matches its hash.
        """
        rec = self._stored(key)
        end = min(rec.length, offset + length)
        if offset >= end:
            return b""
        first, last = offset // rec.block, (end - 1) // rec.block
        path = self.path(key)

        def load() -> bytes:
            start = first * rec.block
            stop = min(rec.length, (last + 1) * rec.block)
            data = _pread(path, start, stop - start)
            view = memoryview(data)
            for i in range(first, last + 1):
                lo = (i - first) * rec.block
                chunk = view[lo : lo + rec.block]
                if blake3.blake3(chunk).digest() != rec.blocks[i]:
                    raise IntegrityError(
                        f"piece {key.hex()[:16]} block {i} is corrupt on disk")
            return bytes(view[offset - start : end - start])

        try:
            out = await trio.to_thread.run_sync(load)
        except FileNotFoundError:
            raise NotFound(f"piece {key.hex()[:16]} file is missing") from None
        self.bytes_served += len(out)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for status output."""
        return {"dir": str(self.dir), "pieces": self.count(), "bytes": self.stored_bytes()}
