"""Wire framing shared by every storaged protocol: length-prefixed, versioned, typed frames.

Frame layout, version 1 (all integers big-endian)::

    offset  size   field
    0       4      length L: number of bytes after this field (so L = 2 + len(body))
    4       1      version, = 1
    5       1      message type code (meaning defined per protocol by a MessageTable)
    6       L - 2  body: canonical CBOR (RFC 8949 §4.2.1) for CBOR types, raw bytes for RAW types

Every message type carries its own body size limit.  The decoder rejects an oversized frame as
soon as its 6-byte header has arrived, before buffering the body, so a peer cannot make us hold
more than the largest legal frame of the protocol.  CBOR bodies must be a map, and must be in
canonical form (re-encoding gives the same bytes): a message has exactly one encoding, so it
can be hashed or signed as received.  Golden vectors: ``tests/vectors/net_frames.json``.

:class:`FrameDecoder` is sans-IO: feed it bytes, pull frames.  It never touches a socket.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

import cbor2

from storaged.errors import LocalBugError, ProtocolViolation

WIRE_VERSION = 1
HEADER = struct.Struct(">IBB")
HEADER_SIZE = HEADER.size  # 6


class Codec(enum.Enum):
    """How a message body is encoded."""

    CBOR = "cbor"  # a canonical CBOR map
    RAW = "raw"  # opaque bytes (bulk data; no CBOR copy on the hot path)


@dataclass(frozen=True)
class MessageType:
    """One message of a protocol: its code on the wire, name, codec and body size limit."""

    code: int
    name: str
    codec: Codec
    max_body: int


@dataclass(frozen=True)
class Frame:
    """A decoded frame: the message type and its body (a dict for CBOR, bytes for RAW)."""

    type: MessageType
    body: Any

    @property
    def name(self) -> str:
        return self.type.name


class MessageTable:
    """The message types of one protocol, looked up by code (decoding) or name (encoding)."""

    def __init__(self, protocol: str, types: list[MessageType]) -> None:
        self.protocol = protocol
        self.by_code = {t.code: t for t in types}
        self.by_name = {t.name: t for t in types}
        if len(self.by_code) != len(types) or len(self.by_name) != len(types):
            raise LocalBugError(f"{protocol}: duplicate message code or name")
        self.max_frame = HEADER_SIZE + max(t.max_body for t in types)

    def encode(self, name: str, body: Any) -> bytes:
        """One complete frame for message ``name``.

        Raises:
            LocalBugError: unknown name, wrong body type, or the body exceeds its limit
                (we never send what the peer must reject).
        """
        mtype = self.by_name.get(name)
        if mtype is None:
            raise LocalBugError(f"{self.protocol}: no message named {name!r}")
        if mtype.codec is Codec.RAW:
            if not isinstance(body, bytes | bytearray | memoryview):
                raise LocalBugError(f"{self.protocol} {name}: raw body must be bytes")
            payload = body if isinstance(body, bytes) else bytes(body)
        else:
            if not isinstance(body, dict):
                raise LocalBugError(f"{self.protocol} {name}: body must be a dict")
            payload = cbor2.dumps(body, canonical=True)
        if len(payload) > mtype.max_body:
            raise LocalBugError(
                f"{self.protocol} {name}: body of {len(payload)} bytes exceeds {mtype.max_body}"
            )
        return HEADER.pack(len(payload) + 2, WIRE_VERSION, mtype.code) + payload


def decode_cbor_body(protocol: str, name: str, payload: bytes) -> dict[str, Any]:
    """Decode a CBOR map body and check it is canonical.

    Raises:
        ProtocolViolation: not CBOR, not a map with text keys, or not in canonical form.
    """
    try:
        body = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types, incl. RecursionError/ValueError
        raise ProtocolViolation(f"{protocol} {name}: body is not valid CBOR: {exc}") from exc
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise ProtocolViolation(f"{protocol} {name}: body must be a CBOR map with text keys")
    try:
        canonical = cbor2.dumps(body, canonical=True)
    except Exception as exc:
        raise ProtocolViolation(f"{protocol} {name}: body has unencodable values") from exc
    if canonical != payload:
        raise ProtocolViolation(f"{protocol} {name}: body is not canonical CBOR")
    return body


class FrameDecoder:
    """Sans-IO frame parser for one direction of one stream.

    ``feed(data)`` then ``next_frame()`` until it returns None.  After a ProtocolViolation the
    decoder is poisoned (every later call raises again): the stream must be dropped.

    Received pieces are kept as they came (no copy) and a frame's body is assembled with one
    ``join`` once all of it is here: a 1 MiB data frame arriving in 64 KiB reads costs one copy,
    where appending to a growing buffer and slicing the body out cost two and some reallocs.
    """

    def __init__(self, table: MessageTable) -> None:
        self.table = table
        self._pieces: deque[bytes | memoryview] = deque()
        self._size = 0
        self._error: ProtocolViolation | None = None

    def feed(self, data: bytes) -> None:
        """Append received bytes (kept by reference: do not mutate ``data`` afterwards)."""
        if data:
            self._pieces.append(data)
            self._size += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._size

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None if more bytes are needed.

        Raises:
            ProtocolViolation: bad version, unknown type, oversized or malformed body.
        """
        if self._error is not None:
            raise self._error
        if self._size < HEADER_SIZE:
            return None
        pieces = self._pieces
        if len(pieces[0]) < HEADER_SIZE:  # a header split across reads: gather its 6 bytes
            head = bytearray()
            while len(head) < HEADER_SIZE:
                piece = pieces.popleft()
                take = HEADER_SIZE - len(head)
                head += piece[:take]
                if len(piece) > take:
                    pieces.appendleft(memoryview(piece)[take:])
            pieces.appendleft(bytes(head))
        length, version, code = HEADER.unpack_from(pieces[0])
        try:
            mtype = self._check_header(length, version, code)
        except ProtocolViolation as exc:
            self._error = exc
            raise
        end = 4 + length
        if self._size < end:
            return None
        payload = self._take(end)
        if mtype.codec is Codec.RAW:
            return Frame(mtype, payload)
        try:
            return Frame(mtype, decode_cbor_body(self.table.protocol, mtype.name, payload))
        except ProtocolViolation as exc:
            self._error = exc
            raise

    def _take(self, end: int) -> bytes:
        """Remove the first ``end`` buffered bytes (a whole frame); return its body."""
        pieces = self._pieces
        first = pieces.popleft()
        if len(first) >= end:  # the whole frame in one piece (every small message)
            payload = bytes(first[HEADER_SIZE:end])
            if len(first) > end:
                pieces.appendleft(memoryview(first)[end:])
        else:
            parts: list[bytes | memoryview] = [memoryview(first)[HEADER_SIZE:]]
            need = end - len(first)
            while need:
                piece = pieces.popleft()
                if len(piece) > need:
                    parts.append(memoryview(piece)[:need])
                    pieces.appendleft(memoryview(piece)[need:])
                    need = 0
                else:
                    parts.append(piece)
                    need -= len(piece)
            payload = b"".join(parts)  # the one copy of the body
        self._size -= end
        return payload

    def _check_header(self, length: int, version: int, code: int) -> MessageType:
        proto = self.table.protocol
        if version != WIRE_VERSION:
            raise ProtocolViolation(f"{proto}: unsupported wire version {version}")
        mtype = self.table.by_code.get(code)
        if mtype is None:
            raise ProtocolViolation(f"{proto}: unknown message type 0x{code:02x}")
        if length < 2:
            raise ProtocolViolation(f"{proto}: frame length {length} is shorter than its header")
        if length - 2 > mtype.max_body:
            raise ProtocolViolation(
                f"{proto} {mtype.name}: body of {length - 2} bytes exceeds limit {mtype.max_body}"
            )
        return mtype


def require(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``body[key]`` if present and of type ``kind`` (bool is never accepted as int).

    Raises:
        ProtocolViolation: missing or wrongly typed field.
    """
    value = body.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolViolation(f"{what}: field {key!r} missing or not {kind}")
    return value
