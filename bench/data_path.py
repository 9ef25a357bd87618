"""Data-path throughput: put-side (encrypt + zfec + blake3, threaded) and get-side (verify +
decode + decrypt, threaded) beside zfec encode alone and blake3 alone on the same bytes.

Everything streams in bounded memory, as the real client does: the input is a temporary file
written in 4 MiB chunks, put reads it segment by segment and appends every share to a share file
(offsets kept in a small table), get reads k shares per segment back with pread (two data and
two parity shares, so zfec really decodes).  The pipeline timings include that I/O; the baselines
read the same file one segment at a time with the reads NOT timed, and run single-threaded with
the same k-of-n; "put-nosink" is put again with the shares dropped, to show what writing them
costs.  "zfec encode alone" is the bare ``zfec.Encoder.encode`` on views of each
segment (no copies); the ratio pipeline / zfec-encode-alone says how much of raw erasure-coding
speed the full pipeline keeps (target >= 0.6 on both sides).

The host is shared, so the measurements run in `--rounds` interleaved rounds (zfec, blake3,
put, get, then again) and the ratios are given per round and as median and range: a burst of
someone else's load then hits one round, not one side of the comparison.  `--stages` adds one
instrumented put and get reporting the CPU seconds each stage used (summed over threads).
Run: python bench/data_path.py [--mb 256] [--rounds 3] [--workers N] [--stages] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import blake3
import zfec

from storaged.data import crypto, erasure, pipeline
from storaged.data.manifest import Manifest
from storaged.data.pipeline import (
    DEFAULT_K,
    DEFAULT_N,
    DEFAULT_SEGMENT_SIZE,
    decode_file,
    encode_file,
)

CHUNK = 4 * 2**20
PICKED = [0, 2, 4, 5]  # two data shares and two parity shares: real decoding work


class NullWriter:
    """Counts what get writes (the decoded file is not kept: only its size is checked)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, b: bytes | memoryview) -> int:
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


def timed_alone(path: str, seg: int, work: Callable[[Any], object],
                prepare: Callable[[bytes], Any] = lambda s: s) -> tuple[float, float]:
    """(wall, CPU) seconds spent in `work(prepare(segment))` only (reading the file and
    `prepare` are not counted)."""
    wall = cpu = 0.0
    for s in segments(path, seg):
        arg = prepare(s)
        t0, c0 = time.perf_counter(), time.process_time()
        work(arg)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


def zfec_encode(s: bytes, k: int, n: int) -> object:
    size = erasure.share_size(len(s), k)
    padded = memoryview(s if len(s) == size * k else s + bytes(size * k - len(s)))
    return zfec.Encoder(k, n).encode([padded[i * size : (i + 1) * size] for i in range(k)])


def zfec_decode(shares: list[bytes], k: int, n: int) -> object:
    return zfec.Decoder(k, n).decode([shares[i] for i in PICKED], PICKED)


def rss_mib() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


Offsets = list[tuple[int, int]]
"""offsets[segment] = (file offset of share 0, share size); shares are stored back to back."""


def run_put(src_path: str, share_path: str | None, size: int, workers: int | None,
            io_cpu: list[float] | None = None,
            ) -> tuple[float, float, Manifest, bytes | None, Offsets]:
    """Put the input; shares are appended to `share_path` (or dropped when it is None).
    The sink's CPU seconds are added to ``io_cpu[0]`` when given."""
    offsets: Offsets = []
    with open(share_path or os.devnull, "wb") as out, open(src_path, "rb") as src:

        def sink(index: int, shares: list[bytes]) -> None:
            if share_path is None:
                return
            c0 = time.thread_time()
            offsets.append((out.tell(), len(shares[0])))
            for s in shares:
                out.write(s)
            if io_cpu is not None:
                io_cpu[0] += time.thread_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        manifest, key = encode_file(src, sink, size=size, workers=workers)
        out.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, manifest, key, offsets


def run_get(share_path: str, manifest: Manifest, key: bytes | None, offsets: Offsets,
            workers: int | None, io_cpu: list[float] | None = None) -> tuple[float, float]:
    """Get the file back from the share file (the source's CPU seconds go to ``io_cpu[0]``)."""
    sink_out = NullWriter()
    fd = os.open(share_path, os.O_RDONLY)
    try:

        def source(index: int) -> dict[int, bytes]:
            c0 = time.thread_time()
            base, length = offsets[index]
            shares = {j: os.pread(fd, length, base + j * length) for j in PICKED}
            if io_cpu is not None:
                io_cpu[0] += time.thread_time() - c0
            return shares

        dst: BinaryIO = sink_out  # type: ignore[assignment]
        t0, c0 = time.perf_counter(), time.process_time()
        decode_file(manifest, key, source, dst, workers=workers)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        os.close(fd)
    assert sink_out.written == manifest.size, (sink_out.written, manifest.size)
    return wall, cpu


def stage_profile(src_path: str, share_path: str, size: int, workers: int | None) -> None:
    """One put and one get with the library's stage functions wrapped to sum thread CPU time."""
    spent: defaultdict[str, float] = defaultdict(float)
    lock = threading.Lock()
    originals: list[tuple[object, str, object]] = []

    def wrap(module: object, name: str) -> None:
        fn = getattr(module, name)
        originals.append((module, name, fn))

        def timed(*a: object, **kw: object) -> object:
            c0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                with lock:
                    spent[name] += time.thread_time() - c0

        setattr(module, name, timed)

    for module, name in [(pipeline, "_read_exact"), (crypto, "encrypt_in_place"),
                         (crypto, "hash_segment"), (erasure, "encode_blocks"),
                         (crypto, "hash_share"), (erasure, "decode_into"),
                         (crypto, "decrypt_in_place")]:
        wrap(module, name)
    try:
        io_cpu = [0.0]
        _, put_cpu, manifest, key, offsets = run_put(src_path, share_path, size, workers, io_cpu)
        put_stages = dict(spent, share_file_writes=io_cpu[0])
        spent.clear()
        io_cpu = [0.0]
        _, get_cpu = run_get(share_path, manifest, key, offsets, workers, io_cpu)
        get_stages = dict(spent, share_file_reads=io_cpu[0])
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)
    for side, total, stages in (("put", put_cpu, put_stages), ("get", get_cpu, get_stages)):
        parts = "  ".join(f"{k} {v:.2f}" for k, v in stages.items())
        rest = total - sum(stages.values())
        print(f"  {side} CPU s by stage: {parts}  other {rest:.2f}  (total {total:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256, help="MiB of random data (default 256)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="pipeline threads (default: "
                    "the library's, min(4, CPUs))")
    ap.add_argument("--stages", action="store_true", help="also report CPU per stage")
    ap.add_argument("--dir", default=None, help="where the input and share files go")
    args = ap.parse_args()
    size: int = int(args.mb) * 2**20
    seg = DEFAULT_SEGMENT_SIZE
    k, n = DEFAULT_K, DEFAULT_N
    workers: int | None = args.workers

    def rate(seconds: float) -> float:
        return size / seconds / 1e6

    print(f"data path on {args.mb} MiB, {k}-of-{n}, {seg // 2**20} MiB segments, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print("  round   MB/s: zfec-enc zfec-dec blake3 put-nosink  put    get  |"
          " put/zfec get/zfec | CPU s: zfec-enc put  get")
    put_ratios: list[float] = []
    get_ratios: list[float] = []
    nosink_ratios: list[float] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-data-") as tmp:
        src_path = os.path.join(tmp, "input")
        share_path = os.path.join(tmp, "shares")
        write_random(src_path, size)
        rss_start = rss_mib()
        for r in range(args.rounds):
            zfec_s, zfec_cpu = timed_alone(src_path, seg, lambda s: zfec_encode(s, k, n))
            dec_s, _ = timed_alone(src_path, seg, lambda sh: zfec_decode(sh, k, n),
                                   prepare=lambda s: erasure.encode(s, k, n))
            b3_s, _ = timed_alone(src_path, seg, lambda s: blake3.blake3(s).digest())
            nosink_s, *_ = run_put(src_path, None, size, workers)
            put_s, put_cpu, manifest, key, offsets = run_put(src_path, share_path, size, workers)
            get_s, get_cpu = run_get(share_path, manifest, key, offsets, workers)
            put_ratios.append(zfec_s / put_s)
            get_ratios.append(zfec_s / get_s)
            nosink_ratios.append(zfec_s / nosink_s)
            print(f"  {r + 1:5d}  {rate(zfec_s):14.0f} {rate(dec_s):8.0f} {rate(b3_s):6.0f}"
                  f" {rate(nosink_s):10.0f} {rate(put_s):6.0f} {rate(get_s):6.0f} |"
                  f" {put_ratios[-1]:8.2f} {get_ratios[-1]:8.2f} |"
                  f" {zfec_cpu:14.2f} {put_cpu:4.2f} {get_cpu:4.2f}")
        if args.stages:
            stage_profile(src_path, share_path, size, workers)

    def summary(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} (range {min(xs):.2f}-{max(xs):.2f})"

    print(f"  put / zfec-alone: median {summary(put_ratios)}   get / zfec-alone: median "
          f"{summary(get_ratios)}   (target >= 0.6 on both sides)")
    print(f"  put-nosink / zfec-alone: median {summary(nosink_ratios)}  (shares dropped instead"
          " of written to the share file: the pipeline without the bench's output I/O)")
    print(f"  load average {os.getloadavg()[0]:.1f} at end (2-core shared host: others' jobs "
          "slow both sides, and the pipeline's CPU time too)")
    print(f"  peak RSS {rss_mib():.0f} MiB (after writing the input: {rss_start:.0f};"
          f" the file is {args.mb} MiB, its shares {args.mb * n // k} MiB, both on disk)")


if __name__ == "__main__":
    main()
