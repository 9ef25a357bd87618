"""Streaming keeps memory bounded: 64 MiB through put and get with a few segments in flight."""

from __future__ import annotations

import tracemalloc
from typing import BinaryIO

from storaged.data.pipeline import decode_file, encode_file

SEG = 1024 * 1024
TOTAL = 64 * SEG
WINDOW = 3
BOUND = (4 * WINDOW + 4) * SEG


class PatternReader:
    """A 64 MiB file that never exists in memory whole (deterministic bytes, made on read)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = bytes(range(256)) * (SEG // 256)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        if n == SEG:
            return self.block  # no scratch copy for whole segments
        return (self.block * (n // SEG + 1))[:n]


class CountingWriter:
    def __init__(self) -> None:
        self.written = 0
        self.ok = True
        self.expected = bytes(range(256)) * (SEG // 256)

    def write(self, data: bytes) -> int:
        self.ok &= data == self.expected[: len(data)]
        self.written += len(data)
        return len(data)


def test_put_and_get_64_mib_in_bounded_memory() -> None:
    kept: list[list[bytes]] = []  # keep only segment 0's shares; reuse them (same plaintext)

    def sink(index: int, shares: list[bytes]) -> None:
        if index == 0:
            kept.append(shares)

    tracemalloc.start()
    try:
        src: BinaryIO = PatternReader(TOTAL)  # type: ignore[assignment]
        manifest, key = encode_file(
            src, sink, size=TOTAL, segment_size=SEG, workers=2, window=WINDOW
        )
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert manifest.size == TOTAL and len(manifest.segments) == 64
    finally:
        tracemalloc.stop()
    # Bound: each of the WINDOW segments in flight holds at most plaintext + ciphertext + 1.5x
    # in shares (+ the one being handed to the sink), plus the kept shares: (4 * WINDOW + 4)
    # segments = 16 MiB, a quarter of the file, which any whole-file design exceeds.
    assert put_peak < BOUND, put_peak

    # Get side: public mode makes all 64 segments identical, so one segment's shares serve all.
    public: list[list[bytes]] = []
    src2: BinaryIO = PatternReader(TOTAL)  # type: ignore[assignment]
    manifest, key = encode_file(
        src2, lambda i, s: public.append(s) if i == 0 else None, size=TOTAL, segment_size=SEG,
        public=True, workers=2, window=WINDOW,
    )  # fmt: skip
    assert len({e.segment_hash for e in manifest.segments}) == 1  # all segments identical
    out = CountingWriter()
    tracemalloc.start()
    try:
        dst: BinaryIO = out  # type: ignore[assignment]
        decode_file(
            manifest, key, lambda i: dict(enumerate(public[0])), dst, workers=2, window=WINDOW
        )
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.written == TOTAL and out.ok
    assert get_peak < BOUND, get_peak
