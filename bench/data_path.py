"""Data-path throughput: put-side (encrypt + zfec + blake3, threaded) and get-side (verify +
decode + decrypt, threaded) beside zfec encode alone and blake3 alone on the same bytes.

Baselines run single-threaded over the same 4 MiB segments with the same k-of-n; the ratio
pipeline / zfec-alone says how much of raw erasure-coding speed the full pipeline keeps
(target >= 0.6).  Run: python bench/data_path.py [--mb 256]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import time

import blake3

from storaged.data import erasure
from storaged.data.pipeline import (
    DEFAULT_K,
    DEFAULT_N,
    DEFAULT_SEGMENT_SIZE,
    decode_file,
    encode_file,
)


class NullWriter(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        return len(b)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256, help="MiB of random data (default 256)")
    mb = ap.parse_args().mb
    seg = DEFAULT_SEGMENT_SIZE
    data = os.urandom(mb * 2**20)
    size = len(data)
    view = memoryview(data)
    segments = [bytes(view[i : i + seg]) for i in range(0, size, seg)]

    t0 = time.perf_counter()
    for s in segments:
        erasure.encode(s, DEFAULT_K, DEFAULT_N)
    zfec_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s in segments:
        blake3.blake3(s).digest()
    b3_s = time.perf_counter() - t0
    del segments

    shares: list[list[bytes]] = []
    t0 = time.perf_counter()
    manifest, key = encode_file(io.BytesIO(data), lambda i, s: shares.append(s), size=size)
    put_s = time.perf_counter() - t0

    picked = [0, 2, 4, 5]  # two data shares and two parity shares: real decoding work
    t0 = time.perf_counter()
    decode_file(manifest, key, lambda i: {j: shares[i][j] for j in picked}, NullWriter())  # type: ignore[arg-type]
    get_s = time.perf_counter() - t0

    def rate(seconds: float) -> float:
        return size / seconds / 1e6

    print(f"data path on {mb} MiB, {DEFAULT_K}-of-{DEFAULT_N}, {seg // 2**20} MiB segments")
    print(f"  zfec encode alone   {rate(zfec_s):8.0f} MB/s  (1 thread)")
    print(f"  blake3 alone        {rate(b3_s):8.0f} MB/s  (1 thread)")
    print(f"  put pipeline        {rate(put_s):8.0f} MB/s  ratio to zfec {zfec_s / put_s:.2f}")
    print(f"  get pipeline        {rate(get_s):8.0f} MB/s  ratio to zfec {zfec_s / get_s:.2f}")
    print("  (target: ratio >= 0.6 on both sides)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS            {peak:8.0f} MiB (input and all shares are held for the get run)")


if __name__ == "__main__":
    main()
