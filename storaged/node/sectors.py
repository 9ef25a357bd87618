"""The provider's sectors: replica files on disk and the persistent job table.

One deal is sealed into one sector.  Files under ``home/sectors/``:

- ``<n>.replica``: the sealed replica of sector ``n`` (exactly the deal size), written to
  ``<n>.replica.tmp``, fsynced, renamed, and the directory fsynced, so a crash leaves either
  the old replica or the new one, never a torn file under the final name.
- ``<n>.tree``: the replica's Merkle tree (proofs Merkle format v1, rows above
  ``tree_drop(size)``), written the same way after the replica; a PoSt reads only the
  challenged leaves' subtrees and paths from the two maps instead of re-hashing the sector.
  It is derived data: missing or wrong, it is rebuilt from the replica.

Job record v1 (LevelDB key :func:`storaged.store.schema.sector_key`), canonical CBOR::

    {"v": 1, "sector": uint, "deal": uint, "comm_d": bytes(32), "size": uint,
     "state": text, "ticket_height": uint|null, "comm_c": bytes|null,
     "comm_r_last": bytes|null, "comm_r": bytes|null, "precommit_height": uint|null,
     "active_height": uint|null, "error": text, "attempts": uint, "updated": uint}

States, in pipeline order (a restart resumes a job from its persisted state):
``RECEIVED`` (the piece is stored and checked) → ``SEALED`` (replica written, commitments
known) → ``PRECOMMITTED`` (precommit committed on chain) → ``ACTIVE`` (provecommit committed,
the deal is active).  Off the main line: ``FAULTY`` (the replica failed a check; declared on
chain), ``RECOVERING`` (re-sealed from the unsealed piece, waiting for a PoSt to recover it),
``FAILED`` (gave up: the reason is in ``error``), ``DONE`` (the deal ended on chain).

Next sector number: ``SECTOR_NEXT`` (u64).  Deal index ``sector_deal_key(deal) -> u64``.
PoSt outcome record (``sector_post_key``): ``{"height": uint, "period": uint, "ok": bool,
"error": text}``.  Fault events (``sector_fault_key(n, seq)``): ``{"height": uint, "event":
text, "reason": text}``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from proofs import merkle
from storaged.chain import encoding
from storaged.chain.errors import MalformedEncoding
from storaged.errors import IntegrityError, LocalBugError, NotFound, ResourceError
from storaged.store import schema
from storaged.store.kv import KV

T = TypeVar("T")
RECORD_VERSION = 1
TREE_DROP = 4
"""Rows of the replica's Merkle tree not stored: the tree file is 1/16 of the sector, and
opening a leaf for a PoSt rebuilds its 32-leaf subtree (1 KiB of the replica read)."""
RECEIVED = "RECEIVED"
SEALED = "SEALED"
PRECOMMITTED = "PRECOMMITTED"
ACTIVE = "ACTIVE"
FAULTY = "FAULTY"
RECOVERING = "RECOVERING"
FAILED = "FAILED"
DONE = "DONE"
STATES = (RECEIVED, SEALED, PRECOMMITTED, ACTIVE, FAULTY, RECOVERING, FAILED, DONE)
PIPELINE = (RECEIVED, SEALED, PRECOMMITTED)
"""States the sealer drives forward."""
PROVING = (ACTIVE, FAULTY, RECOVERING)
"""States the prover and the scrubber look after."""

_FIELDS: dict[str, type] = {"v": int, "sector": int, "deal": int, "comm_d": bytes, "size": int,
                            "state": str, "error": str, "attempts": int, "updated": int}
_OPTIONAL: dict[str, type] = {"ticket_height": int, "comm_c": bytes, "comm_r_last": bytes,
                              "comm_r": bytes, "precommit_height": int, "active_height": int}


@dataclass(frozen=True, slots=True)
class Sector:
    """One sector job: what is known about it and how far the pipeline got."""

    sector: int
    deal: int
    comm_d: bytes
    size: int
    state: str = RECEIVED
    ticket_height: int | None = None
    comm_c: bytes | None = None
    comm_r_last: bytes | None = None
    comm_r: bytes | None = None
    precommit_height: int | None = None
    active_height: int | None = None
    error: str = ""
    attempts: int = 0
    updated: int = 0

    def encode(self) -> bytes:
        """The record's canonical CBOR bytes (format v1 above)."""
        body: dict[str, Any] = {"v": RECORD_VERSION}
        for name in (*_FIELDS, *_OPTIONAL):
            if name != "v":
                body[name] = getattr(self, name)
        return encoding.encode(body)

    @classmethod
    def decode(cls, raw: bytes) -> Sector:
        """Parse a stored record.

        Raises:
            LocalBugError: the record is not a v1 sector record (our own store is damaged).
        """
        try:
            obj = encoding.decode(raw)
            if not isinstance(obj, dict):
                raise MalformedEncoding("not a map")
            body = encoding.require_map({k: obj[k] for k in _FIELDS if k in obj}, _FIELDS,
                                        "sector")
            for name, typ in _OPTIONAL.items():
                value = obj.get(name)
                if value is not None and not isinstance(value, typ):
                    raise MalformedEncoding(f"sector.{name} must be {typ.__name__}")
                body[name] = value
        except (MalformedEncoding, KeyError) as exc:
            raise LocalBugError(f"stored sector record is malformed: {exc}") from exc
        if body.pop("v") != RECORD_VERSION or body["state"] not in STATES:
            raise LocalBugError(f"stored sector record has version/state {obj.get('v')}/"
                                f"{obj.get('state')}")
        return cls(**body)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for the API and CLI."""
        out: dict[str, Any] = {}
        for name in (*_FIELDS, *_OPTIONAL):
            if name == "v":
                continue
            value = getattr(self, name)
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out


@contextlib.contextmanager
def map_file(path: Path) -> Iterator[memoryview]:
    """Map ``path`` read-only as a memoryview valid inside the ``with`` block.

    Raises:
        FileNotFoundError: no such file.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m, \
            memoryview(m) as v:
        yield v


@dataclass(slots=True)
class PostOutcome:
    """The last PoSt attempt of one sector."""

    height: int
    period: int
    ok: bool
    error: str = ""


def tree_drop(size: int) -> int:
    """Rows left out of the stored tree of a ``size``-byte replica (the root row is kept)."""
    depth = (size // 32).bit_length() - 1
    return min(TREE_DROP, depth - 1)


def tree_size(size: int) -> int:
    """Bytes of the stored tree of a ``size``-byte replica."""
    return 32 * (((size // 32) >> tree_drop(size)) - 1)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SectorStore:
    """Replica files under ``directory`` and sector records in ``kv`` (prefix 0x58-0x5C)."""

    def __init__(self, directory: Path, kv: KV) -> None:
        self.dir = Path(directory)
        self.kv = kv
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- records -------------------------------------------------------------------------------

    def get(self, sector: int) -> Sector | None:
        """The record of ``sector``, if any."""
        raw = self.kv.get(schema.sector_key(sector))
        return None if raw is None else Sector.decode(raw)

    def require(self, sector: int) -> Sector:
        """The record of ``sector``.

        Raises:
            NotFound: no such sector here.
        """
        rec = self.get(sector)
        if rec is None:
            raise NotFound(f"no sector {sector} on this provider")
        return rec

    def by_deal(self, deal_id: int) -> Sector | None:
        """The sector holding ``deal_id``, if one was created."""
        raw = self.kv.get(schema.sector_deal_key(deal_id))
        return None if raw is None else self.get(int.from_bytes(raw, "big"))

    def all(self) -> Iterator[Sector]:
        """Every sector record, by sector number."""
        for _, raw in self.kv.scan(schema.SECTOR):
            yield Sector.decode(raw)

    def create(self, deal_id: int, comm_d: bytes, size: int, height: int) -> Sector:
        """Allocate the next sector number for ``deal_id`` (idempotent: an existing sector of
        the deal is returned as is)."""
        existing = self.by_deal(deal_id)
        if existing is not None:
            return existing
        raw = self.kv.get(schema.SECTOR_NEXT)
        number = 0 if raw is None else int.from_bytes(raw, "big")
        rec = Sector(sector=number, deal=deal_id, comm_d=bytes(comm_d), size=size,
                     updated=height)
        with self.kv.batch() as b:
            b.put(schema.sector_key(number), rec.encode())
            b.put(schema.sector_deal_key(deal_id), schema.u64(number))
            b.put(schema.SECTOR_NEXT, schema.u64(number + 1))
        return rec

    def update(self, rec: Sector, **changes: Any) -> Sector:
        """Persist ``rec`` with ``changes`` applied; return the new record."""
        new = replace(rec, **changes)
        self.kv.put(schema.sector_key(new.sector), new.encode())
        return new

    def record_post(self, sector: int, outcome: PostOutcome) -> None:
        """Remember the last PoSt attempt of ``sector``."""
        self.kv.put(schema.sector_post_key(sector), encoding.encode(
            {"height": outcome.height, "period": outcome.period, "ok": outcome.ok,
             "error": outcome.error}))

    def last_post(self, sector: int) -> dict[str, Any] | None:
        """The last recorded PoSt attempt of ``sector``."""
        raw = self.kv.get(schema.sector_post_key(sector))
        if raw is None:
            return None
        out: dict[str, Any] = encoding.decode(raw)
        return out

    def record_event(self, sector: int, height: int, event: str, reason: str) -> None:
        """Append a fault/recovery event to ``sector``'s history."""
        last = next(iter(self.kv.scan(schema.sector_fault_prefix(sector), reverse=True)), None)
        seq = 0 if last is None else int.from_bytes(last[0][-8:], "big") + 1
        self.kv.put(schema.sector_fault_key(sector, seq),
                    encoding.encode({"height": height, "event": event, "reason": reason}))

    def events(self, sector: int) -> list[dict[str, Any]]:
        """Fault and recovery events of ``sector``, oldest first."""
        return [encoding.decode(v) for _, v in self.kv.scan(schema.sector_fault_prefix(sector))]

    # -- replica files -------------------------------------------------------------------------

    def replica_path(self, sector: int) -> Path:
        """Where the replica of ``sector`` lives."""
        return self.dir / f"{sector}.replica"

    def write_replica(self, sector: int, size: int, fill: Callable[[memoryview], T]) -> T:
        """Durably replace the replica of ``sector``: ``fill`` writes ``size`` bytes into a
        writable map of a temp file, which is then fsynced and renamed over the replica.
        Returns what ``fill`` returns.  Blocking: call from a worker thread.  The replica's
        stored tree is removed first (it is rebuilt from the new replica by
        :meth:`write_tree`).

        Raises:
            ResourceError: the disk refused the write (full, read-only, ...).
            Whatever ``fill`` raises (the temp file is removed, the old replica kept).
        """
        self.tree_path(sector).unlink(missing_ok=True)
        return self._write_atomic(self.replica_path(sector), size, fill)

    def _write_atomic(self, final: Path, size: int, fill: Callable[[memoryview], T]) -> T:
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "w+b") as f:
                f.truncate(size)
                with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_WRITE) as m:
                    view = memoryview(m)
                    try:
                        result = fill(view)
                    finally:
                        view.release()
                    m.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.dir)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ResourceError(f"cannot write {final.name}: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return result

    def tree_path(self, sector: int) -> Path:
        """Where the stored Merkle tree of the replica of ``sector`` lives."""
        return self.dir / f"{sector}.tree"

    def write_tree(self, sector: int, size: int) -> bytes:
        """Build the replica's Merkle tree (rows above ``tree_drop``) into ``<n>.tree``
        durably; return the replica's root.  Blocking (C tree builder, GIL released): call
        from a worker thread.

        Raises:
            NotFound / IntegrityError: the replica is missing or has the wrong size.
            ResourceError: the tree could not be written.
        """
        drop = tree_drop(size)
        with self.open_replica(sector, size) as leaves:
            def fill(out: memoryview) -> bytes:
                merkle.merkle_tree_into(leaves, out, drop)
                return merkle.merkle_root(leaves, out, drop)

            return self._write_atomic(self.tree_path(sector), tree_size(size), fill)

    @contextlib.contextmanager
    def open_tree(self, sector: int, size: int) -> Iterator[memoryview]:
        """Map the stored tree of ``sector`` read-only.

        Raises:
            NotFound: no tree file (never built, or removed with its replica).
            IntegrityError: it has the wrong size.
        """
        with self._map(self.tree_path(sector), tree_size(size), "tree") as v:
            yield v

    @contextlib.contextmanager
    def open_replica(self, sector: int, size: int) -> Iterator[memoryview]:
        """Map the replica of ``sector`` read-only (pages are read as the proofs touch them);
        the view is valid inside the ``with`` block only.

        Raises:
            NotFound: the replica file is missing.
            IntegrityError: it has the wrong size (truncated or overwritten).
        """
        with self._map(self.replica_path(sector), size, "replica") as v:
            yield v

    @contextlib.contextmanager
    def _map(self, path: Path, size: int, what: str) -> Iterator[memoryview]:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            raise NotFound(f"{what} {path.name} is missing") from None
        with f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise IntegrityError(f"{what} {path.name} is {actual} bytes, expected {size}")
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m, memoryview(m) as v:
                yield v

    def remove_replica(self, sector: int) -> None:
        """Delete the replica of ``sector`` and its tree."""
        self.replica_path(sector).unlink(missing_ok=True)
        self.tree_path(sector).unlink(missing_ok=True)

    def has_replica(self, sector: int, size: int) -> bool:
        """Whether a replica file of the right size exists."""
        try:
            return self.replica_path(sector).stat().st_size == size
        except FileNotFoundError:
            return False
