"""The C sealing path equals the twin, releases the GIL, and rejects bad input clearly."""

from __future__ import annotations

import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proofs
from proofs import reference as ref
from proofs import seal as S
from proofs.errors import ProofError
from proofs.profiles import DEVNET

pytestmark = pytest.mark.skipif(proofs.native is None, reason="C backend not loaded")
native = proofs.native


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.data())
def test_parents_equal_twin(depth: int, data: st.DataObject) -> None:
    n = 1 << depth
    v = data.draw(st.integers(0, n - 1))
    assert native is not None
    assert native.drg_parents(n, v) == ref.drg_parents(n, v)
    assert native.expander_parents(n, v) == ref.expander_parents(n, v)


@settings(max_examples=10, deadline=None)
@given(
    st.integers(1, 6).flatmap(lambda d: st.binary(min_size=32 << d, max_size=32 << d)),
    st.integers(1, 3),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
)
def test_seal_and_proofs_equal_twin(data: bytes, layers: int, seed: bytes, sector: int) -> None:
    n = len(data) // 32
    rid = ref.replica_id(b"prov", sector, ref.comm_d(data), seed)
    rep, comms = ref.seal(data, rid, layers)
    out = bytearray(len(data))
    assert S.seal(data, rid, layers, out) == comms
    assert bytes(out) == rep
    assert S.comm_d(data) == comms.comm_d
    pf = S.prove_porep(data, out, rid, layers, sector, seed, 3)
    assert pf == ref.prove_porep(data, rep, rid, layers, sector, seed, 3)
    assert S.verify_porep(comms.comm_d, comms.comm_r, rid, n, layers, sector, seed, 3, pf)
    ch = ref.post_challenges(seed, sector, 4, n)
    assert S.prove_post(out, comms.comm_c, ch) == ref.prove_post(rep, comms.comm_c, ch)


def test_devnet_seal_unseal_round_trip_and_proofs() -> None:
    data = os.urandom(DEVNET.sector_size)
    rid = ref.replica_id(b"prov", 3, S.comm_d(data), bytes(32))
    replica, comms = S.seal_profile(DEVNET, data, rid)
    back = bytearray(len(data))
    S.unseal(replica, rid, DEVNET.layers, back)
    assert back == data
    seed, n, k = b"\x07" * 32, DEVNET.nodes, DEVNET.porep_challenges
    pf = S.prove_porep(data, replica, rid, DEVNET.layers, 3, seed, k)
    assert S.verify_porep(comms.comm_d, comms.comm_r, rid, n, DEVNET.layers, 3, seed, k, pf)
    rid_b = ref.replica_id(b"prov-B", 3, comms.comm_d, bytes(32))
    assert not S.verify_porep(comms.comm_d, comms.comm_r, rid_b, n, DEVNET.layers, 3, seed, k, pf)
    ch = S.post_challenges(seed, 3, DEVNET.post_challenges, n)
    post = S.prove_post(replica, comms.comm_c, ch)
    assert S.verify_post(comms.comm_r, 3, seed, DEVNET.post_challenges, n, post)
    assert not S.verify_post(comms.comm_r, 4, seed, DEVNET.post_challenges, n, post)


def test_bad_input_raises_proof_error() -> None:
    assert native is not None
    with pytest.raises(ProofError, match="replica id must be 32 bytes"):
        native.sdr_label(b"x", 4, 2, None, bytearray(128), True, [])
    with pytest.raises(ProofError, match="power of two"):
        native.sdr_label(bytes(32), 3, 2, None, bytearray(96), True, [])
    with pytest.raises(ProofError, match="output buffer"):
        native.sdr_label(bytes(32), 4, 2, None, bytearray(64), True, [])
    with pytest.raises(ProofError, match="layer count"):
        native.sdr_label(bytes(32), 4, 0, None, bytearray(128), True, [])
    with pytest.raises(ProofError, match="out of range"):
        native.sdr_label(bytes(32), 4, 1, None, bytearray(128), True, [4])
    with pytest.raises(ProofError, match="out of range"):
        native.drg_parents(8, 8)
    with pytest.raises(ProofError, match="sector size"):
        S.seal(bytes(96), bytes(32), 2, bytearray(96))
    with pytest.raises(TypeError):
        S.seal(bytes(128), bytes(32), 2, bytes(128))  # type: ignore[arg-type]


def test_gil_released_during_labelling() -> None:
    # While one thread labels a sector in C, this thread keeps running Python. (Wall-clock
    # "two seals take the time of one" is measured in bench/proofs.py: on this shared 2-core
    # machine it is too noisy for a test.) If the GIL were held, the loop below could only run
    # after the call returned, when the thread is no longer alive.
    assert native is not None
    n = 1 << 16
    started = threading.Event()

    def work() -> None:
        started.set()
        native.sdr_label(bytes(32), n, 2, None, bytearray(32 * n), False, [])

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    time.sleep(0.005)
    spins = 0
    while t.is_alive():
        spins += 1
    t.join()
    assert spins > 1000


def test_two_seals_on_two_threads_run_at_the_same_time() -> None:
    # A wall-clock check that holds on a shared machine: each thread stamps the start and end
    # of its C labelling; with the GIL released the two calls are in flight together for
    # nearly all of their length, with it held they would not overlap at all (the second
    # thread could not even take its start stamp). A speed-up check ("two seals in the time
    # of one") cannot be a test here: other engineers' processes share the 2 cores, and the
    # measured two-thread/sequential ratio ranged 0.83-0.97 under that load (bench/proofs.py
    # prints it).
    assert native is not None
    n = 1 << 15
    spans: list[tuple[float, float]] = [(0.0, 0.0), (0.0, 0.0)]
    barrier = threading.Barrier(2)

    def label(i: int) -> None:
        buf = bytearray(32 * n)
        barrier.wait(timeout=10)
        t = time.perf_counter()
        native.sdr_label(bytes(32), n, 2, None, buf, False, [])
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


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_c_porep_verify_equals_twin_on_tampered_proofs(data: st.DataObject) -> None:
    blob = bytes((i * 11) & 0xFF for i in range(32 * 64))
    rid = ref.replica_id(b"prov", 9, ref.comm_d(blob), bytes(32))
    out = bytearray(len(blob))
    c = S.seal(blob, rid, 2, out)
    seed = b"\x03" * 32
    proof = bytearray(S.prove_porep(blob, out, rid, 2, 9, seed, 2))
    if data.draw(st.booleans()):
        bit = data.draw(st.integers(0, 8 * len(proof) - 1))
        proof[bit // 8] ^= 1 << (bit % 8)
    args = (c.comm_d, c.comm_r, rid, 64, 2, 9, seed, 2, bytes(proof))
    assert S.verify_porep(*args) == ref.verify_porep(*args)
    assert not S.verify_porep(c.comm_d, c.comm_r, rid, 64, 2, 10, seed, 2, bytes(proof))
    assert not S.verify_porep(c.comm_d, c.comm_r, rid, 64, 2, 9, seed, 2, bytes(proof[:-1]))


def test_c_porep_verify_bad_parameters() -> None:
    with pytest.raises(ProofError, match="32 bytes"):
        S.verify_porep(bytes(31), bytes(32), bytes(32), 64, 2, 1, bytes(32), 1, b"")
    with pytest.raises(ProofError, match="power of two"):
        S.verify_porep(bytes(32), bytes(32), bytes(32), 63, 2, 1, bytes(32), 1, b"")


def test_c_seal_matches_golden_vectors() -> None:
    # Sizes above the C core's 64-node batches (the twin comparisons above stay below them).
    import json
    from pathlib import Path

    vectors = json.loads(
        (Path(__file__).parent.parent / "vectors" / "proofs_seal.json").read_text()
    )
    for name, size, layers in [("4k-2", 4096, 2), ("devnet", DEVNET.sector_size, DEVNET.layers)]:
        data = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(size))
        rid = ref.replica_id(b"golden-provider", 42, S.comm_d(data), bytes(range(32)))
        c = S.seal(data, rid, layers, bytearray(size))
        got = {
            "replica_id": rid.hex(),
            "comm_d": c.comm_d.hex(),
            "comm_c": c.comm_c.hex(),
            "comm_r_last": c.comm_r_last.hex(),
            "comm_r": c.comm_r.hex(),
        }
        assert got == vectors[name]


def test_c_parents_and_seal_equal_twin_across_batches() -> None:
    data = bytes((i * 5) & 0xFF for i in range(32 * 256))
    rid = ref.replica_id(b"p", 1, ref.comm_d(data), bytes(32))
    rep, comms = ref.seal(data, rid, 2)
    out = bytearray(len(data))
    assert S.seal(data, rid, 2, out) == comms and bytes(out) == rep


_RSS_SCRIPT = """
import resource, sys, proofs
n, layers = int(sys.argv[1]), int(sys.argv[2])
data = bytearray(b"\\x01") * (32 * n)
out = bytearray(b"\\x02") * (32 * n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cols, _ = proofs.native.sdr_label(bytes(32), n, layers, data, out, True, [])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_c_seal_peak_memory_is_three_layers_whatever_l() -> None:
    # Peak RSS growth during labelling = previous + current layer + column states (3 x 32 N),
    # the same for 2 layers and 6: layers are never all held.
    import subprocess
    import sys

    n = 1 << 18  # 8 MiB sector
    growth = {}
    for layers in (2, 6):
        res = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(n), str(layers)],
            capture_output=True,
            text=True,
            check=True,
        )
        growth[layers] = int(res.stdout) * 1024  # ru_maxrss is in KiB on Linux
    layer = 32 * n
    assert growth[6] < 3.5 * layer, growth
    assert growth[6] < growth[2] + layer // 2, growth


_SEAL_SCRIPT = """
import sys, proofs
from proofs import hashing, seal as S
n = int(sys.argv[1])
data = bytes((i * 37 + 5) & 0xFF for i in range(32 * n))
out = bytearray(32 * n)
c = S.seal(data, bytes(range(32)), 3, out)
keep = [n // 2, n - 1]
cols, kept = proofs.native.sdr_label(bytes(range(32)), n, 3, None, bytearray(32 * n), True, keep)
h = [c.comm_r.hex(), bytes(out).hex()[:64], cols.hex()[-64:], kept.hex()]
print(hashing.blake3_backend(), *h)
"""


def test_c_seal_same_on_portable_and_simd_paths() -> None:
    # The two-way AVX2 compression pipeline and the one-at-a-time portable path must agree
    # (sizes around the prologue and the last nodes: 2 nodes, and a few thousand).
    import subprocess
    import sys

    for n in (2, 4, 1 << 12):
        runs = {}
        for portable in ("0", "1"):
            env = dict(os.environ, STORAGED_BLAKE3_PORTABLE=portable)
            res = subprocess.run(
                [sys.executable, "-c", _SEAL_SCRIPT, str(n)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            backend, *values = res.stdout.split()
            runs[portable] = values
            assert (backend == "portable") == (portable == "1")
        assert runs["0"] == runs["1"], n
