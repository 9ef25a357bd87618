"""Chain throughput: transfers per second through apply_block, beside signature checks alone.

Run: ``.venv/bin/python bench/chain.py [N]``.  Builds N signed transfers from 200 funded
senders, then times (a) ed25519 verification alone over the same payloads (the baseline: the
floor cost of any chain that checks signatures), (b) ``ChainApp.validate`` (decode + verify +
apply + supply check + state root) and (c) ``ChainApp.commit`` (the same plus one LevelDB batch).
Each timed call runs on a fresh :class:`ChainApp` (a node that has not seen the block or its
transactions): a node re-uses its own checks (verified txs, an executed block), which would
otherwise make the second call measure a cache hit.
Target: >= 1,000 transfers/s through apply_block.
"""

# ruff: noqa: E402  (sys.path must be fixed before the proofs import, see below)
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ is sys.path[0] and bench/proofs.py would shadow the proofs package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import nacl.signing

from proofs import seal
from storaged.chain import encoding
from storaged.chain.accounts import Params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.deals import sign_proposal
from storaged.chain.tx import sign_tx, signing_payload
from storaged.chain.view import ChainView
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
        ChainApp(kv, CHAIN).validate(block)  # cold caches, like a validator receiving it
        validate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        app = ChainApp(kv, CHAIN)
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
        app = ChainApp(kv, CHAIN)
        app.commit(block, b"")
        commit_s = time.perf_counter() - t0
        assert app.head().height == 2
        kv.close()
    print(f"publish_deal: {n} in one block")
    print(f"  apply_block + LevelDB commit (synced): {n / commit_s:10,.0f} tx/s")
    bench_post(keys[:4], 64)


def bench_post(providers: list[nacl.signing.SigningKey], per: int) -> None:
    """submit_post: ``len(providers) * per`` real 4 KiB PoSts verified in C in one block.

    Sets up ``per`` ACTIVE sectors per provider (real seal + PoRep, devnet profile), then
    times validate and commit of the block holding one 64-post ``submit_post`` per provider.
    """
    client = nacl.signing.SigningKey(b"\x99" * 32)
    pks = [bytes(k.verify_key) for k in providers]
    cpk = bytes(client.verify_key)
    start, size = 60, 4096
    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelKV(tmp, sync=True)
        init_genesis(kv, CHAIN, {pk: 10**12 for pk in [*pks, cpk]},
                     Params(min_fee=1, max_txs_per_block=5000, proving_period=10), 0)
        app = ChainApp(kv, CHAIN)
        view = ChainView(kv)
        nonces: dict[bytes, int] = {}

        def tx(key: nacl.signing.SigningKey, kind: str, body: dict[str, Any]) -> bytes:
            pk = bytes(key.verify_key)
            nonces[pk] = nonces.get(pk, -1) + 1
            return sign_tx(key, CHAIN, kind, nonces[pk], 1, body)

        def block(txs: list[bytes]) -> None:
            head = app.head()
            raw = app.propose(head.height + 1, head.time + 1, providers[0], txs)
            app.commit(raw, b"")

        block([tx(k, "escrow_deposit", {"amount": 10**9}) for k in [*providers, client]])
        datas = {(i, s): os.urandom(size) for i in range(len(providers)) for s in range(per)}
        pubs = []
        for (i, _s), data in datas.items():
            p = {"piece": seal.comm_d(data), "size": size, "client": cpk, "provider": pks[i],
                 "price": 1, "start": start, "end": start + 100, "collateral": 10}
            pubs.append(tx(providers[i], "publish_deal", {
                "proposal": p, "client_sig": sign_proposal(client, CHAIN, p),
                "provider_sig": sign_proposal(providers[i], CHAIN, p)}))
        block(pubs)
        t = app.head().height
        deal_of = {}
        for deal_id, d in view.deals_of(cpk):
            deal_of[(pks.index(d["proposal"]["provider"]), d["proposal"]["piece"])] = deal_id
        sealed = {}
        pre = []
        layers = view.profile().layers
        for (i, s), data in datas.items():
            rid = seal.replica_id(pks[i], s, seal.comm_d(data), view.ticket(t))
            out = bytearray(size)
            comms = seal.seal(data, rid, layers, out)
            sealed[(i, s)] = (rid, out, comms)
            pre.append(tx(providers[i], "precommit_sector", {
                "sector": s, "deal": deal_of[(i, seal.comm_d(data))], "comm_r": comms.comm_r,
                "ticket_height": t}))
        block(pre)
        block([])
        block([])
        prof = view.profile()
        proves = []
        for (i, s), (rid, out, _comms) in sealed.items():
            seed = view.porep_seed(pks[i], s)
            assert seed is not None
            proof = seal.prove_porep(datas[(i, s)], out, rid, prof.layers, s, seed,
                                     prof.porep_challenges)
            proves.append(tx(providers[i], "provecommit_sector", {"sector": s, "proof": proof}))
        for at in range(0, len(proves), 16):  # PoRep proofs are ~40 KB: 16 per block
            block(proves[at:at + 16])
        while app.head().height < start - 1:
            block([])
        posts = []
        for i, key in enumerate(providers):
            entries = []
            for due in view.post_due(pks[i], start):
                _rid, out, comms = sealed[(i, due.sector)]
                entries.append({"sector": due.sector, "period": due.period,
                                "proof": seal.prove_post(out, comms.comm_c, due.challenges)})
            assert len(entries) == per
            posts.append(tx(key, "submit_post", {"posts": entries}))
        head = app.head()
        raw = app.propose(head.height + 1, head.time + 1, providers[0], posts)
        t0 = time.perf_counter()
        ChainApp(kv, CHAIN).validate(raw)
        validate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ChainApp(kv, CHAIN).commit(raw, b"")
        commit_s = time.perf_counter() - t0
        assert all(rec["proven"] == 0 for i in range(len(providers))
                   for _n, rec in view.sectors_of(pks[i]))
        kv.close()
    n = len(providers) * per
    print(f"submit_post: {n} real 4 KiB PoSts ({len(providers)} txs) in one block")
    print(f"  apply_block (validate, no write):      {n / validate_s:10,.0f} proofs/s")
    print(f"  apply_block + LevelDB commit (synced): {n / commit_s:10,.0f} proofs/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
