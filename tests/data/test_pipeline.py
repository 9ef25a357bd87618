"""Round trips, erasure subsets, tampering, wrong keys, reordering and truncation."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from storaged.data import crypto, erasure
from storaged.data.manifest import Manifest, SegmentEntry
from storaged.data.pipeline import (
    NotEnoughShares,
    ShareIntegrityError,
    decode_file,
    decode_file_async,
    encode_file,
    encode_file_async,
)
from storaged.errors import CapabilityError, IntegrityError, UserError

SEG = 4096


def put(data: bytes, **kw: object) -> tuple[Manifest, bytes | None, list[list[bytes]]]:
    store: list[list[bytes]] = []

    def sink(index: int, shares: list[bytes]) -> None:
        assert index == len(store)
        store.append(shares)

    kw.setdefault("segment_size", SEG)
    manifest, key = encode_file(io.BytesIO(data), sink, size=len(data), **kw)  # type: ignore[arg-type]
    return manifest, key, store


def get(manifest: Manifest, key: bytes | None, store: list[list[bytes]], pick: list[int]) -> bytes:
    out = io.BytesIO()
    decode_file(manifest, key, lambda i: {j: store[i][j] for j in pick}, out)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG + 7])
@pytest.mark.parametrize("public", [False, True])
def test_round_trip_edge_sizes(size: int, public: bool) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    manifest, key, store = put(data, public=public)
    assert (key is None) == public
    assert len(manifest.segments) == len(store) == -(-size // SEG)
    assert get(manifest, key, store, [5, 1, 3, 2]) == data
    if not public and size >= 16:  # a shorter needle can occur in random ciphertext by chance
        assert data[:16] not in b"".join(store[0])  # ciphertext, not plaintext


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=5 * SEG), k=st.integers(1, 5), extra=st.integers(0, 3))
def test_round_trip_random(data: bytes, k: int, extra: int) -> None:
    n = k + extra
    manifest, key, store = put(data, k=k, n=n)
    assert get(manifest, key, store, list(range(n - k, n))) == data


def test_every_k_subset_decodes() -> None:
    data = bytes(range(256)) * 40
    manifest, key, store = put(data, k=3, n=6)
    for subset in itertools.combinations(range(6), 3):
        assert get(manifest, key, store, list(subset)) == data


def test_default_segment_size_round_trip() -> None:
    data = bytes(range(256)) * (4 * 4096 + 3)  # just over 4 MiB: two default segments
    manifest, key, store = put(data, segment_size=4 * 1024 * 1024)
    assert len(manifest.segments) == 2
    assert get(manifest, key, store, [0, 2, 4, 5]) == data


@settings(max_examples=30, deadline=None)
@given(seg=st.integers(0, 2), share=st.integers(0, 5), bit=st.integers(0, 8 * 1000 - 1))
def test_flipped_bit_in_any_share_is_caught(seg: int, share: int, bit: int) -> None:
    data = bytes(range(256)) * 40  # 3 segments of 4096, 3 KiB... shares >= 1 KiB
    manifest, key, store = put(data)
    tampered = [list(s) for s in store]
    buf = bytearray(tampered[seg][share])
    buf[(bit // 8) % len(buf)] ^= 1 << (bit % 8)
    tampered[seg][share] = bytes(buf)
    others = [i for i in range(6) if i != share][:3]
    with pytest.raises(
        NotEnoughShares, match=f"segment {seg}: 3 good shares of 4 given, need 4 .*share {share}: "
    ):
        get(manifest, key, tampered, [share, *others])
    # With every share offered the spare replaces the bad one, and the bad one is reported.
    bad: list[tuple[int, int, str]] = []
    out = io.BytesIO()
    decode_file(manifest, key, lambda i: dict(enumerate(tampered[i])), out,
                on_bad_share=lambda s, i, why: bad.append((s, i, why)))
    assert out.getvalue() == data
    assert bad == ([] if share >= 4 else [(seg, share, f"share {share}: blake3 does not match "
                                                         "manifest")])


def test_wrong_key_refused() -> None:
    manifest, key, store = put(b"secret" * 1000)
    assert key is not None
    wrong = bytes([key[0] ^ 1]) + key[1:]
    with pytest.raises(CapabilityError, match="does not decrypt this file"):
        get(manifest, wrong, store, [0, 1, 2, 3])
    with pytest.raises(CapabilityError, match="carries no key"):
        get(manifest, None, store, [0, 1, 2, 3])


def _rehash(manifest: Manifest, store: list[list[bytes]]) -> Manifest:
    """A manifest a forger could build for rearranged shares (hashes consistent)."""
    entries = []
    for i, shares in enumerate(store):
        length = manifest.stored_length(i)
        sealed = erasure.decode(dict(enumerate(shares)), manifest.k, manifest.n, length)
        hashes = tuple(map(crypto.hash_share, shares))
        entries.append(SegmentEntry(crypto.hash_segment(sealed), hashes))
    return replace(manifest, segments=tuple(entries))


def test_swapped_segments_refused() -> None:
    data = b"A" * SEG + b"B" * SEG + b"C" * SEG
    manifest, key, store = put(data)
    swapped = [store[1], store[0], store[2]]
    with pytest.raises(CapabilityError):  # tag fails: segment index is bound in
        get(_rehash(manifest, swapped), key, swapped, [0, 1, 2, 3])
    with pytest.raises(ShareIntegrityError):  # and the original manifest catches it earlier
        get(manifest, key, swapped, [0, 1, 2, 3])


def test_swapped_between_files_refused() -> None:
    m1, k1, _ = put(b"x" * SEG)
    _, k2, s2 = put(b"y" * SEG)
    assert k1 != k2
    with pytest.raises(CapabilityError):
        get(_rehash(m1, s2), k1, s2, [0, 1, 2, 3])


def test_truncated_file_refused() -> None:
    data = b"Z" * (3 * SEG)
    manifest, key, store = put(data)
    short = replace(manifest, size=2 * SEG, segments=manifest.segments[:2])
    with pytest.raises(CapabilityError):  # the segment count and size are authenticated
        get(short, key, store[:2], [0, 1, 2, 3])


def test_not_enough_shares() -> None:
    manifest, key, store = put(b"q" * 100)
    with pytest.raises(NotEnoughShares, match=r"segment 0: 3 good shares of 3 given, need 4$"):
        get(manifest, key, store, [0, 1, 2])


def _corrupt(store: list[list[bytes]], seg: int, shares: list[int]) -> list[list[bytes]]:
    out = [list(s) for s in store]
    for i in shares:
        out[seg][i] = bytes([out[seg][i][0] ^ 0xFF]) + out[seg][i][1:]
    return out


@pytest.mark.parametrize(
    ("bad", "reported"), [([0], [0]), ([1, 3], [1, 3]), ([2, 0], [0, 2]), ([5, 0], [0])]
)
def test_spare_shares_replace_corrupted_ones(bad: list[int], reported: list[int]) -> None:
    """k=4, n=6: one, then n-k=2 corrupted shares of a segment still decode from the spares.

    Shares are checked in index order until k verify, so a bad share after that is not seen."""
    data = bytes(range(256)) * 40
    manifest, key, store = put(data)
    tampered = _corrupt(store, 1, bad)
    seen: list[tuple[int, int]] = []
    out = io.BytesIO()
    decode_file(manifest, key, lambda i: dict(enumerate(tampered[i])), out,
                on_bad_share=lambda s, i, _why: seen.append((s, i)))
    assert out.getvalue() == data
    assert seen == [(1, i) for i in reported]


def test_too_many_corrupted_shares_fail_clearly() -> None:
    """n-k+1 = 3 corrupted shares leave 3 < k good ones: a NotEnoughShares naming them."""
    manifest, key, store = put(bytes(range(256)) * 40)
    tampered = _corrupt(store, 2, [0, 2, 4])
    with pytest.raises(NotEnoughShares) as info:
        get(manifest, key, tampered, list(range(6)))
    msg = str(info.value)
    assert msg.startswith("segment 2: 3 good shares of 6 given, need 4 (3 bad: ")
    for i in (0, 2, 4):
        assert f"share {i}: blake3 does not match manifest" in msg
    assert isinstance(info.value, IntegrityError)


def test_out_of_range_share_index_is_skipped() -> None:
    manifest, key, store = put(b"r" * 300)
    with pytest.raises(NotEnoughShares, match=r"share index 9 out of range \(n=6\)"):
        decode_file(manifest, key, lambda i: {9: store[i][0], 0: store[i][0], 1: store[i][1],
                                              2: store[i][2]}, io.BytesIO())


@pytest.mark.parametrize(
    ("k", "n", "msg"),
    [
        (5, 4, "k=5, n=4"),
        (0, 4, "k=0, n=4"),
        (-1, 3, "k=-1, n=3"),
        (4, 257, "k=4, n=257"),
    ],
)
def test_erasure_params_refused(k: int, n: int, msg: str) -> None:
    with pytest.raises(erasure.ErasureParamsError, match=f"{msg}: need 1 <= k <= n <= 256"):
        erasure.check_params(k, n)
    with pytest.raises(erasure.ErasureParamsError, match=msg):
        put(b"x" * 10, k=k, n=n)
    assert issubclass(erasure.ErasureParamsError, UserError)


def test_erasure_params_edges_accepted() -> None:
    erasure.check_params(1, 1)
    erasure.check_params(256, 256)
    manifest, key, store = put(b"edge" * 50, k=1, n=1)
    assert get(manifest, key, store, [0]) == b"edge" * 50


def test_decoded_segment_hash_checked() -> None:
    manifest, key, store = put(b"q" * 100, public=True)
    bad = replace(manifest, segments=(replace(manifest.segments[0], segment_hash=bytes(32)),))
    with pytest.raises(IntegrityError, match="segment 0"):
        get(bad, key, store, [0, 1, 2, 3])


async def test_trio_wrappers_round_trip() -> None:
    data = bytes(range(256)) * 100
    store: list[list[bytes]] = []
    with trio.fail_after(30):
        manifest, key = await encode_file_async(
            io.BytesIO(data), lambda i, s: store.append(s), size=len(data), segment_size=SEG
        )
        out = io.BytesIO()
        await decode_file_async(manifest, key, lambda i: dict(enumerate(store[i])), out)
    assert out.getvalue() == data
