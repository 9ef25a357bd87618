"""Canonical CBOR: the one encoding of every signed, hashed or stored chain object.

Encoding is ``cbor2.dumps(obj, canonical=True)`` (RFC 7049 §3.9 canonical form: shortest
integer and length encodings, definite lengths, map keys sorted length-first then bytewise).
Decoding is strict: bytes are accepted only if re-encoding the decoded value gives the same
bytes, so every object has exactly one byte string and one hash.  Only ints, bytes, text,
lists, maps and booleans appear in chain objects; no floats, tags or undefined.
"""

from __future__ import annotations

from typing import Any

import blake3
import cbor2

from storaged.chain.errors import MalformedEncoding

MAX_OBJECT_BYTES = 1 << 20


def encode(obj: Any) -> bytes:
    """The canonical CBOR bytes of ``obj``."""
    return bytes(cbor2.dumps(obj, canonical=True))


def decode(data: bytes) -> Any:
    """Decode canonical CBOR.

    Raises:
        MalformedEncoding: not CBOR, too large, or not in canonical form.
    """
    if len(data) > MAX_OBJECT_BYTES:
        raise MalformedEncoding(f"object of {len(data)} bytes exceeds {MAX_OBJECT_BYTES}")
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise MalformedEncoding(f"not CBOR: {exc}") from exc
    try:
        again = encode(obj)
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
        raise MalformedEncoding(f"not re-encodable: {exc}") from exc
    if again != bytes(data):
        raise MalformedEncoding("CBOR is not in canonical form")
    return obj


def digest(data: bytes) -> bytes:
    """32-byte blake3 hash used for transaction, block and state hashes."""
    return blake3.blake3(data).digest()


def require_map(obj: Any, fields: dict[str, type], what: str) -> dict[str, Any]:
    """Check ``obj`` is a map with exactly ``fields`` of the given types.

    Raises:
        MalformedEncoding: wrong container, missing/extra field, or wrong field type.
    """
    if not isinstance(obj, dict):
        raise MalformedEncoding(f"{what} must be a map")
    if set(obj) != set(fields):
        raise MalformedEncoding(f"{what} fields {sorted(map(str, obj))} != {sorted(fields)}")
    for name, kind in fields.items():
        value = obj[name]
        # bool is an int subclass; chain integers never accept booleans.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise MalformedEncoding(f"{what}.{name} must be {kind.__name__}")
    return obj
