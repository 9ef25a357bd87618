"""The pure state transition: ``apply_tx`` and ``apply_block`` over a :class:`StateOverlay`.

No I/O, no clock: the only time is the block header's.  Every rule is one ``ensure``.
Fees are burned (added to ``totals.burned``), so the supply invariant stays exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storaged.chain import accounts, deals, governance, providers, sectors, slashing
from storaged.chain.context import Context
from storaged.chain.errors import (
    BadNonce,
    FeeTooLow,
    InsufficientFunds,
    InvalidTransaction,
    ensure,
)
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx


def _transfer(
    state: StateOverlay, tx: Tx, sender: accounts.Account, _ctx: Context
) -> None:
    to, amount = tx.body["to"], tx.body["amount"]
    ensure(amount > 0, InvalidTransaction, "transfer amount must be positive")
    ensure(to != tx.sender, InvalidTransaction, "transfer to self")
    ensure(sender.balance >= amount, InsufficientFunds,
           f"balance {sender.balance} < amount {amount}")
    sender.balance -= amount
    accounts.store_account(state, tx.sender, sender)
    recipient = accounts.load_account(state, to)
    recipient.balance += amount
    accounts.store_account(state, to, recipient)


def _escrow_deposit(
    state: StateOverlay, tx: Tx, sender: accounts.Account, _ctx: Context
) -> None:
    amount = tx.body["amount"]
    ensure(amount > 0, InvalidTransaction, "deposit amount must be positive")
    ensure(sender.balance >= amount, InsufficientFunds,
           f"balance {sender.balance} < deposit {amount}")
    sender.balance -= amount
    sender.escrow += amount
    accounts.store_account(state, tx.sender, sender)


def _escrow_withdraw(
    state: StateOverlay, tx: Tx, sender: accounts.Account, _ctx: Context
) -> None:
    amount = tx.body["amount"]
    ensure(amount > 0, InvalidTransaction, "withdraw amount must be positive")
    # Only free escrow can leave; ``locked`` backs published deals.
    ensure(sender.escrow >= amount, InsufficientFunds,
           f"free escrow {sender.escrow} < withdrawal {amount}")
    sender.escrow -= amount
    sender.balance += amount
    accounts.store_account(state, tx.sender, sender)


HANDLERS: dict[str, Callable[[StateOverlay, Tx, accounts.Account, Context], None]] = {
    "transfer": _transfer,
    "escrow_deposit": _escrow_deposit,
    "escrow_withdraw": _escrow_withdraw,
    "register_provider": providers.register,
    "update_provider": providers.update,
    "bond": providers.bond,
    "gov_propose": governance.propose,
    "gov_vote": governance.vote,
    "publish_deal": deals.publish,
    "precommit_sector": sectors.precommit,
    "provecommit_sector": sectors.provecommit,
    "submit_post": sectors.submit_post,
    "declare_fault": sectors.declare_fault,
    "terminate_deal": sectors.terminate,
    "report_evidence": slashing.report_evidence,
    "unbond": slashing.unbond,
}


def apply_tx(state: StateOverlay, tx: Tx, ctx: Context) -> dict[str, Any]:
    """Apply one authenticated transaction to ``state``; returns its receipt.

    The fee is charged and the nonce advanced before the kind's rules run; a transaction that
    breaks a rule raises and the caller discards the (child) overlay it wrote into.

    Raises:
        BadNonce: the nonce is not the sender's next nonce (replay or gap).
        FeeTooLow: the fee is below ``params.min_fee``.
        InsufficientFunds: the sender cannot pay the fee or the amount.
        InvalidTransaction: a kind-specific rule fails.
    """
    params = ctx.params
    sender = accounts.load_account(state, tx.sender)
    ensure(tx.nonce == sender.nonce, BadNonce, f"nonce {tx.nonce}, expected {sender.nonce}")
    ensure(tx.fee >= params.min_fee, FeeTooLow, f"fee {tx.fee} < minimum {params.min_fee}")
    ensure(sender.balance >= tx.fee, InsufficientFunds,
           f"balance {sender.balance} < fee {tx.fee}")
    sender.balance -= tx.fee
    sender.nonce += 1
    totals = accounts.load_totals(state)
    totals.burned += tx.fee
    accounts.store_totals(state, totals)
    HANDLERS[tx.kind](state, tx, sender, ctx)
    return {"tx": tx.hash, "kind": tx.kind, "fee": tx.fee}
