"""Properties of the SDR parent graph (twin)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import reference as ref
from proofs.errors import ProofError
from proofs.reference.graph import perm


@pytest.mark.parametrize("n", [2, 4, 128, 1024])
def test_expander_in_degree_exactly_eight(n: int) -> None:
    counts = Counter(p for v in range(n) for p in ref.expander_parents(n, v))
    assert set(counts) == set(range(n))
    assert set(counts.values()) == {8}


@pytest.mark.parametrize("n", [4, 256])
def test_perm_is_a_bijection(n: int) -> None:
    assert sorted(perm(n, x) for x in range(8 * n)) == list(range(8 * n))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20), st.data())
def test_drg_parents_precede_node(depth: int, data: st.DataObject) -> None:
    n = 1 << depth
    v = data.draw(st.integers(1, n - 1))
    parents = ref.drg_parents(n, v)
    assert len(parents) == 6
    assert parents[0] == v - 1
    assert all(0 <= p < v for p in parents)


def test_drg_has_long_edges() -> None:
    # Depth robustness needs back-edges at every scale, not only v - 1.
    n = 1 << 12
    dists = [v - p for v in range(n // 2, n) for p in ref.drg_parents(n, v)[1:]]
    assert max(dists) > n // 4
    assert sum(d > 64 for d in dists) > len(dists) // 4


def test_node_zero_has_no_same_layer_parents() -> None:
    assert ref.drg_parents(8, 0) == []


@pytest.mark.parametrize("n", [0, 1, 3, 96])
def test_bad_node_count_rejected(n: int) -> None:
    with pytest.raises(ProofError, match="power of two"):
        ref.drg_parents(n, 0)


def test_node_out_of_range_rejected() -> None:
    with pytest.raises(ProofError, match="out of range"):
        ref.expander_parents(8, 8)
