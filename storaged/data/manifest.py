"""The file manifest: versioned canonical CBOR; its CID (dag-cbor, blake3) names the file.

Format v1, a CBOR map (cbor2 canonical=True, so keys are sorted and lengths minimal):

===========  =============  ==================================================================
key          type           meaning
===========  =============  ==================================================================
"v"          uint           format version, 1
"size"       uint           plaintext file size in bytes
"seg"        uint           plaintext bytes per segment (last one may be shorter), 1 .. 2**31
"k", "n"     uint           zfec parameters, 1 <= k <= n <= 256
"cipher"     text           "xchacha20poly1305" or "none"
"nonce"      bytes | null   16-byte nonce prefix (null iff cipher is "none")
"segs"       array          per segment: [segment hash (32 B), [n share hashes (32 B)]]
"deals"      array of uint  optional: deal ids, filled once deals are published
"providers"  array of text  optional: provider peer ids, by share index
"pieces"     array of bytes optional: the piece commitment (comm_d, 32 B) of each slot, by
                            share index (n entries); the key to fetch that slot's piece
===========  =============  ==================================================================

The segment count is ceil(size / seg) (0 for an empty file) and must equal len(segs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

from storaged.data.cid import DAG_CBOR, cid_for
from storaged.data.crypto import NONCE_PREFIX_SIZE, TAG_SIZE
from storaged.errors import IntegrityError, ProtocolViolation

VERSION = 1
CIPHER_XCHACHA = "xchacha20poly1305"
CIPHER_NONE = "none"
_REQUIRED = {"v", "size", "seg", "k", "n", "cipher", "nonce", "segs"}
_OPTIONAL = {"deals", "providers", "pieces"}


class ManifestError(ProtocolViolation):
    """A manifest from a peer is malformed (bad CBOR, field, type or value); names the field."""


class ManifestMismatch(IntegrityError):
    """A manifest's bytes do not hash to the CID that named it."""


@dataclass(frozen=True)
class SegmentEntry:
    """Hashes of one segment: its stored (encrypted) bytes and each of its n shares."""

    segment_hash: bytes
    share_hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Manifest:
    """Everything needed to fetch, verify and rebuild a file (but not its key)."""

    size: int
    segment_size: int
    k: int
    n: int
    cipher: str
    nonce_prefix: bytes | None
    segments: tuple[SegmentEntry, ...]
    deals: tuple[int, ...] | None = None
    providers: tuple[str, ...] | None = None
    pieces: tuple[bytes, ...] | None = None
    version: int = field(default=VERSION)

    @property
    def encrypted(self) -> bool:
        return self.cipher == CIPHER_XCHACHA

    def segment_count(self) -> int:
        return segment_count(self.size, self.segment_size)

    def plain_length(self, index: int) -> int:
        """Plaintext length of segment `index`."""
        return min(self.segment_size, self.size - index * self.segment_size)

    def stored_length(self, index: int) -> int:
        """Length of segment `index` as erasure-coded (plaintext + tag when encrypted)."""
        return self.plain_length(index) + (TAG_SIZE if self.encrypted else 0)

    def encode(self) -> bytes:
        """Canonical CBOR bytes (the spec in the module docstring)."""
        obj: dict[str, Any] = {
            "v": self.version,
            "size": self.size,
            "seg": self.segment_size,
            "k": self.k,
            "n": self.n,
            "cipher": self.cipher,
            "nonce": self.nonce_prefix,
            "segs": [[s.segment_hash, list(s.share_hashes)] for s in self.segments],
        }
        if self.deals is not None:
            obj["deals"] = list(self.deals)
        if self.providers is not None:
            obj["providers"] = list(self.providers)
        if self.pieces is not None:
            obj["pieces"] = list(self.pieces)
        return bytes(cbor2.dumps(obj, canonical=True))

    def cid(self) -> str:
        """The CID (dag-cbor, blake3) that names this file."""
        return cid_for(DAG_CBOR, self.encode())


def segment_count(size: int, segment_size: int) -> int:
    return -(-size // segment_size)


def _uint(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = obj[key]
    if type(v) is not int or not lo <= v <= hi:
        raise ManifestError(f"manifest field {key!r} must be an integer in [{lo}, {hi}]")
    return v


def _hash(v: object, what: str) -> bytes:
    if type(v) is not bytes or len(v) != 32:
        raise ManifestError(f"manifest {what} must be 32 bytes")
    return v


def decode_manifest(data: bytes, expected_cid: str | None = None) -> Manifest:
    """Parse and validate manifest bytes (from a peer).

    Raises:
        ManifestMismatch: `expected_cid` is given and the bytes do not hash to it.
        ManifestError: anything malformed, or not canonical CBOR; the message names the field.
    """
    if expected_cid is not None and cid_for(DAG_CBOR, data) != expected_cid:
        raise ManifestMismatch(f"manifest bytes do not match CID {expected_cid}")
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for garbage
        raise ManifestError(f"manifest is not valid CBOR: {exc}") from exc
    if not isinstance(obj, dict):
        raise ManifestError("manifest must be a CBOR map")
    # One file, one CID: without this, reordered keys or long-form lengths would give the same
    # manifest a second name (checked even when no CID is expected, e.g. bytes read from disk).
    try:
        canonical = cbor2.dumps(obj, canonical=True)
    except Exception as exc:  # e.g. an unencodable tag value
        raise ManifestError(f"manifest cannot be re-encoded: {exc}") from exc
    if canonical != data:
        raise ManifestError("manifest is not canonical CBOR (key order or length encoding)")
    missing = _REQUIRED - obj.keys()
    if missing:
        raise ManifestError(f"manifest lacks field(s) {sorted(missing)}")
    unknown = obj.keys() - _REQUIRED - _OPTIONAL
    if unknown:
        raise ManifestError(f"manifest has unknown field(s) {sorted(map(str, unknown))}")
    if obj["v"] != VERSION or type(obj["v"]) is not int:
        raise ManifestError(f"manifest version {obj['v']!r} is not supported (want {VERSION})")
    size = _uint(obj, "size", 0, 2**63 - 1)
    seg = _uint(obj, "seg", 1, 2**31)
    n = _uint(obj, "n", 1, 256)
    k = _uint(obj, "k", 1, n)
    cipher = obj["cipher"]
    nonce = obj["nonce"]
    if cipher == CIPHER_XCHACHA:
        if type(nonce) is not bytes or len(nonce) != NONCE_PREFIX_SIZE:
            raise ManifestError(f"manifest field 'nonce' must be {NONCE_PREFIX_SIZE} bytes")
    elif cipher == CIPHER_NONE:
        if nonce is not None:
            raise ManifestError("manifest field 'nonce' must be null when cipher is 'none'")
    else:
        raise ManifestError(f"manifest field 'cipher' has unknown value {cipher!r}")
    segs = obj["segs"]
    if not isinstance(segs, list) or len(segs) != segment_count(size, seg):
        raise ManifestError("manifest field 'segs' must list ceil(size / seg) segments")
    entries = []
    for i, e in enumerate(segs):
        if not isinstance(e, list) or len(e) != 2 or not isinstance(e[1], list) or len(e[1]) != n:
            raise ManifestError(f"manifest segment {i} must be [hash, [n share hashes]]")
        entries.append(
            SegmentEntry(
                _hash(e[0], f"segment {i} hash"),
                tuple(_hash(h, f"segment {i} share hash") for h in e[1]),
            )
        )
    deals = obj.get("deals")
    if deals is not None and (
        not isinstance(deals, list) or any(type(d) is not int or d < 0 for d in deals)
    ):
        raise ManifestError("manifest field 'deals' must be a list of unsigned integers")
    providers = obj.get("providers")
    if providers is not None and (
        not isinstance(providers, list) or any(type(p) is not str for p in providers)
    ):
        raise ManifestError("manifest field 'providers' must be a list of text")
    pieces = obj.get("pieces")
    if pieces is not None and (not isinstance(pieces, list) or len(pieces) != n):
        raise ManifestError("manifest field 'pieces' must list n piece commitments")
    return Manifest(
        size,
        seg,
        k,
        n,
        cipher,
        nonce,
        tuple(entries),
        tuple(deals) if deals is not None else None,
        tuple(providers) if providers is not None else None,
        tuple(_hash(p, "piece commitment") for p in pieces) if pieces is not None else None,
    )
