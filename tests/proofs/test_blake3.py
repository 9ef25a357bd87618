"""The C core's own BLAKE3 is bit-identical to the `blake3` package, on every path."""

from __future__ import annotations

import os
import subprocess
import sys

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proofs
from proofs import hashing, reference
from proofs.errors import ProofError

native = proofs.native
needs_c = pytest.mark.skipif(native is None, reason="C backend not loaded")

KEY = bytes(range(1, 33))
CONTEXT = "storaged tests 2026-11 blake3 context"


def pattern(n: int) -> bytes:
    """Non-repeating-at-block-size bytes (as the official test vectors use: i mod 251)."""
    return bytes(i % 251 for i in range(n))


@needs_c
def test_every_length_up_to_2100_matches_package() -> None:
    # Covers empty input, every partial block, block and chunk boundaries, and 3 chunks.
    assert native is not None
    data = pattern(2100)
    for n in range(2101):
        m = data[:n]
        assert native.blake3_hash(m) == blake3.blake3(m).digest(), n
        assert native.blake3_keyed_hash(KEY, m) == blake3.blake3(m, key=KEY).digest(), n
        assert (
            native.blake3_derive_key(CONTEXT, m)
            == blake3.blake3(m, derive_key_context=CONTEXT).digest()
        ), n


@needs_c
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=10 * 1024), key=st.binary(min_size=32, max_size=32))
def test_random_inputs_match_package(data: bytes, key: bytes) -> None:
    assert native is not None
    assert native.blake3_hash(data) == blake3.blake3(data).digest()
    assert native.blake3_keyed_hash(key, data) == blake3.blake3(data, key=key).digest()


@needs_c
@settings(max_examples=50, deadline=None)
@given(
    context=st.text(min_size=0, max_size=200).filter(lambda c: "\0" not in c),
    material=st.binary(max_size=3000),
)
def test_derive_key_matches_package(context: str, material: bytes) -> None:
    assert native is not None
    want = blake3.blake3(material, derive_key_context=context).digest()
    assert native.blake3_derive_key(context, material) == want


@needs_c
def test_large_input_matches_package() -> None:
    # 2^20 + 1 bytes: a deep chunk tree with an odd tail (the lazy merge stack's edge case).
    assert native is not None
    data = os.urandom((1 << 20) + 1)
    assert native.blake3_hash(data) == blake3.blake3(data).digest()


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 1024, 1025, 3000])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 17, 33])
def test_keyed_hash_many_equals_one_at_a_time(length: int, count: int) -> None:
    # 64-byte messages take the 8-lane SIMD path (full batches and a tail); others the loop.
    data = os.urandom(length * count)
    out = hashing.blake3_keyed_hash_many(KEY, data, count)
    assert len(out) == 32 * count
    for i in range(count):
        msg = data[i * length : (i + 1) * length]
        assert out[32 * i : 32 * i + 32] == blake3.blake3(msg, key=KEY).digest()


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(0, 1100), count=st.integers(0, 20), seed=st.binary(min_size=32, max_size=32)
)
def test_keyed_hash_many_random_shapes(length: int, count: int, seed: bytes) -> None:
    # Lengths up to one chunk take the lane-per-message path in groups of 8; longer the loop.
    data = (seed * (length * count // 32 + 1))[: length * count]
    out = hashing.blake3_keyed_hash_many(seed, data, count)
    want = b"".join(
        blake3.blake3(data[i * length : (i + 1) * length], key=seed).digest() for i in range(count)
    )
    assert out == want


def test_typed_wrappers_match_package() -> None:
    m = pattern(5000)
    assert hashing.blake3_hash(m) == blake3.blake3(m).digest()
    assert hashing.blake3_keyed_hash(KEY, memoryview(m)) == blake3.blake3(m, key=KEY).digest()
    assert (
        hashing.blake3_derive_key(CONTEXT, m)
        == blake3.blake3(m, derive_key_context=CONTEXT).digest()
    )
    assert hashing.blake3_backend() in ("avx512", "avx2", "sse41", "portable", "python")


_DIGEST_SCRIPT = """
import hashlib, sys
from proofs import _native as n
key = bytes(range(32))
h = hashlib.sha256()
for size in (0, 1, 64, 65, 1023, 1024, 1025, 4096, 9000):
    data = bytes(i % 251 for i in range(size))
    h.update(n.blake3_hash(data) + n.blake3_keyed_hash(key, data))
    h.update(n.blake3_derive_key("ctx", data))
blocks = bytes(i % 253 for i in range(64 * 45))
h.update(n.blake3_keyed_hash_many(key, blocks, 45))
h.update(n.merkle_tree(blocks[: 32 * 64]))
print(n.blake3_backend(), h.hexdigest())
"""


def _run_digest(portable: bool) -> tuple[str, str]:
    env = dict(os.environ)
    env.pop("STORAGED_BLAKE3_PORTABLE", None)
    if portable:
        env["STORAGED_BLAKE3_PORTABLE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    return out[0], out[1]


@needs_c
def test_simd_and_portable_paths_agree() -> None:
    # The kernel is chosen once per process, so each path runs in its own interpreter.
    fast_backend, fast = _run_digest(portable=False)
    slow_backend, slow = _run_digest(portable=True)
    assert slow_backend == "portable"
    assert fast == slow, (fast_backend, slow_backend)


@pytest.mark.parametrize("impl", [proofs.impl, reference], ids=["live", "twin"])
def test_bad_arguments_raise_proof_error(impl: object) -> None:
    f = impl  # the C module and the twin take the same arguments
    with pytest.raises(ProofError, match="key must be 32 bytes"):
        f.blake3_keyed_hash(b"short", b"x")  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="key must be 32 bytes"):
        f.blake3_keyed_hash_many(bytes(33), b"", 0)  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="do not split"):
        f.blake3_keyed_hash_many(KEY, b"abc", 2)  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="do not split"):
        f.blake3_keyed_hash_many(KEY, b"abc", 0)  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="count must be >= 0"):
        f.blake3_keyed_hash_many(KEY, b"", -1)  # type: ignore[attr-defined]
    with pytest.raises(ProofError, match="NUL"):
        f.blake3_derive_key("a\0b", b"")  # type: ignore[attr-defined]
