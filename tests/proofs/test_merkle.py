"""Merkle trees: the C core equals the twin, paths verify, tampering fails, bad input raises."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proofs
from proofs import merkle, reference
from proofs.errors import ProofError
from proofs.reference import merkle as ref_merkle

VECTORS = Path(__file__).parent.parent / "vectors" / "merkle_v1.json"
IMPLS = [pytest.param(proofs.impl, id="live"), pytest.param(reference, id="twin")]


def depth(n: int) -> int:
    return n.bit_length() - 1


@st.composite
def trees(draw: Any, max_log: int = 6) -> tuple[bytes, int, list[int]]:
    log = draw(st.integers(0, max_log))
    n = 1 << log
    leaves = draw(st.binary(min_size=32 * n, max_size=32 * n))
    drop = draw(st.integers(0, max(log - 1, 0)))
    indices = draw(st.lists(st.integers(0, n - 1), max_size=10))
    return leaves, drop, indices


@settings(max_examples=120, deadline=None)
@given(trees())
def test_c_equals_twin(case: tuple[bytes, int, list[int]]) -> None:
    leaves, drop, indices = case
    tree = merkle.merkle_tree(leaves, drop)
    assert tree == reference.merkle_tree(leaves, drop)
    root = merkle.merkle_root(leaves, tree, drop)
    assert root == reference.merkle_root(leaves, tree, drop)
    paths = merkle.merkle_paths(leaves, tree, drop, indices)
    assert paths == reference.merkle_paths(leaves, tree, drop, indices)
    n = len(leaves) // 32
    values = b"".join(leaves[32 * i : 32 * i + 32] for i in indices)
    assert merkle.merkle_verify_paths(root, n, indices, values, paths)
    assert reference.merkle_verify_paths(root, n, indices, values, paths)


def test_every_drop_gives_the_same_root_and_paths() -> None:
    n = 1 << 10
    leaves = os.urandom(32 * n)
    full = merkle.merkle_tree(leaves)
    root = merkle.merkle_root(leaves, full)
    indices = [0, 1, 2, 511, 512, 513, 1000, n - 1]
    want = merkle.merkle_paths(leaves, full, 0, indices)
    for drop in range(depth(n)):
        tree = merkle.merkle_tree(leaves, drop)
        assert len(tree) == 32 * ((n >> drop) - 1)
        assert tree == full[len(full) - len(tree) :]  # the kept rows are the top rows
        assert merkle.merkle_root(leaves, tree, drop) == root
        assert merkle.merkle_paths(leaves, tree, drop, indices) == want, drop


def test_large_tree_matches_row_by_row_hashing() -> None:
    # 2^15 leaves spans several build batches; check against hashing each row with the package.
    leaves = os.urandom(32 << 15)
    row = leaves
    while len(row) > 32:
        row = b"".join(
            blake3.blake3(row[i : i + 64], key=ref_merkle.NODE_KEY).digest()
            for i in range(0, len(row), 64)
        )
    tree = merkle.merkle_tree(leaves, 3)
    assert merkle.merkle_root(leaves, tree, 3) == row


def test_node_is_keyed_hash_under_the_documented_context() -> None:
    key = blake3.blake3(b"", derive_key_context="storaged 2026-11 merkle node v1").digest()
    left, right = os.urandom(32), os.urandom(32)
    want = blake3.blake3(left + right, key=key).digest()
    assert merkle.merkle_hash_pair(left, right) == want
    assert reference.merkle_hash_pair(left, right) == want
    assert proofs.impl.merkle_node_context() == merkle.NODE_CONTEXT


@pytest.mark.parametrize("impl", IMPLS)
def test_golden_vector(impl: ModuleType) -> None:
    v = json.loads(VECTORS.read_text())
    assert v["version"] == 1 and v["node_context"] == merkle.NODE_CONTEXT
    assert ref_merkle.NODE_KEY.hex() == v["node_key"]
    leaves = b"".join(blake3.blake3(i.to_bytes(8, "big")).digest() for i in range(v["n_leaves"]))
    tree = impl.merkle_tree(leaves)
    assert impl.merkle_root(leaves, tree).hex() == v["root"]
    assert impl.merkle_paths(leaves, tree, 0, [v["path_index"]]).hex() == v["path"]


def flip(buf: bytes, bit: int) -> bytes:
    b = bytearray(buf)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("impl", IMPLS)
def test_any_flipped_bit_fails_verification(impl: ModuleType) -> None:
    n = 16
    leaves = os.urandom(32 * n)
    tree = impl.merkle_tree(leaves, 1)
    root = impl.merkle_root(leaves, tree, 1)
    indices = [3, 8, 15]
    values = b"".join(leaves[32 * i : 32 * i + 32] for i in indices)
    paths = impl.merkle_paths(leaves, tree, 1, indices)
    assert impl.merkle_verify_paths(root, n, indices, values, paths)
    # Every byte position of every leaf value, path node and the root (one bit each, varied).
    for pos in range(len(values)):
        assert not impl.merkle_verify_paths(
            root, n, indices, flip(values, 8 * pos + pos % 8), paths
        )
    for pos in range(len(paths)):
        assert not impl.merkle_verify_paths(
            root, n, indices, values, flip(paths, 8 * pos + pos % 8)
        )
    for pos in range(32):
        assert not impl.merkle_verify_paths(
            flip(root, 8 * pos + pos % 8), n, indices, values, paths
        )
    # A valid leaf and path claimed at another index.
    for j in range(len(indices)):
        for bit in range(depth(n)):
            moved = list(indices)
            moved[j] ^= 1 << bit
            assert not impl.merkle_verify_paths(root, n, moved, values, paths)


def test_empty_batch_and_single_leaf() -> None:
    leaf = os.urandom(32)
    for impl in (proofs.impl, reference):
        assert impl.merkle_tree(leaf) == b""
        assert impl.merkle_root(leaf, b"") == leaf
        assert impl.merkle_paths(leaf, b"", 0, [0]) == b""
        assert impl.merkle_verify_paths(leaf, 1, [0], leaf, b"")
        assert not impl.merkle_verify_paths(leaf, 1, [0], flip(leaf, 0), b"")
        assert impl.merkle_verify_paths(leaf, 1, [], b"", b"")


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_arguments_raise_proof_error(impl: ModuleType) -> None:
    leaves = os.urandom(32 * 8)
    tree = impl.merkle_tree(leaves)
    root = impl.merkle_root(leaves, tree)
    cases: list[tuple[str, Any]] = [
        ("multiple of 32", lambda: impl.merkle_tree(b"x" * 33)),
        ("multiple of 32", lambda: impl.merkle_tree(b"")),
        ("power of two", lambda: impl.merkle_tree(bytes(32 * 6))),
        ("drop must be", lambda: impl.merkle_tree(leaves, 3)),
        ("drop must be", lambda: impl.merkle_tree(leaves, -1)),
        ("drop must be", lambda: impl.merkle_tree(bytes(32), 1)),
        ("tree must be", lambda: impl.merkle_root(leaves, tree[:-32])),
        ("tree must be", lambda: impl.merkle_root(leaves, tree, 1)),
        ("out of range", lambda: impl.merkle_paths(leaves, tree, 0, [8])),
        ("out of range", lambda: impl.merkle_paths(leaves, tree, 0, [-1])),
        ("out of range", lambda: impl.merkle_paths(leaves, tree, 0, [1 << 70])),
        ("root must be", lambda: impl.merkle_verify_paths(root[:31], 8, [], b"", b"")),
        ("n_leaves", lambda: impl.merkle_verify_paths(root, 6, [], b"", b"")),
        ("n_leaves", lambda: impl.merkle_verify_paths(root, 0, [], b"", b"")),
        ("out of range", lambda: impl.merkle_verify_paths(root, 8, [9], bytes(32), bytes(96))),
        ("leaf_values", lambda: impl.merkle_verify_paths(root, 8, [1], bytes(31), bytes(96))),
        ("paths must be", lambda: impl.merkle_verify_paths(root, 8, [1], bytes(32), bytes(64))),
        ("32 bytes", lambda: impl.merkle_hash_pair(bytes(32), bytes(31))),
    ]
    for match, call in cases:
        with pytest.raises(ProofError, match=match):
            call()
    with pytest.raises(TypeError):
        impl.merkle_paths(leaves, tree, 0, [1.5])


@pytest.mark.skipif(proofs.native is None, reason="GIL release is a property of the C backend")
def test_build_releases_the_gil() -> None:
    # Deterministic rather than a wall-time race: if the build held the GIL, this thread could
    # not run a single Python statement between the builder's start and end stamps.
    leaves = os.urandom(32 << 19)  # 16 MiB: tens of milliseconds
    stamps: dict[str, float] = {}
    ticks: list[float] = []

    def build() -> None:
        stamps["start"] = time.perf_counter()
        merkle.merkle_tree(leaves)
        stamps["end"] = time.perf_counter()

    t = threading.Thread(target=build)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    # The middle of the window: ticks after the C call returns (before the end stamp) would
    # also fall inside [start, end], so only the span the C call certainly covers counts.
    span = stamps["end"] - stamps["start"]
    lo, hi = stamps["start"] + 0.25 * span, stamps["start"] + 0.5 * span
    inside = [x for x in ticks if lo < x < hi]
    assert len(inside) > 10, (len(ticks), stamps)


@pytest.mark.parametrize("impl", IMPLS)
def test_tree_into_a_buffer_equals_tree(impl: ModuleType) -> None:
    leaves = os.urandom(32 * 64)
    for drop in (0, 2):
        out = bytearray(32 * ((64 >> drop) - 1))
        impl.merkle_tree_into(leaves, out, drop)
        assert bytes(out) == impl.merkle_tree(leaves, drop)
        with pytest.raises(ProofError, match="out must be"):
            impl.merkle_tree_into(leaves, bytearray(len(out) + 32), drop)


@pytest.mark.parametrize("log_n", [0, 1, 3, 11, 12, 13, 15])
def test_root_of_equals_built_tree_root_and_twin(log_n: int) -> None:
    # Sizes around the C build's 2^12-leaf batch: a single batch, exactly one, several.
    leaves = bytes((i * 29 + log_n) & 0xFF for i in range(32 << log_n))
    want = merkle.merkle_root(leaves, merkle.merkle_tree(leaves))
    assert merkle.merkle_root_of(leaves) == want
    if log_n <= 12:
        assert reference.merkle_root_of(leaves) == want


def test_root_of_bad_sizes() -> None:
    for bad in (b"", bytes(31), bytes(96)):
        with pytest.raises(ProofError):
            merkle.merkle_root_of(bad)
        with pytest.raises(ProofError):
            reference.merkle_root_of(bad)
