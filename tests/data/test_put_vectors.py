"""Whole-put golden vectors: a fixed key and nonce prefix give byte-identical shares and manifest.

The vectors were recorded from the pipeline before its buffers, worker pool and libsodium calls
were reworked for speed, so they pin that the rework changed no byte: the manifest CID covers
every segment hash (ciphertext layout, tag position) and every share hash (zfec output).
"""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from storaged.data import pipeline
from storaged.data.manifest import decode_manifest

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "data_put_v1.json").read_text())
KEY = bytes.fromhex(VECTORS["key"])
PREFIX = bytes.fromhex(VECTORS["nonce_prefix"])


def pattern(size: int) -> bytes:
    return bytes((i * 31 + 7) % 256 for i in range(size))


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['size']}-{c['k']}of{c['n']}")
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_put_matches_recorded_vector(
    case: dict[str, Any], workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pipeline draws the key and then the prefix from secrets.token_bytes.
    monkeypatch.setattr(secrets, "token_bytes", lambda n: {32: KEY, 16: PREFIX}[n])
    data = pattern(case["size"])
    store: list[list[bytes]] = []
    manifest, key = pipeline.encode_file(
        io.BytesIO(data), lambda i, s: store.append(list(s)), size=case["size"], k=case["k"],
        n=case["n"], segment_size=case["segment_size"], public=case["public"], workers=workers,
    )  # fmt: skip
    assert manifest.encode().hex() == case["manifest_cbor"]
    assert manifest.cid() == case["manifest_cid"]
    assert decode_manifest(bytes.fromhex(case["manifest_cbor"]), case["manifest_cid"]) == manifest
    assert key == (None if case["public"] else KEY)
    assert all(type(s) is bytes for shares in store for s in shares)
    if store:
        assert store[0][0][:32].hex() == case["first_share_head"]
    out = io.BytesIO()
    pipeline.decode_file(
        manifest, key, lambda i: dict(enumerate(store[i])), out, workers=workers
    )
    assert out.getvalue() == data
