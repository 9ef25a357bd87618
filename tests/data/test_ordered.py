"""OrderedPool (the put/get worker pool) and the pipeline behaviours that rest on it: results in
submission order, a worker's exception surfacing as itself, bounded outstanding work, slots never
shared by two outstanding tasks, and no worker outliving the pool."""

from __future__ import annotations

import io
import threading
from dataclasses import replace

import pytest

from storaged.data import crypto
from storaged.data.ordered import OrderedPool
from storaged.data.pipeline import NotEnoughShares, decode_file, encode_file
from storaged.errors import IntegrityError, LocalBugError, ResourceError

WAIT = 10.0  # seconds; only reached if the code under test deadlocks


def test_results_consumed_in_submission_order_when_finished_out_of_order() -> None:
    # Task 0 cannot finish before task 1 has finished: the consumer must still see 0 first.
    one_done = threading.Event()
    out: list[int] = []

    def task(i: int) -> int:
        if i == 0:
            assert one_done.wait(WAIT)
        elif i == 1:
            one_done.set()
        return i

    with OrderedPool(out.append, workers=2, window=3, name="t") as pool:
        for i in range(8):
            pool.reserve()
            pool.submit(task, i)
    assert out == list(range(8))


@pytest.mark.parametrize(("workers", "window"), [(1, 1), (2, 2), (2, 3), (3, 5)])
def test_outstanding_tasks_bounded_and_slots_exclusive(workers: int, window: int) -> None:
    lock = threading.Lock()
    held: set[int] = set()  # slots owned by tasks submitted and not yet consumed
    clashes: list[int] = []
    out: list[tuple[int, int]] = []

    def consume(result: tuple[int, int]) -> None:
        with lock:
            held.discard(result[1])
        out.append(result)

    with OrderedPool(consume, workers=workers, window=window, name="t") as pool:
        for i in range(50):
            slot = pool.reserve()
            assert 0 <= slot < window
            with lock:
                if slot in held:
                    clashes.append(i)
                held.add(slot)
            pool.submit(lambda i=i, slot=slot: (i, slot))
    assert clashes == []
    assert [i for i, _ in out] == list(range(50))
    assert 1 <= pool.max_in_flight <= window


def test_worker_exception_surfaces_as_itself_and_later_results_are_dropped() -> None:
    out: list[int] = []
    started: list[int] = []
    finished: list[int] = []

    def task(i: int) -> int:
        started.append(i)
        try:
            if i == 3:
                raise NotEnoughShares(f"segment {i}: boom")
            return i
        finally:
            finished.append(i)

    with (
        pytest.raises(NotEnoughShares, match="segment 3: boom"),
        OrderedPool(out.append, workers=2, window=3, name="t") as pool,
    ):
        for i in range(20):
            pool.reserve()
            pool.submit(task, i)
    assert out == [0, 1, 2]  # nothing after the failed segment reaches the consumer
    assert sorted(started) == sorted(finished)  # no worker still running after the block
    assert max(started) < 3 + 3  # the window: at most 3 outstanding when segment 3 is reached


def test_consumer_exception_propagates() -> None:
    def consume(i: int) -> None:
        if i == 2:
            raise ResourceError("disk full")

    with (
        pytest.raises(ResourceError, match="disk full"),
        OrderedPool(consume, workers=2, window=2, name="t") as pool,
    ):
        for i in range(10):
            pool.reserve()
            pool.submit(lambda i=i: i)


def test_submit_without_reserve_is_a_bug() -> None:
    with (
        OrderedPool(lambda _: None, workers=1, window=1, name="t") as pool,
        pytest.raises(LocalBugError),
    ):
        pool.submit(lambda: 1)
    with pytest.raises(ValueError):
        OrderedPool(lambda _: None, workers=0, window=1, name="t")


# -- the pipeline on top of it -------------------------------------------------------------------


def test_sink_exception_stops_the_put() -> None:
    seen: list[int] = []

    def sink(index: int, shares: list[bytes]) -> None:
        seen.append(index)
        if index == 1:
            raise ResourceError("cannot write piece files")

    data = bytes(range(256)) * 64  # 4 segments of 4096
    with pytest.raises(ResourceError, match="cannot write piece files"):
        encode_file(io.BytesIO(data), sink, size=len(data), segment_size=4096, workers=2)
    assert seen == [0, 1]


def test_get_shares_arrive_in_order_with_many_workers() -> None:
    data = bytes((i * 13) % 256 for i in range(40 * 1000))
    store: list[list[bytes]] = []
    manifest, key = encode_file(
        io.BytesIO(data), lambda i, s: store.append(s), size=len(data), segment_size=1000,
        workers=4, window=6,
    )  # fmt: skip
    writes: list[int] = []

    class Writer(io.BytesIO):
        def write(self, b: object) -> int:
            writes.append(len(b))  # type: ignore[arg-type]
            return super().write(b)  # type: ignore[arg-type]

    out = Writer()
    decode_file(manifest, key, lambda i: dict(enumerate(store[i])), out, workers=4, window=6)
    assert out.getvalue() == data and writes == [1000] * 40


def test_share_matching_its_hash_but_of_the_wrong_size_refused() -> None:
    data = bytes(range(256)) * 32
    store: list[list[bytes]] = []
    manifest, key = encode_file(
        io.BytesIO(data), lambda i, s: store.append(s), size=len(data), segment_size=4096
    )
    # A forged manifest whose share hash names a truncated share: the hash check passes.
    short = store[0][0][:-1]
    entry = manifest.segments[0]
    forged_entry = replace(
        entry, share_hashes=(crypto.hash_share(short), *entry.share_hashes[1:])
    )
    forged = replace(manifest, segments=(forged_entry, *manifest.segments[1:]))
    msg = "segment 0: share 0 is 1027 bytes, the manifest implies 1028"
    with pytest.raises(IntegrityError, match=msg):
        decode_file(forged, key, lambda i: {0: short, 1: store[i][1], 2: store[i][2],
                                             3: store[i][3]}, io.BytesIO())  # fmt: skip
