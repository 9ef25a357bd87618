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
from storaged.chain.deals import sign_proposal
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
    bench_deals(keys, n // 4)


def bench_deals(keys: list[nacl.signing.SigningKey], n: int) -> None:
    """publish_deal: three ed25519 verifications (tx + both parties) and four account writes."""
    pks = [bytes(k.verify_key) for k in keys]
    half = SENDERS // 2
    txs = []
    for i in range(n):
        prov, client = i % half, half + i % half
        p = {"piece": i.to_bytes(32, "big"), "size": 1 << 20, "client": pks[client],
             "provider": pks[prov], "price": 1, "start": 100, "end": 200, "collateral": 10}
        body = {"proposal": p, "client_sig": sign_proposal(keys[client], CHAIN, p),
                "provider_sig": sign_proposal(keys[prov], CHAIN, p)}
        txs.append(sign_tx(keys[prov], CHAIN, "publish_deal", 1 + i // half, 1, body))
    deposits = [sign_tx(k, CHAIN, "escrow_deposit", 0, 1, {"amount": 10**9}) for k in keys]
    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelKV(tmp, sync=True)
        init_genesis(kv, CHAIN, {pk: 10**12 for pk in pks},
                     Params(min_fee=1, max_txs_per_block=max(n, SENDERS)), 0)
        app = ChainApp(kv, CHAIN)
        app.commit(app.propose(1, 1, keys[0], deposits), b"")
        block = app.propose(2, 2, keys[0], txs)
        t0 = time.perf_counter()
        app.commit(block, b"")
        commit_s = time.perf_counter() - t0
        assert app.head().height == 2
        kv.close()
    print(f"publish_deal: {n} in one block")
    print(f"  apply_block + LevelDB commit (synced): {n / commit_s:10,.0f} tx/s")
    print("submit_post: not measured (no sector/PoSt transactions yet; proofs API pending)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
