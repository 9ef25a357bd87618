"""The mempool: transactions admitted but not yet committed, ordered per sender by nonce.

Admission (:meth:`Mempool.add`) is the chain's CheckTx: the transaction is decoded,
authenticated and applied to a throwaway overlay of the committed state on top of the same
sender's pending transactions, so a sender may have several in flight (nonces n, n+1, ...)
and a transaction that could never apply is refused at once with the specific
:class:`ChainError`.  After each commit, :meth:`Mempool.on_commit` drops what the block
included and re-checks the rest (a pending tx may have become invalid).

Each sender's pending transactions are applied once, into an overlay kept until the head
changes (admitting the k-th pending tx of a sender applies that tx alone, not all k again);
signatures are checked through the app's :class:`VerifiedTxs` cache, so a tx re-checked after
a commit, or later validated in a block, is not verified again.

A transaction up to ``MAX_NONCE_GAP`` nonces ahead of its sender's next one (gossip delivered
n+1 before n) is held aside, not refused, and admitted as soon as the gap closes (by a later
``add`` or a commit); held transactions are not candidates and not counted as pending.

Limits keep a flood from growing memory without bound: at most ``max_txs`` in all,
``max_per_sender`` per sender and ``max_held`` held aside; beyond that :class:`MempoolFull`
(a ``ResourceError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from storaged.chain import accounts
from storaged.chain.app import ChainApp
from storaged.chain.apply import apply_tx
from storaged.chain.context import Context
from storaged.chain.errors import ChainError
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx
from storaged.errors import ResourceError

MAX_NONCE_GAP = 16  # a tx this far ahead of its sender's next nonce is held, not refused


class MempoolFull(ResourceError):
    """The mempool (or this sender's share of it) is full; retry after the next block."""


class Mempool:
    """Pending transactions of one node."""

    def __init__(self, app: ChainApp, *, max_txs: int = 20_000, max_per_sender: int = 256,
                 max_held: int = 4096) -> None:
        self.app = app
        self.max_held = max_held
        self.max_txs = max_txs
        self.max_per_sender = max_per_sender
        self._by_sender: dict[bytes, list[Tx]] = {}
        self._hashes: set[bytes] = set()
        # Per sender: committed state plus that sender's pending txs, valid for one head.
        self._overlays: dict[bytes, StateOverlay] = {}
        self._overlay_head: bytes | None = None
        self._ctx: Context | None = None
        # Per sender: transactions whose nonce is ahead of the next one, by nonce (raw bytes).
        self._future: dict[bytes, dict[int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._hashes

    def _pending_state(self, sender: bytes) -> tuple[StateOverlay, Context]:
        head = self.app.head()
        if head.hash != self._overlay_head or self._ctx is None:
            self._overlays.clear()
            self._overlay_head = head.hash
            self._ctx = Context(head.height + 1, accounts.load_params(StateOverlay(self.app.kv)),
                                self.app.verifier)
        ctx = self._ctx
        state = self._overlays.get(sender)
        if state is None:
            state = StateOverlay(self.app.kv)
            for tx in self._by_sender.get(sender, []):
                apply_tx(state, tx, ctx)
            self._overlays[sender] = state
        return state, ctx

    def add(self, raw: bytes) -> bytes:
        """Admit ``raw``; return its hash.  Adding a tx already pending is a no-op.

        Raises:
            ChainError: decoding, signature or a state rule refuses it (specific leaf).
            MempoolFull: no room for it now.
        """
        tx = self.app.txs.decode(raw, self.app.chain_id)
        if tx.hash in self._hashes:
            return tx.hash
        queue = self._by_sender.get(tx.sender, [])
        if len(self._hashes) >= self.max_txs or len(queue) >= self.max_per_sender:
            raise MempoolFull(f"mempool full ({len(self._hashes)} txs); retry after a block")
        expected = self.next_nonce(tx.sender)
        if expected < tx.nonce <= expected + MAX_NONCE_GAP:
            # Gossip can deliver a sender's n+1 before its n: hold it until n arrives.
            held = self._future.setdefault(tx.sender, {})
            if tx.nonce not in held and self._held_count() >= self.max_held:
                if not held:
                    del self._future[tx.sender]
                raise MempoolFull(f"{self.max_held} transactions already wait for an earlier "
                                  "nonce; retry after a block")
            held[tx.nonce] = tx.raw
            return tx.hash
        state, ctx = self._pending_state(tx.sender)
        trial = state.child()
        apply_tx(trial, tx, ctx)  # raises the specific ChainError; the trial is discarded
        trial.merge_into(state)
        self._by_sender.setdefault(tx.sender, []).append(tx)
        self._hashes.add(tx.hash)
        self._promote(tx.sender)
        return tx.hash

    def _held_count(self) -> int:
        return sum(len(h) for h in self._future.values())

    def _promote(self, sender: bytes) -> None:
        """Admit the held transaction of ``sender`` whose turn has come; forget stale ones."""
        held = self._future.get(sender)
        if not held:
            return
        expected = self.next_nonce(sender)
        for stale in [n for n in held if n < expected]:
            del held[stale]
        raw = held.pop(expected, None)
        if not held:
            del self._future[sender]
        if raw is not None:
            # One that no longer applies is dropped; its sender re-gossips a fixed one.
            with contextlib.suppress(ChainError, MempoolFull):
                self.add(raw)  # admits it and, in turn, promotes the next

    def next_nonce(self, account: bytes) -> int:
        """The nonce of ``account``'s next transaction: committed nonce + pending count."""
        committed = self.app.account(account).nonce
        return committed + len(self._by_sender.get(account, []))

    def candidates(self) -> list[bytes]:
        """Pending transactions for a proposal: each sender's in nonce order, senders
        interleaved round-robin so one busy sender cannot crowd out the others."""
        queues = [list(q) for _, q in sorted(self._by_sender.items())]
        out: list[bytes] = []
        depth = 0
        while queues:
            queues = [q for q in queues if len(q) > depth]
            out.extend(q[depth].raw for q in queues)
            depth += 1
        return out

    def on_commit(self, included: Iterable[bytes]) -> list[bytes]:
        """Forget the transactions a committed block included and re-check the rest.

        Returns the hashes of pending transactions dropped because they no longer apply.
        """
        done = set(included)
        dropped: list[bytes] = []
        pending = self._by_sender
        self._by_sender, self._hashes = {}, set()
        self._overlays.clear()
        for sender in sorted(pending):
            for tx in pending[sender]:
                if tx.hash in done:
                    continue
                try:
                    self.add(tx.raw)
                except (ChainError, MempoolFull):
                    dropped.append(tx.hash)
        for sender in sorted(self._future):
            self._promote(sender)  # a committed nonce may be the gap a held tx waited for
        return dropped
