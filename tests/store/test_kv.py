"""One suite for both KV backends: LevelKV (on disk) and MemoryKV (its in-memory twin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storaged.errors import ResourceError
from storaged.store.kv import KV, LevelKV, MemoryKV


@pytest.fixture(params=["level", "memory"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = LevelKV(tmp_path / "db") if request.param == "level" else MemoryKV()
    yield store
    store.close()


def test_get_put_delete(kv: KV) -> None:
    assert kv.get(b"a") is None
    kv.put(b"a", b"1")
    assert kv.get(b"a") == b"1"
    kv.put(b"a", b"2")
    assert kv.get(b"a") == b"2"
    kv.delete(b"a")
    assert kv.get(b"a") is None
    kv.delete(b"missing")  # deleting an absent key is a no-op


def test_prefix_scan_in_key_order(kv: KV) -> None:
    keys = [b"\x01\x00\x02", b"\x01\x00\x01", b"\x01\xff", b"\x02", b"\x00\xff", b"\x01"]
    for k in keys:
        kv.put(k, k + b"v")
    got = [k for k, _ in kv.scan(b"\x01")]
    assert got == sorted(k for k in keys if k.startswith(b"\x01"))
    assert [v for _, v in kv.scan(b"\x01")] == [k + b"v" for k in got]
    assert [k for k, _ in kv.scan(b"\x01", reverse=True)] == list(reversed(got))
    assert [k for k, _ in kv.scan(b"")] == sorted(keys)


def test_prefix_ending_in_ff(kv: KV) -> None:
    for k in [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x01", b"\xfe\xff", b"\xff\xfe"]:
        kv.put(k, b"")
    assert [k for k, _ in kv.scan(b"\xff\xff")] == [b"\xff\xff", b"\xff\xff\x01"]
    assert [k for k, _ in kv.scan(b"\xff")] == [
        b"\xff",
        b"\xff\x00",
        b"\xff\xfe",
        b"\xff\xff",
        b"\xff\xff\x01",
    ]
    assert [k for k, _ in kv.scan(b"\xfe")] == [b"\xfe\xff"]


def test_scan_start_forward_and_reverse(kv: KV) -> None:
    for i in range(10):
        kv.put(b"p" + bytes([i]), b"")
    kv.put(b"q", b"")
    assert [k[1] for k, _ in kv.scan(b"p", start=b"p\x04")] == [4, 5, 6, 7, 8, 9]
    assert [k[1] for k, _ in kv.scan(b"p", start=b"p\x04", reverse=True)] == [4, 3, 2, 1, 0]
    # A start outside the prefix range is clamped to it.
    assert [k[1] for k, _ in kv.scan(b"p", start=b"a")] == list(range(10))
    assert [k[1] for k, _ in kv.scan(b"p", start=b"z", reverse=True)] == list(range(9, -1, -1))


class _Boom(Exception):
    pass


def test_batch_exception_writes_nothing(kv: KV) -> None:
    kv.put(b"keep", b"1")
    with pytest.raises(_Boom), kv.batch() as b:
        b.put(b"new", b"x")
        b.delete(b"keep")
        raise _Boom
    assert kv.get(b"new") is None
    assert kv.get(b"keep") == b"1"


def test_batch_clean_exit_writes_all_in_order(kv: KV) -> None:
    kv.put(b"gone", b"1")
    with kv.batch() as b:
        b.put(b"a", b"1")
        b.put(b"b", b"2")
        b.delete(b"gone")
        b.put(b"a", b"3")  # later ops win
        b.put(b"c", b"4")
        b.delete(b"c")
        assert kv.get(b"a") is None  # nothing visible before the batch commits
    assert kv.get(b"a") == b"3"
    assert kv.get(b"b") == b"2"
    assert kv.get(b"gone") is None
    assert kv.get(b"c") is None


def test_scan_is_a_snapshot(kv: KV) -> None:
    for i in range(5):
        kv.put(b"s" + bytes([i]), b"old")
    seen = []
    for k, v in kv.scan(b"s"):
        seen.append((k, v))
        kv.put(b"s\x09", b"new")
        kv.delete(b"s\x04")
        kv.put(b"s\x00", b"changed")
    assert seen == [(b"s" + bytes([i]), b"old") for i in range(5)]
    assert kv.get(b"s\x09") == b"new"


def test_level_reopen_keeps_data(tmp_path: Path) -> None:
    db = LevelKV(tmp_path / "db")
    with db.batch() as b:
        b.put(b"k", b"v")
    db.close()
    db = LevelKV(tmp_path / "db")
    assert db.get(b"k") == b"v"
    db.close()


def test_level_locked_path_is_resource_error(tmp_path: Path) -> None:
    path = tmp_path / "locked"
    first = LevelKV(path)
    try:
        with pytest.raises(ResourceError, match=str(path)):
            LevelKV(path)
    finally:
        first.close()


_key = st.binary(min_size=0, max_size=3).map(lambda b: b"\x05" + b)
_op = st.one_of(
    st.tuples(st.just("put"), _key, st.binary(max_size=4)),
    st.tuples(st.just("del"), _key, st.just(b"")),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.tuples(st.lists(_op, max_size=6), st.booleans()), max_size=8),
    prefix=st.binary(max_size=2).map(lambda b: b"\x05" + b),
    start=st.none() | _key,
    reverse=st.booleans(),
)
def test_backends_agree_with_dict_model(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[tuple[list[tuple[str, bytes, bytes]], bool]],
    prefix: bytes,
    start: bytes | None,
    reverse: bool,
) -> None:
    level = LevelKV(tmp_path_factory.mktemp("prop"), sync=False)
    mem = MemoryKV()
    model: dict[bytes, bytes] = {}
    try:
        for ops, fail in batches:
            staged = dict(model)
            for store in (level, mem):
                with pytest.raises(_Boom) if fail else _nullctx(), store.batch() as b:
                    for op, k, v in ops:
                        if op == "put":
                            b.put(k, v)
                        else:
                            b.delete(k)
                    if fail:
                        raise _Boom
            if not fail:
                for op, k, v in ops:
                    if op == "put":
                        staged[k] = v
                    else:
                        staged.pop(k, None)
                model = staged
        want = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
        if start is not None:
            want = [kv_ for kv_ in want if (kv_[0] <= start if reverse else kv_[0] >= start)]
        if reverse:
            want.reverse()
        assert list(level.scan(prefix, start=start, reverse=reverse)) == want
        assert list(mem.scan(prefix, start=start, reverse=reverse)) == want
    finally:
        level.close()


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
