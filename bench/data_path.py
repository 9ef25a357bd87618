"""Data-path throughput: put-side (encrypt + zfec + blake3, threaded) and get-side (verify +
decode + decrypt, threaded) beside zfec encode alone and blake3 alone on the same bytes.

Everything streams in bounded memory, as the real client does: the input is a temporary file
written in 4 MiB chunks, put reads it segment by segment and appends every share to a share file
(offsets kept in a small table), get reads k shares per segment back with pread.  The baselines
read the same file one segment at a time (reads not timed) and run single-threaded with the same
k-of-n; the ratio pipeline / zfec-alone says how much of raw erasure-coding speed the full
pipeline keeps (target >= 0.6).  Run: python bench/data_path.py [--mb 256] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator

import blake3

from storaged.data import erasure
from storaged.data.pipeline import (
    DEFAULT_K,
    DEFAULT_N,
    DEFAULT_SEGMENT_SIZE,
    decode_file,
    encode_file,
)

CHUNK = 4 * 2**20


class NullWriter:
    """Counts what get writes (the decoded file is not kept: only its size is checked)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, b: bytes) -> int:
        self.written += len(b)
        return len(b)


def write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def segments(path: str, seg: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(seg):
            yield chunk


def timed_alone(path: str, seg: int, work: Callable[[bytes], object]) -> tuple[float, float]:
    """(wall, CPU) seconds spent in `work(segment)` only (reading the file is not counted)."""
    wall = cpu = 0.0
    for s in segments(path, seg):
        t0, c0 = time.perf_counter(), time.process_time()
        work(s)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


def rss_mib() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256, help="MiB of random data (default 256)")
    ap.add_argument("--dir", default=None, help="where the input and share files go")
    args = ap.parse_args()
    size: int = int(args.mb) * 2**20
    seg = DEFAULT_SEGMENT_SIZE
    k, n = DEFAULT_K, DEFAULT_N
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-data-") as tmp:
        src_path = os.path.join(tmp, "input")
        share_path = os.path.join(tmp, "shares")
        write_random(src_path, size)
        rss_start = rss_mib()

        zfec_s, zfec_cpu = timed_alone(src_path, seg, lambda s: erasure.encode(s, k, n))
        b3_s, _ = timed_alone(src_path, seg, lambda s: blake3.blake3(s).digest())

        # offsets[segment] = (file offset of share 0, share size); shares are stored back to back.
        offsets: list[tuple[int, int]] = []
        with open(share_path, "wb") as out, open(src_path, "rb") as src:

            def sink(index: int, shares: list[bytes]) -> None:
                offsets.append((out.tell(), len(shares[0])))
                for s in shares:
                    out.write(s)

            t0, c0 = time.perf_counter(), time.process_time()
            manifest, key = encode_file(src, sink, size=size)
            out.flush()
            put_s, put_cpu = time.perf_counter() - t0, time.process_time() - c0

        picked = [0, 2, 4, 5]  # two data shares and two parity shares: real decoding work
        sink_out = NullWriter()
        fd = os.open(share_path, os.O_RDONLY)
        try:

            def source(index: int) -> dict[int, bytes]:
                base, length = offsets[index]
                return {j: os.pread(fd, length, base + j * length) for j in picked}

            t0, c0 = time.perf_counter(), time.process_time()
            decode_file(manifest, key, source, sink_out)  # type: ignore[arg-type]
            get_s, get_cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            os.close(fd)
        assert sink_out.written == size, (sink_out.written, size)

    def rate(seconds: float) -> float:
        return size / seconds / 1e6

    print(f"data path on {args.mb} MiB, {k}-of-{n}, {seg // 2**20} MiB segments, "
          f"{os.cpu_count()} CPUs")
    print(f"  zfec encode alone   {rate(zfec_s):8.0f} MB/s  (1 thread)")
    print(f"  blake3 alone        {rate(b3_s):8.0f} MB/s  (1 thread)")
    print(f"  put pipeline        {rate(put_s):8.0f} MB/s  ratio to zfec {zfec_s / put_s:.2f}"
          "  (file -> encrypt, zfec, blake3 -> share file)")
    print(f"  get pipeline        {rate(get_s):8.0f} MB/s  ratio to zfec {zfec_s / get_s:.2f}"
          "  (share file -> verify, zfec decode, decrypt)")
    print("  (target: ratio >= 0.6 on both sides)")
    print(f"  CPU seconds         zfec {zfec_cpu:.2f}  put {put_cpu:.2f}  get {get_cpu:.2f}"
          f"  (load average {os.getloadavg()[0]:.1f}: on a busy host the wall ratios drop)")
    print(f"  peak RSS            {rss_mib():8.0f} MiB (after writing the input: {rss_start:.0f};"
          f" the file is {args.mb} MiB, its shares {args.mb * n // k} MiB, both on disk)")


if __name__ == "__main__":
    main()
