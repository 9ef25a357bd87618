"""CIDv1 with the blake3 multihash (0x1e, 32-byte digest), printed as base32 ("b...").

Byte layout: varint(1) || varint(codec) || varint(0x1e) || varint(32) || digest.  Manifests use
codec dag-cbor (0x71): canonical CBOR of maps, text, bytes, ints and null is valid DAG-CBOR.
"""

from __future__ import annotations

import base64

import blake3

from storaged.errors import UserError

DAG_CBOR = 0x71
RAW = 0x55
BLAKE3 = 0x1E


class CidError(UserError):
    """A CID string is not a CIDv1/base32/blake3 CID.

    A :class:`UserError` because CID text comes from the user (a capability, a command line);
    code that parses a CID a peer sent re-raises it as ProtocolViolation (see node/manifests.py).
    """


def _varint(x: int) -> bytes:
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while pos < len(buf) and shift < 63:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise CidError("truncated varint")


def cid_bytes(codec: int, digest: bytes) -> bytes:
    """Binary CIDv1 for a 32-byte blake3 digest."""
    return _varint(1) + _varint(codec) + _varint(BLAKE3) + _varint(len(digest)) + digest


def cid_for(codec: int, data: bytes) -> str:
    """The base32 CIDv1 naming `data` (plain, unkeyed blake3 as the multihash requires)."""
    return format_cid(codec, blake3.blake3(data).digest())


def format_cid(codec: int, digest: bytes) -> str:
    """base32 (lowercase, no padding) text form with the multibase prefix 'b'."""
    raw = cid_bytes(codec, digest)
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def parse_cid(text: str) -> tuple[int, bytes]:
    """Return (codec, digest).

    Raises:
        CidError: not multibase base32, not CIDv1, not blake3, or wrong digest length.
    """
    if not text.startswith("b") or len(text) < 10:
        raise CidError("CID must be multibase base32 (start with 'b')")
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise CidError("CID is not valid base32") from exc
    version, pos = _read_varint(raw, 0)
    if version != 1:
        raise CidError(f"CID version {version}, expected 1")
    codec, pos = _read_varint(raw, pos)
    mh, pos = _read_varint(raw, pos)
    if mh != BLAKE3:
        raise CidError(f"multihash code {mh:#x}, expected blake3 (0x1e)")
    length, pos = _read_varint(raw, pos)
    digest = raw[pos:]
    if length != 32 or len(digest) != 32:
        raise CidError("CID digest must be 32 bytes")
    return codec, digest
