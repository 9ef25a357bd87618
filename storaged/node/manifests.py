"""Manifests a provider keeps for the files it holds a piece of, so any one provider can hand
a client the manifest it needs to fetch the file back.

Stored as the exact bytes the client sent, under ``0x53 || CID digest`` (the 32-byte blake3
inside the CID): the bytes are checked to hash to the CID on the way in, so what comes out is
what the CID names.  Only manifests listing at least one deal of this provider are kept: a
provider is not a free public pastebin.
"""

from __future__ import annotations

from collections.abc import Callable

from storaged.data.cid import DAG_CBOR, CidError, parse_cid
from storaged.data.manifest import decode_manifest
from storaged.errors import NotFound, ProtocolViolation
from storaged.net.errors import RemoteRejected
from storaged.store import schema
from storaged.store.kv import KV

MAX_MANIFEST = (1 << 20) - 4096  # fits a DEAL request frame with its envelope


class ManifestRefused(RemoteRejected):
    """The manifest is valid but this provider will not keep it (none of its deals)."""

    code = "rejected"


def _digest(cid: str) -> bytes:
    try:
        codec, digest = parse_cid(cid)
    except CidError as exc:
        raise ProtocolViolation(f"bad manifest CID {cid[:80]!r}: {exc}") from exc
    if codec != DAG_CBOR:
        raise ProtocolViolation(f"manifest CID {cid[:80]!r} is not dag-cbor")
    return digest


class ManifestStore:
    """Manifests by CID in the node's KV."""

    def __init__(self, kv: KV, is_my_deal: Callable[[int], bool]) -> None:
        self.kv = kv
        self.is_my_deal = is_my_deal

    def put(self, cid: str, data: bytes) -> None:
        """Keep ``data`` under ``cid``.

        Raises:
            ProtocolViolation: bad CID text, too large, or malformed manifest (ManifestError).
            ManifestMismatch (IntegrityError): the bytes do not hash to ``cid``.
            ManifestRefused: the manifest lists no deal of this provider.
        """
        digest = _digest(cid)
        if len(data) > MAX_MANIFEST:
            raise ProtocolViolation(f"manifest of {len(data)} bytes exceeds {MAX_MANIFEST}")
        manifest = decode_manifest(data, expected_cid=cid)
        if not any(self.is_my_deal(d) for d in manifest.deals or ()):
            raise ManifestRefused("the manifest lists none of this provider's deals")
        self.kv.put(schema.market_manifest_key(digest), bytes(data))

    def get(self, cid: str) -> bytes:
        """The manifest bytes stored under ``cid``.

        Raises:
            ProtocolViolation: bad CID text.
            NotFound: not stored here.
        """
        raw = self.kv.get(schema.market_manifest_key(_digest(cid)))
        if raw is None:
            raise NotFound(f"no manifest {cid} here")
        return raw

    def count(self) -> int:
        """How many manifests are kept."""
        return sum(1 for _ in self.kv.scan(schema.MARKET_MANIFEST))
