from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storaged.chain import encoding
from storaged.chain.errors import MalformedEncoding

values = st.recursive(
    st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=20) | st.booleans(),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@given(values)
def test_roundtrip_is_exact(value: object) -> None:
    data = encoding.encode(value)
    assert encoding.decode(data) == value
    assert encoding.encode(encoding.decode(data)) == data


def test_unsorted_map_rejected() -> None:
    data = cbor2.dumps({"bb": 1, "a": 2})  # insertion order: longer key first, not canonical
    assert data != encoding.encode({"bb": 1, "a": 2})
    with pytest.raises(MalformedEncoding):
        encoding.decode(data)


def test_non_shortest_integer_rejected() -> None:
    with pytest.raises(MalformedEncoding):
        encoding.decode(b"\x18\x01")  # 1 encoded in two bytes


def test_garbage_and_trailing_bytes_rejected() -> None:
    with pytest.raises(MalformedEncoding):
        encoding.decode(b"\xff\xff")
    with pytest.raises(MalformedEncoding):
        encoding.decode(encoding.encode(1) + b"\x00")


def test_require_map_rejects_bool_as_int() -> None:
    with pytest.raises(MalformedEncoding):
        encoding.require_map({"n": True}, {"n": int}, "x")
    with pytest.raises(MalformedEncoding):
        encoding.require_map({"n": 1, "extra": 2}, {"n": int}, "x")
