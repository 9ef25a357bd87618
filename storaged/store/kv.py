"""A tiny key-value interface with atomic batches, backed by LevelDB or by memory.

Every persistent record in storaged goes through :class:`KV`.  Writes that belong together go
through one :meth:`KV.batch`: the batch is applied only when its ``with`` block exits cleanly; an
exception inside it writes nothing.  :class:`MemoryKV` is the twin used by pure tests; both pass
the same test-suite (``tests/store/test_kv.py``).

Keys are raw bytes built only in :mod:`storaged.store.schema`; iteration is in unsigned
byte order, so big-endian integers sort numerically.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import plyvel

from storaged.errors import LocalBugError, ResourceError


class WriteBatch(Protocol):
    """Writes collected for one atomic commit."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class KV(Protocol):
    """The KV interface every store and the chain write through."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...

    def batch(self) -> contextlib.AbstractContextManager[WriteBatch]: ...

    def close(self) -> None: ...


class _Batch:
    """Collects writes in order; the owning store applies them on clean exit."""

    def __init__(self) -> None:
        self.ops: list[tuple[bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((bytes(key), bytes(value)))

    def delete(self, key: bytes) -> None:
        self.ops.append((bytes(key), None))


def _prefix_end(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class MemoryKV:
    """In-memory twin of :class:`LevelKV`: same semantics, sorted keys, atomic batches."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LocalBugError("KV store used after close()")

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        return self._data.get(bytes(key))

    def _put(self, key: bytes, value: bytes) -> None:
        if key not in self._data:
            bisect.insort(self._keys, key)
        self._data[key] = value

    def _delete(self, key: bytes) -> None:
        if key in self._data:
            del self._data[key]
            self._keys.pop(bisect.bisect_left(self._keys, key))

    def put(self, key: bytes, value: bytes) -> None:
        self._check_open()
        with self._lock:
            self._put(bytes(key), bytes(value))

    def delete(self, key: bytes) -> None:
        self._check_open()
        with self._lock:
            self._delete(bytes(key))

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for keys with ``prefix``, from ``start`` (inclusive) on.

        With ``reverse`` the order is descending and ``start`` is the inclusive upper bound.
        Iterates over a snapshot, so writes during the scan do not disturb it.
        """
        self._check_open()
        with self._lock:
            lo = bisect.bisect_left(self._keys, prefix)
            end = _prefix_end(prefix)
            hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
            if start is not None:
                if reverse:
                    hi = min(hi, bisect.bisect_right(self._keys, start))
                else:
                    lo = max(lo, bisect.bisect_left(self._keys, start))
            snapshot = [(k, self._data[k]) for k in self._keys[lo:hi]]
        if reverse:
            snapshot.reverse()
        yield from snapshot

    @contextlib.contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        self._check_open()
        b = _Batch()
        yield b
        with self._lock:
            for key, value in b.ops:
                if value is None:
                    self._delete(key)
                else:
                    self._put(key, value)

    def close(self) -> None:
        self._closed = True


class LevelKV:
    """LevelDB-backed :class:`KV`; batches are LevelDB write batches (atomic, optionally synced).

    Raises:
        ResourceError: the database cannot be opened (locked by another process, bad path).
    """

    def __init__(self, path: Path | str, *, sync: bool = True) -> None:
        self._path = Path(path)
        self._sync = sync
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            self._db = plyvel.DB(str(self._path), create_if_missing=True)
        except (plyvel.IOError, OSError) as exc:
            raise ResourceError(f"cannot open LevelDB at {self._path}: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(bytes(key))
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(bytes(key), bytes(value), sync=self._sync)

    def delete(self, key: bytes) -> None:
        self._db.delete(bytes(key), sync=self._sync)

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Same contract as :meth:`MemoryKV.scan`; reads from a LevelDB snapshot."""
        lo: bytes = prefix
        hi: bytes | None = _prefix_end(prefix)
        include_hi = False
        if start is not None:
            if not reverse:
                lo = max(lo, start)
            elif hi is None or start < hi:
                hi, include_hi = start, True
        snap = self._db.snapshot()
        try:
            if reverse:
                # plyvel's reverse iterator with a stop bound past the last key yields nothing
                # when the range holds one key, so walk a raw iterator backwards ourselves.
                yield from self._scan_reverse(snap, lo, hi, include_hi)
                return
            with snap.iterator(start=lo, stop=hi) as it:
                yield from it
        finally:
            snap.close()

    @staticmethod
    def _scan_reverse(
        snap: plyvel.Snapshot, lo: bytes, hi: bytes | None, include_hi: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield keys in [lo, hi) (or [lo, hi] with ``include_hi``) in descending order."""
        it = snap.raw_iterator()
        try:
            if hi is None:
                it.seek_to_last()
            else:
                it.seek(hi)
                if not it.valid():
                    it.seek_to_last()
            while it.valid():
                key: bytes = it.key()
                if key < lo:
                    return
                if hi is None or key < hi or (include_hi and key == hi):
                    yield key, it.value()
                it.prev()
        finally:
            it.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        b = _Batch()
        yield b
        wb = self._db.write_batch(sync=self._sync)
        for key, value in b.ops:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        wb.write()

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
