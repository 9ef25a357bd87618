"""Golden vectors for manifest/CID/hashes, manifest validation, CID parsing, capabilities."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import blake3
import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID

from storaged.data import crypto
from storaged.data.capability import Capability, format_capability, parse_capability
from storaged.data.cid import DAG_CBOR, RAW, CidError, cid_for, parse_cid
from storaged.data.manifest import (
    Manifest,
    ManifestError,
    ManifestMismatch,
    SegmentEntry,
    decode_manifest,
)
from storaged.errors import CapabilityError, ProtocolViolation, UserError

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "data_v1.json").read_text())


def vector_manifest() -> Manifest:
    v = VECTORS["manifest"]
    segs = tuple(
        SegmentEntry(bytes([i]) * 32, tuple(bytes([16 * i + j]) * 32 for j in range(v["n"])))
        for i in range(3)
    )
    return Manifest(
        v["size"], v["segment_size"], v["k"], v["n"], v["cipher"],
        bytes.fromhex(v["nonce_prefix"]), segs, tuple(v["deals"]), tuple(v["providers"]),
    )  # fmt: skip


def test_manifest_golden_vector() -> None:
    m = vector_manifest()
    assert m.encode().hex() == VECTORS["manifest"]["cbor"]
    assert m.cid() == VECTORS["manifest"]["cid"]
    assert decode_manifest(m.encode(), VECTORS["manifest"]["cid"]) == m


def test_hash_and_ad_golden_vectors() -> None:
    assert cid_for(RAW, b"hello") == VECTORS["raw_hello_cid"]
    assert crypto.hash_share(b"hello").hex() == VECTORS["share_hash_hello"]
    assert crypto.hash_segment(b"hello").hex() == VECTORS["segment_hash_hello"]
    assert crypto.hash_share(b"hello") != crypto.hash_segment(b"hello")
    assert crypto.associated_data(10000, 4096, 3, 2).hex() == VECTORS["associated_data"]


@given(st.binary(), st.sampled_from([DAG_CBOR, RAW]))
def test_cid_parsed_by_multiformats(data: bytes, codec: int) -> None:
    text = cid_for(codec, data)
    cid = CID.decode(text)
    assert cid.version == 1
    assert cid.codec.code == codec
    assert cid.hashfun.code == 0x1E
    assert bytes(cid.raw_digest) == blake3.blake3(data).digest()
    assert parse_cid(text) == (codec, blake3.blake3(data).digest())


def _b32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("zQmabc1234567", "base32"),
        ("b!!!!!!!!!!!!", "not valid base32"),
        (_b32(bytes([2, 0x71, 0x1E, 32]) + bytes(32)), "version 2"),
        (_b32(bytes([1, 0x71, 0x12, 32]) + bytes(32)), "blake3"),
        (_b32(bytes([1, 0x71, 0x1E, 32]) + bytes(31)), "32 bytes"),
        (_b32(bytes([1, 0x71, 0x1E]) + b"\xff" * 6), "truncated varint"),
    ],
)
def test_bad_cid(text: str, msg: str) -> None:
    with pytest.raises(CidError, match=msg) as info:
        parse_cid(text)
    assert isinstance(info.value, UserError)  # CID text comes from the user: exit code 2
    assert info.value.exit_code == 2


def test_manifest_mismatch_is_integrity_error() -> None:
    m = vector_manifest()
    with pytest.raises(ManifestMismatch):
        decode_manifest(m.encode() + b"", cid_for(DAG_CBOR, b"other"))


def _mutated(**changes: Any) -> bytes:
    obj = cbor2.loads(vector_manifest().encode())
    for key, value in changes.items():
        if value is KeyError:
            del obj[key]
        else:
            obj[key] = value
    return bytes(cbor2.dumps(obj, canonical=True))


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        (b"\xff\x00", "not valid CBOR"),
        (cbor2.dumps([1, 2]), "CBOR map"),
        (_mutated(v=2), "version 2"),
        (_mutated(size=KeyError), "lacks field"),
        (_mutated(extra=1), "unknown field"),
        (_mutated(k=4), "'k'"),
        (_mutated(n=0), "'n'"),
        (_mutated(seg=0), "'seg'"),
        (_mutated(size=-1), "'size'"),
        (_mutated(cipher="aes"), "'cipher'"),
        (_mutated(nonce=b"short"), "'nonce'"),
        (_mutated(cipher="none"), "'nonce' must be null"),
        (_mutated(size=20000), "ceil"),
        (_mutated(segs=[[bytes(32), []]] * 3), "segment 0"),
        (_mutated(segs=[[bytes(31), [bytes(32)] * 3]] * 3), "segment 0 hash"),
        (_mutated(deals=["x"]), "'deals'"),
        (_mutated(providers=[1]), "'providers'"),
    ],
)
def test_malformed_manifest_names_the_field(data: bytes, msg: str) -> None:
    with pytest.raises(ManifestError, match=msg) as info:
        decode_manifest(data)
    assert isinstance(info.value, ProtocolViolation)


def _non_canonical_variants() -> list[bytes]:
    good = vector_manifest().encode()
    obj = cbor2.loads(good)
    unsorted = bytes(cbor2.dumps(dict(reversed(list(obj.items())))))  # keys out of order
    # The same map with a long-form encoding of the 'k' value (0x18 0x02 instead of 0x02).
    at = good.index(b"\x61k") + 2
    assert good[at] < 24
    long_k = good[:at] + b"\x18" + good[at:]
    # An indefinite-length map holding the same items.
    indefinite = b"\xbf" + good[1:] + b"\xff"
    return [unsorted, long_k, indefinite]


@pytest.mark.parametrize("data", _non_canonical_variants())
def test_non_canonical_manifest_refused(data: bytes) -> None:
    """Same fields, different bytes: refused even without an expected CID (one file, one CID)."""
    good = vector_manifest().encode()
    assert data != good
    assert cbor2.loads(data) == cbor2.loads(good)  # same content, so only the encoding is wrong
    with pytest.raises(ManifestError, match="not canonical CBOR") as info:
        decode_manifest(data)
    assert isinstance(info.value, ProtocolViolation)
    with pytest.raises(ManifestError, match="not canonical CBOR"):
        decode_manifest(data, cid_for(DAG_CBOR, data))  # its own CID does not save it


def test_capability_round_trip() -> None:
    cid = vector_manifest().cid()
    for key in (None, bytes(range(32))):
        cap = Capability(cid, key)
        text = format_capability(cap)
        assert text.startswith("storage://" + cid)
        assert ("#" in text) == (key is not None)
        assert parse_capability(text) == cap


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("http://x", "must start with 'storage://'"),
        ("storage://notacid#AAAA", "bad CID"),
        ("storage://" + cid_for(RAW, b"x"), "not a manifest"),
        ("storage://{cid}#AAAA", "key is 3 bytes, expected 32"),
        ("storage://{cid}#not*base64", "not valid base64url"),
    ],
)
def test_bad_capability(text: str, msg: str) -> None:
    with pytest.raises(CapabilityError, match=msg):
        parse_capability(text.format(cid=vector_manifest().cid()))
