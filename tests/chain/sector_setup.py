"""A chain with one published 4 KiB deal and a REAL sealed replica (shared by sector tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from proofs import seal
from storaged.chain.accounts import Params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.block import decode_block
from storaged.chain.deals import sign_proposal
from storaged.chain.providers import Provider
from storaged.chain.tx import sign_tx
from storaged.chain.view import ChainView
from storaged.store.kv import MemoryKV
from tests.chain.helpers import CHAIN, GENESIS_TIME, commit_txs, key, make_app, pk

PROVIDER, CLIENT, OTHER = 1, 2, 3
SIZE = 4096
PRICE, COLLATERAL = 10, 1000
START, END = 12, 24  # three periods of 4 blocks
PARAMS = Params(proving_period=4, seed_delay=2, fault_fee_bps=1000, max_faulty_periods=2,
                early_termination_fee_bps=2000, evidence_slash_bps=5000, unbond_delay=3)
FUNDS = 100_000


@dataclass
class Sealed:
    """One provider's sealed sector."""

    provider: int
    number: int
    deal: int
    data: bytes
    replica: bytearray
    comms: seal.Commitments
    rid: bytes


@dataclass
class Env:
    """The app, its view, and fee bookkeeping per key."""

    app: ChainApp
    view: ChainView
    fees: dict[int, int] = field(default_factory=dict)

    def tx(self, i: int, kind: str, body: dict[str, Any]) -> bytes:
        """A signed tx from key ``i`` at its next committed nonce (fee 1)."""
        return sign_tx(key(i), CHAIN, kind, self.app.account(pk(i)).nonce, 1, body)

    def block(self, *txs: tuple[int, str, dict[str, Any]]) -> None:
        """Commit the next block with exactly these txs (each must be valid)."""
        raws = []
        nonces: dict[int, int] = {}
        for i, kind, body in txs:
            n = nonces.get(i, self.app.account(pk(i)).nonce)
            nonces[i] = n + 1
            raws.append(sign_tx(key(i), CHAIN, kind, n, 1, body))
            self.fees[i] = self.fees.get(i, 0) + 1
        block = self.app.propose(self.height() + 1, self.app.head().time + 1, key(0), raws)
        self.app.commit(block, b"cert")
        assert len(decode_block(block).txs) == len(raws), "a tx was refused"

    def height(self) -> int:
        return self.app.head().height

    def until(self, height: int) -> None:
        """Commit empty blocks until the head is at ``height``."""
        while self.height() < height:
            commit_txs(self.app, [])


def publish(env: Env, provider: int, data: bytes, start: int = START, end: int = END) -> int:
    """Publish a deal for ``data`` (one 4 KiB piece); returns its id."""
    p = {"piece": seal.comm_d(data), "size": len(data), "client": pk(CLIENT),
         "provider": pk(provider), "price": PRICE, "start": start, "end": end,
         "collateral": COLLATERAL}
    body = {"proposal": p, "client_sig": sign_proposal(key(CLIENT), CHAIN, p),
            "provider_sig": sign_proposal(key(provider), CHAIN, p)}
    before = len(env.view.deals_of(pk(CLIENT)))
    env.block((provider, "publish_deal", body))
    deals = env.view.deals_of(pk(CLIENT))
    assert len(deals) == before + 1
    return deals[-1][0]


def new_env(params: Params = PARAMS, validator: bool = False) -> Env:
    """Funded keys with escrow; ``validator`` makes PROVIDER the sole genesis validator."""
    if validator:
        kv = MemoryKV()
        init_genesis(kv, CHAIN, {pk(i): FUNDS for i in (PROVIDER, CLIENT, OTHER)}, params,
                     GENESIS_TIME, {pk(PROVIDER): Provider(peer_id="p", collateral=100, bond=10)})
        app = ChainApp(kv, CHAIN)
    else:
        app = make_app({PROVIDER: FUNDS, CLIENT: FUNDS, OTHER: FUNDS}, params=params)
    env = Env(app, ChainView(app.kv))
    env.block((CLIENT, "escrow_deposit", {"amount": 10_000}),
              (PROVIDER, "escrow_deposit", {"amount": 10_000}),
              (OTHER, "escrow_deposit", {"amount": 10_000}))
    return env


def seal_sector(env: Env, provider: int, number: int, deal: int, data: bytes) -> Sealed:
    """Seal ``data`` for ``provider`` under the ticket of the current head."""
    t = env.height()
    rid = seal.replica_id(pk(provider), number, seal.comm_d(data), env.view.ticket(t))
    out = bytearray(len(data))
    comms = seal.seal(data, rid, env.view.profile().layers, out)
    return Sealed(provider, number, deal, data, out, comms, rid)


def precommit_body(s: Sealed, ticket_height: int) -> dict[str, Any]:
    return {"sector": s.number, "deal": s.deal, "comm_r": s.comms.comm_r,
            "ticket_height": ticket_height}


def porep(env: Env, s: Sealed) -> bytes:
    seed = env.view.porep_seed(pk(s.provider), s.number)
    assert seed is not None
    prof = env.view.profile()
    return seal.prove_porep(s.data, s.replica, s.rid, prof.layers, s.number, seed,
                            prof.porep_challenges)


def activate(env: Env, provider: int = PROVIDER, number: int = 7) -> Sealed:
    """Publish, seal, precommit and provecommit one sector; returns it ACTIVE."""
    data = os.urandom(SIZE)
    deal = publish(env, provider, data)
    t = env.height()
    s = seal_sector(env, provider, number, deal, data)
    env.block((provider, "precommit_sector", precommit_body(s, t)))
    rec = env.view.sector(pk(provider), number)
    assert rec is not None
    env.until(rec["seed_height"])
    env.block((provider, "provecommit_sector", {"sector": number, "proof": porep(env, s)}))
    return s


def post_entry(env: Env, s: Sealed) -> dict[str, Any]:
    """The PoSt for the period due at the next block."""
    dues = [d for d in env.view.post_due(pk(s.provider), env.height() + 1)
            if d.sector == s.number]
    assert len(dues) == 1, dues
    proof = seal.prove_post(s.replica, s.comms.comm_c, dues[0].challenges)
    return {"sector": s.number, "period": dues[0].period, "proof": proof}
