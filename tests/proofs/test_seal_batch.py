"""Batch sealing: up to 8 sectors at once equal each sector sealed alone, on every path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proofs
from proofs import reference as ref
from proofs import seal as S
from proofs.errors import ProofError
from proofs.profiles import DEVNET

native = proofs.native
needs_c = pytest.mark.skipif(native is None, reason="C backend not loaded")


def _sectors(lanes: int, size: int, salt: int = 0) -> tuple[list[bytes], list[bytes]]:
    datas = [
        bytes(((i * 31 + j * 7 + salt) ^ (i >> 5)) & 0xFF for j in range(size))
        for i in range(lanes)
    ]
    rids = [ref.replica_id(b"batch", 100 + i + salt, bytes(32), bytes(32)) for i in range(lanes)]
    return datas, rids


@needs_c
@pytest.mark.parametrize("lanes", range(1, 9))
def test_native_batch_equals_single_for_every_batch_size(lanes: int) -> None:
    # The kernel itself (no BATCH_MIN shortcut): every lane count, the 4 KiB sector, 3 layers
    # (layer 1 without expander parents, layers 2-3 with), columns and replicas.
    assert native is not None
    for size, layers in [(4096, 3), (64, 1), (32 * 1024, 2)]:
        n = size // 32
        datas, rids = _sectors(lanes, size, salt=lanes)
        outs = [bytearray(size) for _ in range(lanes)]
        cols = native.sdr_label_batch(rids, n, layers, datas, outs, True)
        assert len(cols) == lanes
        for i in range(lanes):
            one = bytearray(size)
            col, _ = native.sdr_label(rids[i], n, layers, datas[i], one, True, [])
            assert outs[i] == one, (size, lanes, i)
            assert cols[i] == col, (size, lanes, i)


@needs_c
@settings(max_examples=12, deadline=None)
@given(st.integers(1, 8), st.integers(1, 7), st.integers(1, 3), st.data())
def test_native_batch_equals_twin(lanes: int, depth: int, layers: int, data: st.DataObject) -> None:
    # Random sectors and replica ids, the twin's per-sector seal as the specification.
    assert native is not None
    size = 32 << depth
    datas = [data.draw(st.binary(min_size=size, max_size=size)) for _ in range(lanes)]
    rids = [data.draw(st.binary(min_size=32, max_size=32)) for _ in range(lanes)]
    outs = [bytearray(size) for _ in range(lanes)]
    cols = native.sdr_label_batch(rids, size // 32, layers, datas, outs, True)
    twin = ref.seal_batch(datas, rids, layers)
    assert [bytes(o) for o in outs] == [r for r, _ in twin]
    assert [native.merkle_root_of(c) for c in cols] == [c.comm_c for _, c in twin]


@needs_c
@pytest.mark.parametrize("lanes", [1, 2, 3, 8])
def test_seal_batch_equals_seal_and_twin(lanes: int) -> None:
    datas, rids = _sectors(lanes, 4096)
    outs = [bytearray(4096) for _ in range(lanes)]
    comms = S.seal_batch(datas, rids, 2, outs)
    twin = ref.seal_batch(datas, rids, 2)
    assert comms == [c for _, c in twin]
    assert [bytes(o) for o in outs] == [r for r, _ in twin]
    for d, r, o, c in zip(datas, rids, outs, comms, strict=True):
        one = bytearray(len(d))
        assert S.seal(d, r, 2, one) == c and one == o


@needs_c
def test_seal_batch_larger_sectors_and_unseal_batch_round_trip() -> None:
    # 256 KiB x 5 sectors, 3 layers: parents far apart in both layers.
    size, lanes = 256 * 1024, 5
    datas = [os.urandom(size) for _ in range(lanes)]
    rids = [os.urandom(32) for _ in range(lanes)]
    outs = [bytearray(size) for _ in range(lanes)]
    comms = S.seal_batch(datas, rids, 3, outs)
    for d, r, o, c in zip(datas, rids, outs, comms, strict=True):
        one = bytearray(size)
        assert S.seal(d, r, 3, one) == c and one == o
    backs = [bytearray(size) for _ in range(lanes)]
    S.unseal_batch(outs, rids, 3, backs)
    assert [bytes(b) for b in backs] == datas
    S.unseal_batch(outs, rids, 3, outs)  # in place: out[i] is in[i]
    assert [bytes(o) for o in outs] == datas


@needs_c
def test_seal_batch_matches_golden_vectors() -> None:
    path = Path(__file__).parent.parent / "vectors" / "proofs_seal.json"
    vectors = json.loads(path.read_text())
    for name, size, layers in [("4k-2", 4096, 2), ("devnet", DEVNET.sector_size, DEVNET.layers)]:
        data = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(size))
        rid = ref.replica_id(b"golden-provider", 42, S.comm_d(data), bytes(range(32)))
        others, other_rids = _sectors(3, size)
        outs = [bytearray(size) for _ in range(4)]
        c = S.seal_batch([*others, data], [*other_rids, rid], layers, outs)[3]
        got = {
            "replica_id": rid.hex(),
            "comm_d": c.comm_d.hex(),
            "comm_c": c.comm_c.hex(),
            "comm_r_last": c.comm_r_last.hex(),
            "comm_r": c.comm_r.hex(),
        }
        assert got == vectors[name]


def test_bad_batches_raise_proof_error() -> None:
    d, r = bytes(4096), bytes(32)
    cases: list[tuple[list[bytes], list[bytes], str]] = [
        ([], [], "1..8 sectors"),
        ([d] * 9, [r] * 9, "1..8 sectors"),
        ([d, bytes(8192)], [r, r], "same size"),
        ([d, d], [r], "replica ids"),
    ]
    for datas, rids, match in cases:
        with pytest.raises(ProofError, match=match):
            ref.seal_batch(datas, rids, 2)
        if native is not None:
            outs = [bytearray(len(x)) for x in datas]
            with pytest.raises(ProofError, match=match):
                S.seal_batch(datas, rids, 2, outs)
    if native is not None:
        with pytest.raises(ProofError, match="output buffers"):
            S.seal_batch([d, d, d], [r, r, r], 2, [bytearray(4096)] * 2)
        with pytest.raises(ProofError, match="sector size"):
            S.seal_batch([bytes(96)] * 3, [r] * 3, 2, [bytearray(96)] * 3)


@needs_c
def test_native_batch_bad_arguments() -> None:
    assert native is not None
    n, outs = 128, [bytearray(4096) for _ in range(3)]
    with pytest.raises(ProofError, match=r"1\.\.8 sectors"):
        native.sdr_label_batch([], n, 2, None, [], False)
    with pytest.raises(ProofError, match=r"1\.\.8 sectors"):
        native.sdr_label_batch([bytes(32)] * 9, n, 2, None, [bytearray(4096)] * 9, False)
    with pytest.raises(ProofError, match="replica id 1 must be 32 bytes"):
        native.sdr_label_batch([bytes(32), bytes(31), bytes(32)], n, 2, None, outs, False)
    with pytest.raises(ProofError, match="output buffer 2 is 4095 bytes"):
        native.sdr_label_batch([bytes(32)] * 3, n, 2, None, [*outs[:2], bytearray(4095)], False)
    with pytest.raises(ProofError, match="input buffer 0"):
        native.sdr_label_batch([bytes(32)] * 3, n, 2, [bytes(64)] * 3, outs, False)
    with pytest.raises(ProofError, match="2 output buffers"):
        native.sdr_label_batch([bytes(32)] * 3, n, 2, None, outs[:2], False)
    with pytest.raises(ProofError, match="layer count"):
        native.sdr_label_batch([bytes(32)] * 3, n, 0, None, outs, False)
    with pytest.raises(ProofError, match="power of two"):
        native.sdr_label_batch([bytes(32)] * 3, 127, 2, None, outs, False)
    with pytest.raises(BufferError):
        native.sdr_label_batch([bytes(32)] * 3, n, 2, None, [bytes(4096)] * 3, False)


_BATCH_SCRIPT = """
import hashlib, sys, proofs
from proofs import hashing
n, lanes = int(sys.argv[1]), int(sys.argv[2])
rids = [bytes([i + 1]) * 32 for i in range(lanes)]
datas = [bytes((i * 37 + j) & 0xFF for j in range(32 * n)) for i in range(lanes)]
outs = [bytearray(32 * n) for _ in range(lanes)]
cols = proofs.native.sdr_label_batch(rids, n, 3, datas, outs, True)
one = []
for i in range(lanes):
    o = bytearray(32 * n)
    c, _ = proofs.native.sdr_label(rids[i], n, 3, datas[i], o, True, [])
    one.append(bytes(o) + c)
batch = [bytes(o) + c for o, c in zip(outs, cols)]
assert batch == one, "batch differs from single"
print(hashing.blake3_backend(), hashlib.sha256(b"".join(batch)).hexdigest())
"""


@needs_c
def test_batch_same_on_portable_and_simd_paths() -> None:
    # STORAGED_BLAKE3_PORTABLE=1 runs the portable batch path (lane by lane through the
    # ordinary keyed hash); without it, this AVX2 machine runs the 8-way kernel.
    for n, lanes in [(2, 1), (128, 3), (1 << 12, 8)]:
        runs = {}
        for portable in ("0", "1"):
            env = dict(os.environ, STORAGED_BLAKE3_PORTABLE=portable)
            res = subprocess.run(
                [sys.executable, "-c", _BATCH_SCRIPT, str(n), str(lanes)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            backend, digest = res.stdout.split()
            assert (backend == "portable") == (portable == "1")
            runs[portable] = digest
        assert runs["0"] == runs["1"], (n, lanes)


@needs_c
def test_two_batch_seals_on_two_threads_run_at_the_same_time() -> None:
    # As test_two_seals_on_two_threads_run_at_the_same_time: with the GIL released the two
    # C calls are in flight together for most of their length; with it held they could not
    # overlap at all.
    assert native is not None
    n, lanes = 1 << 13, 8
    spans: list[tuple[float, float]] = [(0.0, 0.0), (0.0, 0.0)]
    barrier = threading.Barrier(2)

    def label(i: int) -> None:
        outs = [bytearray(32 * n) for _ in range(lanes)]
        rids = [bytes([i, j]) * 16 for j in range(lanes)]
        barrier.wait(timeout=10)
        t = time.perf_counter()
        native.sdr_label_batch(rids, n, 2, None, outs, True)
        spans[i] = (t, time.perf_counter())

    ts = [threading.Thread(target=label, args=(i,)) for i in range(2)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in ts)
    overlap = min(e for _, e in spans) - max(s for s, _ in spans)
    shortest = min(e - s for s, e in spans)
    assert overlap >= 0.5 * shortest, f"calls overlapped {overlap:.3f} s of {shortest:.3f} s"


_RSS_SCRIPT = """
import resource, sys, proofs
n, lanes = int(sys.argv[1]), int(sys.argv[2])
outs = [bytearray(b"\\x02") * (32 * n) for _ in range(lanes)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cols = proofs.native.sdr_label_batch([bytes(32)] * lanes, n, 2, None, outs, True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@needs_c
def test_batch_peak_memory_is_two_batch_layers_and_the_columns() -> None:
    # Two lane-interleaved layers of 8 x 32 N bytes, plus the caller's column digests
    # (lanes x 32 N); nothing else grows with the sector or the layer count. 4 MiB sectors:
    # smaller ones hide under the interpreter's own earlier peak.
    n, lanes = 1 << 17, 8
    res = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(n), str(lanes)],
        capture_output=True,
        text=True,
        check=True,
    )
    growth = int(res.stdout) * 1024
    expected = 2 * 8 * 32 * n + lanes * 32 * n
    assert growth < 1.1 * expected, (growth, expected)  # a third batch layer: 1.33x


def test_porep_verify_rejects_absurd_challenge_counts() -> None:
    # The proof length check (76 + k * per) is bounded before it can wrap; on 64-bit hosts an
    # absurd k just means a length mismatch, i.e. an invalid proof, never an exception.
    if native is None:
        pytest.skip("C backend not loaded")
    chals = [1] * 100_000
    assert native.porep_verify(bytes(32), bytes(32), bytes(32), 1 << 60, 255, chals, b"") is False

