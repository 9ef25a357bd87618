"""Property test: random transaction sequences never break supply or determinism."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from storaged.chain.accounts import load_totals
from storaged.chain.deals import sign_proposal
from storaged.chain.providers import held_by_providers
from storaged.chain.state import StateOverlay
from storaged.chain.supply import check_supply
from storaged.chain.tx import sign_tx
from tests.chain.helpers import CHAIN, commit_txs, key, make_app, pk

N_KEYS = 4

op = st.tuples(
    st.sampled_from(["transfer", "escrow_deposit", "escrow_withdraw", "publish_deal",
                     "register_provider", "bond", "unbond", "precommit_sector",
                     "provecommit_sector", "submit_post", "declare_fault", "terminate_deal"]),
    st.integers(0, N_KEYS - 1),  # sender
    st.integers(0, N_KEYS - 1),  # recipient
    st.integers(0, 400),  # amount (often more than the balance: must be refused cleanly)
    st.integers(0, 3),  # fee (0 is below the minimum)
    st.integers(-1, 1),  # nonce skew: replay, correct, gap
)


def _body(kind: str, i: int, j: int, amount: int) -> dict[str, Any]:
    if kind == "transfer":
        return {"to": pk(j), "amount": amount}
    if kind == "publish_deal":
        # i publishes as provider for client j; start soon so many deals expire in the run
        p = {"piece": bytes([amount % 256]) * 32, "size": 4096, "client": pk(j),
             "provider": pk(i), "price": amount % 7, "start": 2 + amount % 3,
             "end": 10, "collateral": amount % 50}
        return {"proposal": p, "client_sig": sign_proposal(key(j), CHAIN, p),
                "provider_sig": sign_proposal(key(i), CHAIN, p)}
    if kind == "register_provider":
        return {"peer_id": f"peer{i}", "addrs": [], "price": 1, "capacity": 1 << 30,
                "collateral": amount}
    if kind == "precommit_sector":
        return {"sector": amount % 3, "deal": amount % 4, "comm_r": bytes(32),
                "ticket_height": max(0, amount % 4)}
    if kind == "provecommit_sector":
        return {"sector": amount % 3, "proof": bytes(amount)}
    if kind == "submit_post":
        return {"posts": [{"sector": amount % 3, "period": 0, "proof": bytes(amount % 64)}]}
    if kind == "declare_fault":
        return {"sectors": [amount % 3]}
    if kind == "terminate_deal":
        return {"deal": amount % 4}
    return {"amount": amount}


Op = tuple[str, int, int, int, int, int]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(op, max_size=8), min_size=1, max_size=4))
def test_supply_invariant_on_random_blocks(blocks: list[list[Op]]) -> None:
    app = make_app({i: 300 for i in range(N_KEYS)})
    nonces = [0] * N_KEYS
    minted = 300 * N_KEYS
    for ops in blocks:
        txs = []
        for kind, i, j, amount, fee, skew in ops:
            body = _body(kind, i, j, amount)
            txs.append(sign_tx(key(i), CHAIN, kind, max(0, nonces[i] + skew), fee, body))
            nonces[i] += 1
        commit_txs(app, txs)
        nonces = [app.account(pk(i)).nonce for i in range(N_KEYS)]
        state = StateOverlay(app.kv)
        check_supply(state)  # raises StateCorrupt if held + burned != minted
        held = sum(app.account(pk(i)).total() for i in range(N_KEYS))
        held += held_by_providers(state)
        totals = load_totals(state)
        assert totals.minted == minted
        assert held + totals.burned == minted
        assert app.state_root() == app.head().state_root


# A real sector (4 KiB, real proofs) under a random schedule: each period proven or not,
# optional declared fault, optional early termination; supply and exact totals hold.
@settings(max_examples=12, deadline=None)
@given(st.lists(st.booleans(), min_size=3, max_size=3), st.booleans(),
       st.integers(-1, 2))
def test_supply_invariant_over_a_sector_lifecycle(
    proven: list[bool], declare: bool, terminate_at: int
) -> None:
    from tests.chain.sector_setup import COLLATERAL, END, PROVIDER, activate, new_env, post_entry

    env = new_env()
    s = activate(env)
    minted = load_totals(StateOverlay(env.app.kv)).minted
    if declare:
        env.block((PROVIDER, "declare_fault", {"sectors": [s.number]}))
    for period, ok in enumerate(proven):
        first = 12 + 4 * period
        env.until(first - 1)
        deal = env.view.deal(s.deal)
        assert deal is not None
        if deal["state"] != "ACTIVE":
            break
        if period == terminate_at:
            env.block((PROVIDER, "terminate_deal", {"deal": s.deal}))
        elif ok:
            env.block((PROVIDER, "submit_post", {"posts": [post_entry(env, s)]}))
        env.until(first + 3)
        check_supply(StateOverlay(env.app.kv))
    env.until(END)
    state = StateOverlay(env.app.kv)
    check_supply(state)
    totals = load_totals(state)
    assert totals.minted == minted
    deal = env.view.deal(s.deal)
    assert deal is not None and deal["state"] in ("COMPLETED", "TERMINATED_EARLY",
                                                  "TERMINATED_FAULT")
    assert deal["settled"] == 10 * (END - 12) and deal["burned"] <= COLLATERAL
    assert env.view.account(pk(PROVIDER)).locked == 0
