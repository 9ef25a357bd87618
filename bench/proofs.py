"""Proofs benchmark: the C core against its baselines, measured side by side in one run.

Sections (each a function ``bench_<name>(args)``; run all, or some with ``--only``):

* ``merkle``: Merkle tree build throughput in C on 64 MiB and 256 MiB of leaves (one core,
  one thread), the pure-Python twin on a smaller size (MB/s scales linearly with size, so it
  is comparable), and the `blake3` package hashing the same bytes (one thread) as the
  external baseline. Targets: C >= 1.5 GB/s and >= 25x the twin.

Usage: python bench/proofs.py [--only merkle] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import proofs
from proofs import reference
from proofs.hashing import blake3_backend

MIB = 1 << 20


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs, in seconds (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def package_hash(data: bytes) -> bytes:
    """The `blake3` package on one thread: the external baseline."""
    return blake3.blake3(data, max_threads=1).digest()


def bench_merkle(args: argparse.Namespace) -> None:
    native = proofs.native
    if native is None:
        print("merkle: C backend not loaded (STORAGED_PROOFS_BACKEND=python); skipped")
        return
    print(f"merkle (BLAKE3 kernel: {blake3_backend()}; MB = 10^6 bytes)")
    twin_mib = 1 if args.quick else 4
    twin_leaves = os.urandom(twin_mib * MIB)
    twin_s = best_of(lambda: reference.merkle_tree(twin_leaves), 1)
    twin_mbs = twin_mib * MIB / twin_s / 1e6
    print(f"  twin      {twin_mib:4d} MiB  {twin_s * 1e3:9.1f} ms  {twin_mbs:9.1f} MB/s")
    sizes = [16] if args.quick else [64, 256]
    for mib in sizes:
        leaves = os.urandom(mib * MIB)
        repeat = 3 if mib <= 64 else 2
        c_s = best_of(functools.partial(native.merkle_tree, leaves), repeat)
        pkg_s = best_of(functools.partial(package_hash, leaves), repeat)
        out = bytearray(len(leaves) - 32)
        into_s = best_of(functools.partial(native.merkle_tree_into, leaves, out), repeat)
        c_mbs = mib * MIB / c_s / 1e6
        into_mbs = mib * MIB / into_s / 1e6
        pkg_mbs = mib * MIB / pkg_s / 1e6
        print(
            f"  C tree    {mib:4d} MiB  {c_s * 1e3:9.1f} ms  {c_mbs:9.1f} MB/s"
            f"   x{c_mbs / twin_mbs:6.1f} twin (target >= 25)"
            f"   {c_mbs / 1e3:.2f} GB/s (target >= 1.5)"
        )
        print(
            f"  C into    {mib:4d} MiB  {into_s * 1e3:9.1f} ms  {into_mbs:9.1f} MB/s"
            f"   x{into_mbs / twin_mbs:6.1f} twin   (reused output buffer: no page faults)"
        )
        print(
            f"  blake3 pkg{mib:4d} MiB  {pkg_s * 1e3:9.1f} ms  {pkg_mbs:9.1f} MB/s"
            f"   C tree / package = {c_mbs / pkg_mbs:.2f}"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"merkle": bench_merkle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    for name in args.only or list(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
