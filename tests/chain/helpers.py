"""Shared fixtures for chain tests: deterministic keys and a genesis-initialised app."""

from __future__ import annotations

import nacl.signing

from storaged.chain.accounts import Params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.tx import sign_tx
from storaged.store.kv import KV, MemoryKV

CHAIN = "storaged-test"
GENESIS_TIME = 1_700_000_000


def key(i: int) -> nacl.signing.SigningKey:
    """Deterministic signing key number ``i``."""
    return nacl.signing.SigningKey(bytes([i + 1]) * 32)


def pk(i: int) -> bytes:
    """Public key of :func:`key` ``i``."""
    return bytes(key(i).verify_key)


def make_app(
    balances: dict[int, int], kv: KV | None = None, params: Params | None = None
) -> ChainApp:
    """A ChainApp over ``kv`` (MemoryKV by default) with genesis balances by key number."""
    store = kv if kv is not None else MemoryKV()
    init_genesis(store, CHAIN, {pk(i): b for i, b in balances.items()},
                 params or Params(), GENESIS_TIME)
    return ChainApp(store, CHAIN)


def transfer(i: int, to: int, amount: int, nonce: int, fee: int = 1) -> bytes:
    """Signed transfer from key ``i`` to key ``to``."""
    return sign_tx(key(i), CHAIN, "transfer", nonce, fee, {"to": pk(to), "amount": amount})


def commit_txs(app: ChainApp, txs: list[bytes], dt: int = 1) -> bytes:
    """Propose a block with ``txs`` at the next height and commit it; returns block bytes."""
    head = app.head()
    block = app.propose(head.height + 1, head.time + dt, key(0), txs)
    app.commit(block, b"cert")
    return block
