"""Files put from this client home, in its LevelDB (``<home>/db``, prefix 0x60).

Record v1 (key ``0x60 || u64 put time ms || manifest CID digest``), canonical CBOR::

    {"v": 1, "cid": text, "capability": text, "name": text, "size": uint,
     "deals": [uint], "providers": [text], "time_ms": uint}

The capability (with its key) is kept so ``storage ls`` can show it again: the home is the
user's private directory (like ``node.key``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from storaged.chain import encoding
from storaged.chain.errors import MalformedEncoding
from storaged.data.cid import parse_cid
from storaged.errors import LocalBugError
from storaged.store import schema
from storaged.store.kv import LevelKV

VERSION = 1
FIELDS: dict[str, type] = {"v": int, "cid": str, "capability": str, "name": str, "size": int,
                           "deals": list, "providers": list, "time_ms": int}


@dataclass(frozen=True)
class FileRecord:
    """One file put from this home."""

    cid: str
    capability: str
    name: str
    size: int
    deals: list[int]
    providers: list[str]
    time_ms: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FileRecords:
    """The client's file list over its LevelDB; open it only around a use (the LevelDB lock
    would otherwise keep a second ``storage`` command out)."""

    def __init__(self, home: Path) -> None:
        self.kv = LevelKV(home / "db")

    def __enter__(self) -> FileRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kv.close()

    def add(self, cid: str, capability: str, name: str, size: int, deals: list[int],
            providers: list[str], *, time_ms: int | None = None) -> FileRecord:
        """Record a put."""
        rec = FileRecord(cid, capability, name, size, list(deals), list(providers),
                         int(time.time() * 1000) if time_ms is None else time_ms)
        _, digest = parse_cid(cid)
        self.kv.put(schema.client_file_key(rec.time_ms, digest[-32:]),
                    encoding.encode({"v": VERSION, **asdict(rec)}))
        return rec

    def all(self) -> list[FileRecord]:
        """Every record, oldest first.

        Raises:
            LocalBugError: a stored record is malformed (our own write).
        """
        out = []
        for key, raw in self.kv.scan(schema.CLIENT_FILE):
            try:
                obj = encoding.require_map(encoding.decode(raw), FIELDS, "client file")
            except MalformedEncoding as exc:
                raise LocalBugError(f"client file record {key.hex()} is malformed: {exc}") from exc
            del obj["v"]
            out.append(FileRecord(**obj))
        return out
