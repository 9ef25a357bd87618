"""A directory of files as a :class:`ChunkSink` / :class:`ChunkSource`.

The reference implementation of the transfer storage interfaces, used by tests, the benchmark
and tools; the provider node implements the same two protocols over its share store.  Object
``key`` lives in ``<dir>/<key hex>``; an unfinished upload in ``<dir>/<key hex>.<digest hex>.part``
(the digest in the name keeps a resumed upload from splicing two different objects).  All
disk I/O runs in worker threads so the event loop keeps draining streams.

Durability: ``commit`` fsyncs and renames.  A resume point is the partial file's length; if a
crash left unsynced garbage in it, the final blake3 check rejects the object and it is dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from storaged.errors import LocalBugError, NotFound, ResourceError


class FileStore:
    """Objects as files in one directory; both a ChunkSink and a ChunkSource."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._digests: dict[bytes, bytes] = {}

    def path(self, key: bytes) -> Path:
        return self.dir / key.hex()

    def _part(self, key: bytes) -> Path:
        digest = self._digests.get(key)
        if digest is None:
            raise LocalBugError(f"no upload in progress for {key.hex()}")
        return self.dir / f"{key.hex()}.{digest.hex()}.part"

    # ChunkSink

    async def begin(self, key: bytes, size: int, digest: bytes) -> int:
        """Resume point for ``key``: the partial file's length (capped at ``size``).

        Raises:
            ResourceError: the file system cannot hold ``size`` more bytes.
        """
        self._digests[key] = digest
        part = self._part(key)

        def prepare() -> int:
            held = part.stat().st_size if part.exists() else 0
            if held > size:
                part.unlink()
                held = 0
            free = os.statvfs(self.dir).f_bavail * os.statvfs(self.dir).f_frsize
            if size - held > free:
                raise ResourceError(f"need {size - held} bytes, {free} free in {self.dir}")
            return held

        return await trio.to_thread.run_sync(prepare)

    async def read_back(self, key: bytes, offset: int, length: int) -> bytes:
        return await trio.to_thread.run_sync(_pread, self._part(key), offset, length)

    async def write(self, key: bytes, offset: int, data: bytes) -> None:
        part = self._part(key)

        def put() -> None:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)

        await trio.to_thread.run_sync(put)

    async def commit(self, key: bytes) -> None:
        part, final = self._part(key), self.path(key)

        def finish() -> None:
            part.touch()
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(part, final)

        await trio.to_thread.run_sync(finish)
        self._digests.pop(key, None)

    async def discard(self, key: bytes) -> None:
        part = self._part(key)
        await trio.to_thread.run_sync(lambda: part.unlink(missing_ok=True))
        self._digests.pop(key, None)

    # ChunkSource

    async def size(self, key: bytes) -> int:
        try:
            return (await trio.to_thread.run_sync(self.path(key).stat)).st_size
        except FileNotFoundError:
            raise NotFound(f"object {key.hex()} is not stored here") from None

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        try:
            return await trio.to_thread.run_sync(_pread, self.path(key), offset, length)
        except FileNotFoundError:
            raise NotFound(f"object {key.hex()} is not stored here") from None


def _pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)
