"""Chain throughput: transfers per second through apply_block, beside signature checks alone.

Run: ``.venv/bin/python bench/chain.py [N]``.  Builds N signed transfers from 200 funded
senders, then times (a) ed25519 verification alone over the same payloads (the baseline: the
floor cost of any chain that checks signatures), (b) ``ChainApp.validate`` (decode + verify +
apply + supply check + state root) and (c) ``ChainApp.commit`` (the same plus one LevelDB batch).
Target: >= 1,000 transfers/s through apply_block.
"""

from __future__ import annotations

import sys
import tempfile
import time

import nacl.signing

from storaged.chain import encoding
from storaged.chain.accounts import Params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.tx import sign_tx, signing_payload
from storaged.store.kv import LevelKV

CHAIN = "bench"
SENDERS = 200


def main(n: int) -> None:
    keys = [nacl.signing.SigningKey(i.to_bytes(32, "big")) for i in range(1, SENDERS + 1)]
    txs = [
        sign_tx(keys[i % SENDERS], CHAIN, "transfer", i // SENDERS, 1,
                {"to": bytes(keys[(i + 1) % SENDERS].verify_key), "amount": 1})
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for raw in txs:
        outer = encoding.decode(raw)
        nacl.signing.VerifyKey(outer["tx"]["from"]).verify(
            signing_payload(outer["tx"]), outer["sig"])
    verify_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelKV(tmp, sync=True)
        init_genesis(kv, CHAIN, {bytes(k.verify_key): 10**12 for k in keys},
                     Params(min_fee=1, max_txs_per_block=n), 0)
        app = ChainApp(kv, CHAIN)
        block = app.propose(1, 1, keys[0], txs)
        t0 = time.perf_counter()
        app.validate(block)
        validate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        app.commit(block, b"")
        commit_s = time.perf_counter() - t0
        assert app.head().height == 1
        kv.close()
    print(f"transfers: {n} in one block, {SENDERS} senders")
    print(f"  baseline  decode+ed25519 verify alone: {n / verify_s:10,.0f} tx/s")
    print(f"  apply_block (validate, no write):      {n / validate_s:10,.0f} tx/s")
    print(f"  apply_block + LevelDB commit (synced): {n / commit_s:10,.0f} tx/s  (target 1,000)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
