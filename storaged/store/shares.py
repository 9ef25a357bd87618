"""The share store: share bytes in files, their index in LevelDB, blake3 checked on every read.

On-disk layout (version 1) under the store's root directory::

    <root>/<piece hex[0:2]>/<piece hex>/<segment:08x>-<index:04x>.share   share bytes, raw
    <root>/<piece hex[0:2]>/<piece hex>/.tmp-<random hex>                 a write in progress

Index record (KV key ``schema.share_key(piece, segment, index)``), fixed binary, 41 bytes::

    offset 0   u8      format version (1)
    offset 1   u64 BE  share size in bytes
    offset 9   32 B    blake3 digest of the share bytes

Write order: temp file in the share's own directory → write → fsync → rename over the final
name → fsync the directory → one KV batch with the index record.  A crash before the rename
leaves only a temp file; a crash after it leaves a file with no index entry.  The recovery
sweep run by :meth:`ShareStore.open` removes both, and drops index entries whose file is missing
or has the wrong size, so a reader never sees a half share or an entry pointing at nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path

import blake3

from storaged.errors import IntegrityError, LocalBugError, NotFound, ResourceError
from storaged.store import schema
from storaged.store.kv import KV

INDEX_VERSION = 1
_INDEX = struct.Struct(">BQ32s")
_TMP_PREFIX = ".tmp-"
_SUFFIX = ".share"


class CorruptIndexError(IntegrityError):
    """A share index record has an unknown version or the wrong length."""


@dataclasses.dataclass(frozen=True, order=True)
class ShareKey:
    """Address of one share: a 32-byte piece id, the segment number and the share index."""

    piece: bytes
    segment: int
    index: int

    def __str__(self) -> str:
        return f"share {self.piece.hex()}/{self.segment}/{self.index}"


@dataclasses.dataclass(frozen=True)
class IndexRecord:
    """What the index remembers of a share: its size and expected blake3 digest."""

    size: int
    digest: bytes

    def encode(self) -> bytes:
        """The 41-byte version-1 record described in the module docstring."""
        return _INDEX.pack(INDEX_VERSION, self.size, self.digest)

    @classmethod
    def decode(cls, raw: bytes) -> IndexRecord:
        """Parse a record.

        Raises:
            CorruptIndexError: wrong length or unknown version.
        """
        if len(raw) != _INDEX.size:
            raise CorruptIndexError(f"share index record has {len(raw)} bytes, want {_INDEX.size}")
        version, size, digest = _INDEX.unpack(raw)
        if version != INDEX_VERSION:
            raise CorruptIndexError(f"share index record version {version} is not supported")
        return cls(size, digest)


@dataclasses.dataclass(frozen=True)
class RecoveryReport:
    """What the open-time sweep cleaned up."""

    temp_files_removed: int
    dropped_entries: tuple[ShareKey, ...]
    orphan_files_removed: int


def _resource(what: str, exc: OSError) -> ResourceError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceError(f"disk full while {what}: {exc.strerror}")
    return ResourceError(f"I/O error while {what}: {exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShareWriter:
    """Streams one share to disk in chunks, hashing as it goes; commit() checks the digest."""

    def __init__(self, store: ShareStore, key: ShareKey, digest: bytes) -> None:
        self._store = store
        self._key = key
        self._digest = digest
        self._hasher = blake3.blake3()
        self._size = 0
        self._final = store._path(key)
        try:
            self._final.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self._final.parent / (_TMP_PREFIX + secrets.token_hex(8))
            self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise _resource(f"creating {key}", exc) from exc

    def write(self, chunk: bytes | memoryview) -> None:
        """Append ``chunk``.

        Raises:
            ResourceError: disk full or another OS error (the partial write is discarded).
            LocalBugError: the writer was already committed or aborted.
        """
        if self._fd is None:
            raise LocalBugError(f"write to a finished writer for {self._key}")
        view = memoryview(chunk)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise _resource(f"writing {self._key}", exc) from exc
        self._hasher.update(chunk)
        self._size += len(chunk)

    def commit(self) -> None:
        """Make the share visible: fsync, rename, fsync dir, then index it in one KV batch.

        Raises:
            IntegrityError: the bytes written do not hash to the expected digest (discarded).
            ResourceError: an OS error while syncing or renaming (discarded).
        """
        if self._fd is None:
            raise LocalBugError(f"commit of a finished writer for {self._key}")
        if self._hasher.digest() != self._digest:
            self.abort()
            raise IntegrityError(f"{self._key}: bytes do not match the expected blake3 digest")
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.replace(self._tmp, self._final)
            _fsync_dir(self._final.parent)
        except OSError as exc:
            self.abort()
            raise _resource(f"committing {self._key}", exc) from exc
        record = IndexRecord(self._size, self._digest)
        with self._store._kv.batch() as b:
            b.put(_key_bytes(self._key), record.encode())

    def abort(self) -> None:
        """Discard the temp file; safe to call more than once."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _key_bytes(key: ShareKey) -> bytes:
    return schema.share_key(key.piece, key.segment, key.index)


def _validate(key: ShareKey) -> None:
    if len(key.piece) != 32 or not 0 <= key.segment <= 0xFFFFFFFF or not 0 <= key.index <= 0xFFFF:
        raise LocalBugError(f"invalid share key {key!r}")


class ShareStore:
    """Shares on disk under ``root`` with their index in ``kv``; see the module docstring."""

    def __init__(self, root: Path | str, kv: KV) -> None:
        self._root = Path(root)
        self._kv = kv
        self.last_recovery = RecoveryReport(0, (), 0)

    @classmethod
    def open(cls, root: Path | str, kv: KV) -> ShareStore:
        """Open the store and run the recovery sweep (see :attr:`last_recovery`).

        Raises:
            ResourceError: the root directory cannot be created or read.
        """
        store = cls(root, kv)
        try:
            store._root.mkdir(parents=True, exist_ok=True)
            store.last_recovery = store._recover()
        except OSError as exc:
            raise _resource(f"recovering the share store at {store._root}", exc) from exc
        return store

    def _path(self, key: ShareKey) -> Path:
        _validate(key)
        h = key.piece.hex()
        return self._root / h[:2] / h / f"{key.segment:08x}-{key.index:04x}{_SUFFIX}"

    def writer(self, key: ShareKey, digest: bytes) -> ShareWriter:
        """A streaming writer for ``key`` whose bytes must hash to ``digest`` (blake3)."""
        return ShareWriter(self, key, digest)

    def put(self, key: ShareKey, data: bytes, digest: bytes | None = None) -> None:
        """Store ``data``; ``digest`` (if given) must be its blake3.

        Raises:
            IntegrityError: ``digest`` does not match ``data``.
            ResourceError: disk full or another OS error; nothing becomes visible.
        """
        w = self.writer(key, blake3.blake3(data).digest() if digest is None else digest)
        w.write(data)
        w.commit()

    def _record(self, key: ShareKey) -> IndexRecord | None:
        raw = self._kv.get(_key_bytes(key))
        return None if raw is None else IndexRecord.decode(raw)

    def has(self, key: ShareKey) -> bool:
        """True if the share is indexed."""
        return self._record(key) is not None

    def get(self, key: ShareKey) -> bytes:
        """Read a share and verify it against its recorded blake3.

        Memory: the one share (<= segment size / k), read whole, hashed, returned; nothing else
        is held.  Callers stream a file segment by segment, so a get never holds a whole file.

        Raises:
            NotFound: the share is not stored.
            IntegrityError: the file's bytes no longer match (names the share).
        """
        record = self._record(key)
        if record is None:
            raise NotFound(f"{key} is not stored")
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"{key}: indexed but its file is missing") from None
        except OSError as exc:
            raise _resource(f"reading {key}", exc) from exc
        if len(data) != record.size or blake3.blake3(data).digest() != record.digest:
            raise IntegrityError(f"{key}: stored bytes fail blake3 verification")
        return data

    def delete(self, key: ShareKey) -> None:
        """Remove a share (index first, so no entry ever points at a missing file)."""
        self._kv.delete(_key_bytes(key))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def list_piece(self, piece: bytes) -> list[ShareKey]:
        """Every stored share of ``piece``, ordered by (segment, index)."""
        return [_parse_key(k) for k, _ in self._kv.scan(schema.share_piece_prefix(piece))]

    def delete_piece(self, piece: bytes) -> int:
        """Remove every share of ``piece`` in one index batch; return how many."""
        keys = self.list_piece(piece)
        with self._kv.batch() as b:
            for key in keys:
                b.delete(_key_bytes(key))
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(key))
        return len(keys)

    def total_bytes(self) -> int:
        """Sum of the sizes of all indexed shares."""
        return sum(IndexRecord.decode(v).size for _, v in self._kv.scan(schema.SHARE))

    def _recover(self) -> RecoveryReport:
        temps = 0
        files: set[Path] = set()
        for dirpath, _dirs, names in os.walk(self._root):
            for name in names:
                path = Path(dirpath) / name
                if name.startswith(_TMP_PREFIX):
                    path.unlink()
                    temps += 1
                else:
                    files.add(path)
        dropped: list[ShareKey] = []
        indexed: set[Path] = set()
        for raw_key, raw in self._kv.scan(schema.SHARE):
            key = _parse_key(raw_key)
            path = self._path(key)
            try:
                ok = path.stat().st_size == IndexRecord.decode(raw).size
            except (FileNotFoundError, CorruptIndexError):
                ok = False
            if ok:
                indexed.add(path)
            else:
                dropped.append(key)
        if dropped:
            with self._kv.batch() as b:
                for key in dropped:
                    b.delete(_key_bytes(key))
        orphans = files - indexed
        for path in orphans:
            path.unlink()
        return RecoveryReport(temps, tuple(dropped), len(orphans))

    def iter_keys(self) -> Iterator[ShareKey]:
        """Every indexed share, in key order."""
        for k, _ in self._kv.scan(schema.SHARE):
            yield _parse_key(k)


def _parse_key(raw: bytes) -> ShareKey:
    piece = raw[1:33]
    segment, index = struct.unpack(">II", raw[33:41])
    return ShareKey(piece, segment, index)
