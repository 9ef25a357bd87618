"""Proofs benchmark: the C core against its baselines, measured side by side in one run.

Sections (each a function ``bench_<name>(args)``; run all, or some with ``--only``):

* ``merkle``: Merkle tree build throughput in C on 64 MiB and 256 MiB of leaves (one core,
  one thread), the pure-Python twin on a smaller size (MB/s scales linearly with size, so it
  is comparable), and the `blake3` package hashing the same bytes (one thread) as the
  external baseline. Targets: C >= 1.5 GB/s and >= 25x the twin.

* ``seal``: C labels/s per core (CPU time) vs the twin, the labelling time it implies for each
  profile, two labellings on two threads vs back to back. Target >= 1.3 M labels/s per core.
* ``labels``: only the C labelling rate at sector sizes (``--sizes``, default 64 and 256 MiB;
  ``--layers``, default 4; ``--runs``, default 3), CPU time of one thread, like an unseal
  without the XOR and the roots: the number the >= 1.3 M labels/s target is judged on once the
  layers no longer fit in the caches. Side by side, run for run: the same for a batch seal of
  ``--batch`` sectors (default 8, one per AVX2 lane) on the same one thread, counting the
  labels of every lane (``seal_batch``'s rate per core), and its ratio to one sector.
* ``sealbatch``: whole seals, columns and Merkle roots included: ``seal_batch`` of ``--batch``
  sectors against ``seal`` of one, the same size (64 MiB; 16 MiB with --quick), 4 layers, CPU
  time of one thread, interleaved runs (``--runs``).
* ``porep``: per sector (devnet and, without --quick, 64 MiB and 256 MiB at the default
  profile's layers and challenge counts): seal and unseal seconds, PoRep and PoSt proof bytes,
  prove and verify ms (PoSt also batched). Targets: PoRep verify <= 100 ms, PoSt verify <= 1 ms.

Usage: python bench/proofs.py [--only merkle|seal|labels|sealbatch|porep] [--quick]
       python bench/proofs.py --only labels [--sizes 64,256] [--layers 4] [--runs 3] [--batch 8]
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


def best_of(
    fn: Callable[[], object], repeat: int, clock: Callable[[], float] = time.process_time
) -> float:
    """The fastest of `repeat` runs, in seconds of this process's CPU time by default.

    Other engineers' jobs share this machine's 2 cores (load averages of 2-5 were seen while
    benchmarking), which stretches wall time by up to 3x; CPU time of a one-thread call is
    what one core delivers. Pass ``clock=time.perf_counter`` for wall time (thread overlap).
    """
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def package_hash(data: bytes) -> bytes:
    """The `blake3` package on one thread: the external baseline."""
    return blake3.blake3(data, max_threads=1).digest()


def bench_merkle(args: argparse.Namespace) -> None:
    native = proofs.native
    if native is None:
        print("merkle: C backend not loaded (STORAGED_PROOFS_BACKEND=python); skipped")
        return
    print(f"merkle (BLAKE3 kernel: {blake3_backend()}; MB = 10^6 bytes; CPU time, one thread)")
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
        root_s = best_of(functools.partial(native.merkle_root_of, leaves), repeat)
        c_mbs = mib * MIB / c_s / 1e6
        root_mbs = mib * MIB / root_s / 1e6
        into_mbs = mib * MIB / into_s / 1e6
        pkg_mbs = mib * MIB / pkg_s / 1e6
        print(
            f"  C tree    {mib:4d} MiB  {c_s * 1e3:9.1f} ms  {c_mbs:9.1f} MB/s"
            f"   x{c_mbs / twin_mbs:6.1f} twin   (fresh bytes result: first-touch page faults)"
        )
        print(
            f"  C into    {mib:4d} MiB  {into_s * 1e3:9.1f} ms  {into_mbs:9.1f} MB/s"
            f"   x{into_mbs / twin_mbs:6.1f} twin (target >= 25)   {into_mbs / 1e3:.2f} GB/s "
            f"(target >= 1.5; reused output buffer)"
        )
        print(
            f"  C root    {mib:4d} MiB  {root_s * 1e3:9.1f} ms  {root_mbs:9.1f} MB/s"
            f"   x{root_mbs / twin_mbs:6.1f} twin   (root only, tree not stored: what seal uses)"
        )
        print(
            f"  blake3 pkg{mib:4d} MiB  {pkg_s * 1e3:9.1f} ms  {pkg_mbs:9.1f} MB/s"
            f"   C tree / package = {c_mbs / pkg_mbs:.2f}"
        )


# --- sealing, PoRep and PoSt (SDR) ---------------------------------------------------------


def _labels_per_s(n: int, layers: int) -> float:
    """C labelling rate on one thread, by CPU time (robust to other processes)."""
    assert proofs.native is not None
    out = bytearray(32 * n)
    t = time.process_time()
    proofs.native.sdr_label(bytes(32), n, layers, None, out, False, [])
    return n * layers / (time.process_time() - t)


def _batch_labels_per_s(n: int, layers: int, lanes: int) -> tuple[float, float]:
    """C batch labelling rate on one thread, all lanes' labels counted: (per CPU s, per wall s).

    The call runs on this one thread, so its CPU time is the one core's work; the wall rate
    also counts the time other processes took that core away.
    """
    assert proofs.native is not None
    outs = [bytearray(32 * n) for _ in range(lanes)]
    rids = [bytes([i + 1]) * 32 for i in range(lanes)]
    w, t = time.perf_counter(), time.process_time()
    proofs.native.sdr_label_batch(rids, n, layers, None, outs, False)
    cpu, wall = time.process_time() - t, time.perf_counter() - w
    return lanes * n * layers / cpu, lanes * n * layers / wall


def bench_seal(args: argparse.Namespace) -> None:
    """Labels/s per core (C vs the twin), estimated seal time per profile, two threads vs one."""
    from proofs.profiles import PROFILES

    rates = [_labels_per_s(1 << 16, 2) for _ in range(3)]
    c_rate = max(rates)
    n_twin = 1 << 9
    t = time.process_time()
    reference.sealing.label_layers(bytes(32), n_twin, 2)
    twin_rate = 2 * n_twin / (time.process_time() - t)
    print(
        f"seal: labels/s per core (CPU time, best of 3; runs "
        f"{', '.join(f'{r / 1e6:.2f}' for r in rates)} M/s): C {c_rate / 1e6:.2f} M/s, "
        f"twin {twin_rate / 1e3:.1f} k/s, C/twin {c_rate / twin_rate:.0f}x; target >= 1.3 M/s "
        f"({c_rate / 1.3e6:.2f} of target; Filecoin SDR ~1.07 M/s per core)"
    )
    lanes = args.batch
    batch = [_batch_labels_per_s(1 << 16, 2, lanes)[0] for _ in range(3)]
    print(
        f"seal: batch of {lanes} sectors on one core (2 MiB each; every lane's labels per CPU "
        f"second; runs {', '.join(f'{r / 1e6:.2f}' for r in batch)} M/s): "
        f"{max(batch) / 1e6:.2f} M/s, x{max(batch) / c_rate:.2f} one sector"
    )
    for p in PROFILES.values():
        est = p.nodes * p.layers / c_rate
        print(
            f"seal: profile {p.name} ({p.sector_size / MIB:.0f} MiB, {p.layers} layers): "
            f"labelling alone ~{est:.2f} s per seal or unseal (estimated from the rate above)"
        )
    n = 1 << 16
    assert proofs.native is not None
    native = proofs.native

    def label() -> None:
        native.sdr_label(bytes(32), n, 2, None, bytearray(32 * n), False, [])

    def two() -> None:
        import threading

        ts = [threading.Thread(target=label) for _ in range(2)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()

    def seq() -> None:
        label()
        label()

    ratio = best_of(two, 3, time.perf_counter) / best_of(seq, 3, time.perf_counter)
    print(
        f"seal: two labellings on two threads take {2 * ratio:.2f}x the time of one "
        f"({ratio:.2f}x of running them back to back; 0.5 = perfect overlap on 2 free cores; "
        f"{os.cpu_count()} cores shared with other processes, load {os.getloadavg()[0]:.1f})"
    )


def bench_labels(args: argparse.Namespace) -> None:
    """C labels/s per core at sector sizes (layers beyond the caches), every run printed."""
    if proofs.native is None:
        print("labels: C backend not loaded (STORAGED_PROOFS_BACKEND=python); skipped")
        return
    sizes = (
        [int(x) for x in args.sizes.split(",")]
        if args.sizes
        else ([16] if args.quick else [64, 256])
    )
    lanes = args.batch
    for mib in sizes:
        n = mib * MIB // 32
        rates: list[float] = []
        batch: list[tuple[float, float]] = []
        for _ in range(args.runs):  # interleaved, so both see the same host conditions
            rates.append(_labels_per_s(n, args.layers))
            batch.append(_batch_labels_per_s(n, args.layers, lanes))
        cpu, wall = [b[0] for b in batch], [b[1] for b in batch]
        print(
            f"labels: {mib} MiB, {args.layers} layers, one sector: "
            f"{', '.join(f'{r / 1e6:.3f}' for r in rates)} M labels/s per core "
            f"(CPU time; best {max(rates) / 1e6:.3f}, {max(rates) / 1.3e6:.2f} of the 1.3 M/s "
            f"target; load {os.getloadavg()[0]:.1f})"
        )
        print(
            f"labels: {mib} MiB, {args.layers} layers, batch of {lanes} sectors on one core: "
            f"{', '.join(f'{r / 1e6:.3f}' for r in cpu)} M labels/s per core (every lane's "
            f"labels per CPU second of the one thread; per wall second "
            f"{', '.join(f'{r / 1e6:.3f}' for r in wall)}); best {max(cpu) / 1e6:.3f} = "
            f"x{max(cpu) / max(rates):.2f} one sector, {max(cpu) / 1.3e6:.2f} of the 1.3 M/s "
            f"target (memory: 2 x {lanes * mib} MiB interleaved layers)"
        )


def bench_sealbatch(args: argparse.Namespace) -> None:
    """Whole seals (columns and roots included): seal_batch of --batch sectors vs one seal."""
    from proofs import seal as S

    if proofs.native is None:
        print("sealbatch: C backend not loaded (STORAGED_PROOFS_BACKEND=python); skipped")
        return
    mib, layers, lanes = (16 if args.quick else 64), 4, args.batch
    size, n = mib * MIB, mib * MIB // 32
    datas = [os.urandom(size) for _ in range(lanes)]
    rids = [os.urandom(32) for _ in range(lanes)]
    outs = [bytearray(size) for _ in range(lanes)]
    one: list[float] = []
    many: list[float] = []
    for _ in range(args.runs):
        t = time.process_time()
        alone = S.seal(datas[0], rids[0], layers, outs[0])
        one.append(n * layers / (time.process_time() - t))
        t = time.process_time()
        comms = S.seal_batch(datas, rids, layers, outs)
        many.append(lanes * n * layers / (time.process_time() - t))
        assert comms[0] == alone
    print(
        f"sealbatch: {mib} MiB, {layers} layers, whole seal (columns, 3 roots per sector): one "
        f"sector {', '.join(f'{r / 1e6:.2f}' for r in one)} M labels/s; batch of {lanes} "
        f"{', '.join(f'{r / 1e6:.2f}' for r in many)} M labels/s per core (CPU time, one "
        f"thread); best x{max(many) / max(one):.2f}"
    )


def bench_porep(args: argparse.Namespace) -> None:
    """Per sector: seal and unseal seconds, PoRep and PoSt proof bytes, prove and verify ms."""
    from proofs import seal as S
    from proofs.profiles import DEFAULT, DEVNET

    cases = [("devnet", DEVNET.sector_size, DEVNET.layers, DEVNET)]
    if not args.quick:
        cases += [("64 MiB", 64 * MIB, DEFAULT.layers, DEFAULT)]
        cases += [("256 MiB", 256 * MIB, DEFAULT.layers, DEFAULT)]
    seed = b"\x01" * 32
    for name, size, layers, prof in cases:
        k_r, k_p = prof.porep_challenges, prof.post_challenges
        n = size // 32
        data = os.urandom(size)
        rid = reference.replica_id(b"bench", 1, S.comm_d(data), bytes(32))
        rep, back = bytearray(size), bytearray(size)
        clock = time.process_time  # one-thread C calls: CPU time is robust to the shared cores
        w0, t0 = time.perf_counter(), clock()
        c = S.seal(data, rid, layers, rep)
        t1 = clock()
        S.unseal(rep, rid, layers, back)
        t2, w2 = clock(), time.perf_counter()
        assert back == data
        del back
        print(
            f"sector {name} ({layers} layers, {prof.name} challenge counts): "
            f"seal {t1 - t0:.2f} s (with 3 roots), unseal {t2 - t1:.2f} s CPU "
            f"(= {n * layers / (t2 - t1) / 1e6:.2f} M labels/s with layers beyond the caches; "
            f"both took {w2 - w0:.2f} s wall)"
        )
        t0 = clock()
        pf = S.prove_porep(data, rep, rid, layers, 1, seed, k_r)
        t1 = clock()
        args_r = (c.comm_d, c.comm_r, rid, n, layers, 1, seed, k_r, pf)
        vt = best_of(functools.partial(S.verify_porep, *args_r), 5)
        assert S.verify_porep(*args_r)
        print(
            f"  porep: {k_r} challenges, proof {len(pf)} B, prove {(t1 - t0) * 1e3:.0f} ms, "
            f"verify {vt * 1e3:.1f} ms (target <= 100 ms at default)"
        )
        t0 = clock()
        post = S.prove_post(rep, c.comm_c, S.post_challenges(seed, 1, k_p, n))
        t1 = clock()
        vt = best_of(functools.partial(S.verify_post, c.comm_r, 1, seed, k_p, n, post), 20)
        items = [(c.comm_r, 1, post)] * 1000
        bt = best_of(functools.partial(S.verify_post_batch, items, seed, k_p, n), 3) / len(items)
        tw = best_of(functools.partial(reference.verify_post, c.comm_r, 1, seed, k_p, n, post), 3)
        assert S.verify_post(c.comm_r, 1, seed, k_p, n, post)
        print(
            f"  post: {k_p} challenges, proof {len(post)} B, prove {(t1 - t0) * 1e3:.0f} ms, "
            f"verify {vt * 1e3:.3f} ms per sector, batch of 1000 {bt * 1e3:.3f} ms per sector "
            f"(C; twin {tw * 1e3:.2f} ms; target <= 1 ms)"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "merkle": bench_merkle,
    "seal": bench_seal,
    "labels": bench_labels,
    "sealbatch": bench_sealbatch,
    "porep": bench_porep,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--sizes", help="labels: comma-separated sector sizes in MiB")
    parser.add_argument("--layers", type=int, default=4, help="labels: layers per run")
    parser.add_argument("--runs", type=int, default=3, help="labels, sealbatch: runs per size")
    parser.add_argument(
        "--batch", type=int, default=8, help="sectors per batch seal (1..8)"
    )
    args = parser.parse_args()
    for name in args.only or list(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
