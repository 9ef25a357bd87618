from __future__ import annotations

import json
from pathlib import Path

import pytest

from storaged.chain import encoding
from storaged.chain.accounts import Account, Params
from storaged.chain.block import Block, Header, decode_block, txs_root
from storaged.chain.errors import BadNonce, InvalidBlock, InvalidSignature, StateCorrupt
from storaged.chain.vrf import InvalidVrfProof
from storaged.store import schema
from storaged.store.kv import LevelKV, MemoryKV
from tests.chain.helpers import CHAIN, commit_txs, key, make_app, pk, transfer


def _dump(kv: MemoryKV) -> list[tuple[bytes, bytes]]:
    return list(kv.scan(b""))


def test_commit_persists_block_receipts_head_and_state() -> None:
    app = make_app({1: 1000})
    block = commit_txs(app, [transfer(1, 2, 100, nonce=0), transfer(1, 3, 5, nonce=1)])
    head = app.head()
    assert head.height == 1
    assert app.block_at(1) == block
    assert app.kv.get(schema.chain_commit_key(1)) == b"cert"
    assert app.kv.get(schema.chain_block_hash_key(head.hash)) == schema.u64(1)
    receipts = encoding.decode(app.kv.get(schema.chain_receipts_key(1)) or b"")
    assert [r["fee"] for r in receipts] == [1, 1]
    assert app.account(pk(1)) == Account(balance=893, nonce=2)
    assert app.account(pk(2)) == Account(balance=100)
    assert head.state_root == app.state_root() == decode_block(block).header.state_root


def test_propose_skips_invalid_and_respects_limit() -> None:
    app = make_app({1: 1000}, params=Params(min_fee=1, max_txs_per_block=2))
    replay = transfer(1, 2, 1, nonce=0)
    block = decode_block(app.propose(1, 2_000_000_000, key(0), [
        replay, replay, transfer(1, 2, 5000, nonce=1), transfer(1, 2, 2, nonce=1),
        transfer(1, 2, 3, nonce=2),
    ]))
    assert list(block.txs) == [replay, transfer(1, 2, 2, nonce=1)]


def _forge(app_block: bytes, **changes: object) -> bytes:
    b = decode_block(app_block)
    fields = {f: getattr(b.header, f) for f in Header.__slots__}
    txs = list(changes.pop("txs", b.txs))  # type: ignore[call-overload]
    fields.update(changes)
    if "txs_root" not in changes:
        fields["txs_root"] = txs_root(txs)
    return Block(Header(**fields), tuple(txs)).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"height": 2}, InvalidBlock),
        ({"parent": b"\x07" * 32}, InvalidBlock),
        ({"time": 0}, InvalidBlock),
        ({"chain": "other"}, InvalidBlock),
        ({"state_root": b"\x00" * 32}, InvalidBlock),
        ({"txs_root": b"\x00" * 32}, InvalidBlock),
        ({"beacon": b"\x00" * 64}, InvalidBlock),
        ({"proposer": pk(5)}, InvalidVrfProof),
        ({"txs": [transfer(1, 2, 100, nonce=0)] * 2}, BadNonce),
        ({"txs": [transfer(1, 2, 100, nonce=0)[:-1] + b"\x00"]}, InvalidSignature),
    ],
)
def test_rejected_block_changes_nothing(changes: dict[str, object], error: type) -> None:
    app = make_app({1: 1000})
    good = app.propose(1, 2_000_000_000, key(0), [transfer(1, 2, 100, nonce=0)])
    before = _dump(app.kv)  # type: ignore[arg-type]
    bad = _forge(good, **changes)
    with pytest.raises(error):
        app.validate(bad)
    with pytest.raises(error):
        app.commit(bad, b"cert")
    assert _dump(app.kv) == before  # type: ignore[arg-type]
    app.commit(good, b"cert")
    assert app.head().height == 1


def test_too_many_txs_rejected() -> None:
    app = make_app({1: 1000}, params=Params(min_fee=1, max_txs_per_block=1))
    good = app.propose(1, 2_000_000_000, key(0), [transfer(1, 2, 1, nonce=0)])
    with pytest.raises(InvalidBlock):
        app.validate(_forge(good, txs=[transfer(1, 2, 1, nonce=0), transfer(1, 2, 1, nonce=1)]))


def test_leveldb_and_memory_agree(tmp_path: Path) -> None:
    mem = make_app({1: 500, 2: 500})
    disk_kv = LevelKV(tmp_path / "chain", sync=False)
    try:
        disk = make_app({1: 500, 2: 500}, kv=disk_kv)
        for n in range(3):
            txs = [transfer(1, 3, 10, nonce=n), transfer(2, 1, 7, nonce=n)]
            block = commit_txs(mem, txs)
            disk.commit(block, b"cert")
        assert mem.head() == disk.head()
        assert mem.state_root() == disk.state_root() == mem.head().state_root
        assert list(mem.kv.scan(b"")) == list(disk_kv.scan(b""))  # type: ignore[attr-defined]
    finally:
        disk_kv.close()


def test_genesis_twice_refused() -> None:
    app = make_app({1: 1})
    from storaged.chain.app import init_genesis
    with pytest.raises(StateCorrupt):
        init_genesis(app.kv, CHAIN, {}, Params(), 0)


def test_genesis_state_root_vector() -> None:
    # Pins the state-entry and state-root byte formats (accounts, totals, params, Merkle).
    v = json.loads((Path(__file__).parent.parent / "vectors" / "chain_state_v1.json").read_text())
    app = make_app({int(i): b for i, b in v["balances"].items()})
    assert app.head().state_root.hex() == v["state_root"]


def test_beacon_chain_and_randomness() -> None:
    from storaged.chain.randomness import load_beacon, randomness
    from storaged.chain.state import StateOverlay
    app = make_app({1: 10})
    commit_txs(app, [])
    commit_txs(app, [])
    state = StateOverlay(app.kv)
    beacons = [load_beacon(state, h) for h in range(3)]
    assert len(set(beacons)) == 3
    assert decode_block(app.block_at(2) or b"").header.beacon == beacons[2]
    r = randomness(state, b"post", 2, b"sector-1")
    assert r == randomness(state, b"post", 2, b"sector-1")
    assert len({r, randomness(state, b"porep", 2, b"sector-1"),
                randomness(state, b"post", 1, b"sector-1"),
                randomness(state, b"post", 2, b"sector-2")}) == 4
    with pytest.raises(StateCorrupt):
        randomness(state, b"post", 3, b"")  # the future has no beacon yet
    with pytest.raises(InvalidBlock):
        app.propose(5, 2_000_000_000, key(0), [])
