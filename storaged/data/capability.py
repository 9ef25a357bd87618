"""Capabilities: ``storage://<manifest CID>#<key>`` (key: 32 bytes, unpadded base64url), or
``storage://<manifest CID>`` for a public (unencrypted) file."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from storaged.data.cid import DAG_CBOR, CidError, parse_cid
from storaged.data.crypto import KEY_SIZE
from storaged.errors import CapabilityError

SCHEME = "storage://"


@dataclass(frozen=True)
class Capability:
    """What names a file (its manifest CID) and, unless public, the key that reads it."""

    cid: str
    key: bytes | None


def format_capability(cap: Capability) -> str:
    """The text form."""
    if cap.key is None:
        return SCHEME + cap.cid
    return SCHEME + cap.cid + "#" + base64.urlsafe_b64encode(cap.key).decode().rstrip("=")


def parse_capability(text: str) -> Capability:
    """Parse the text form.

    Raises:
        CapabilityError: naming what is wrong (scheme, CID, key encoding or key length).
    """
    text = text.strip()
    if not text.startswith(SCHEME):
        raise CapabilityError(f"capability must start with {SCHEME!r}")
    body = text[len(SCHEME) :]
    cid, sep, key_text = body.partition("#")
    try:
        codec, _ = parse_cid(cid)
    except CidError as exc:
        raise CapabilityError(f"capability has a bad CID: {exc}") from exc
    if codec != DAG_CBOR:
        raise CapabilityError(f"capability CID codec {codec:#x} is not a manifest (dag-cbor)")
    if not sep:
        return Capability(cid, None)
    try:
        key = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
        if base64.urlsafe_b64encode(key).decode().rstrip("=") != key_text:
            raise ValueError("non-canonical")
    except (binascii.Error, ValueError) as exc:
        raise CapabilityError("capability key is not valid base64url") from exc
    if len(key) != KEY_SIZE:
        raise CapabilityError(f"capability key is {len(key)} bytes, expected {KEY_SIZE}")
    return Capability(cid, key)
