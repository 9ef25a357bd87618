from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storaged.chain.errors import StateProofInvalid
from storaged.chain.state import EntryProof, prove_entry, state_root, verify_entry
from storaged.store import schema
from tests.chain.helpers import commit_txs, make_app, pk, transfer


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=6), st.binary(max_size=6),
                       min_size=1, max_size=40), st.data())
def test_every_entry_proves_and_tampering_fails(entries: dict[bytes, bytes], data: st.DataObject
                                                ) -> None:
    items = sorted(entries.items())
    root = state_root(iter(items))
    key = data.draw(st.sampled_from([k for k, _ in items]))
    found = prove_entry(items, key)
    assert found is not None
    value, proof = found
    assert value == entries[key]
    verify_entry(root, key, value, proof)
    with pytest.raises(StateProofInvalid):
        verify_entry(root, key, value + b"x", proof)
    if proof.siblings:
        bad = EntryProof(proof.index, proof.count, (b"\x00" * 32, *proof.siblings[1:]))
        with pytest.raises(StateProofInvalid):
            verify_entry(root, key, value, bad)
        with pytest.raises(StateProofInvalid):
            verify_entry(root, key, value, EntryProof(proof.index, proof.count,
                                                      proof.siblings[:-1]))


def test_query_against_committed_head() -> None:
    app = make_app({1: 100})
    commit_txs(app, [transfer(1, 2, 10, nonce=0)])
    key = schema.state_account_key(pk(2))
    answer = app.query(key)
    assert answer is not None
    head, value, proof = answer
    verify_entry(head.state_root, key, value, proof)
    assert app.query(schema.state_account_key(pk(7))) is None
