"""A one-validator chain without a network: :class:`ChainAccess` for node-logic tests and tools.

It runs the real :class:`ChainApp` (the same blocks, state, proofs and cron as the networked
chain) and commits a block every ``interval`` seconds, signed by its single key.  Blocks carry
an empty commit certificate: finality here is "the only validator committed it", which is
exactly true for a one-validator chain.  The networked node (:mod:`storaged.chain.node`) adds
BFT consensus, gossip and sync around the same app and mempool.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import nacl.signing
import trio

from storaged.chain import block as block_mod
from storaged.chain import encoding
from storaged.chain.access import NotCommitted
from storaged.chain.app import ChainApp, Head
from storaged.chain.mempool import Mempool

if TYPE_CHECKING:
    from storaged.chain.view import ChainView


class LocalChain:
    """A single validator committing blocks on a timer; implements ``ChainAccess``."""

    def __init__(self, app: ChainApp, key: nacl.signing.SigningKey, *,
                 interval: float = 0.2) -> None:
        self.app = app
        self.chain_id = app.chain_id
        self.key = key
        self.interval = interval
        self.mempool = Mempool(app)
        self._committed = trio.Event()

    def head(self) -> Head:
        """The last committed block."""
        return self.app.head()

    def view(self) -> ChainView:
        """Read-only view of the committed state."""
        from storaged.chain.view import ChainView

        return ChainView(self.app.kv)

    def next_nonce(self, account: bytes) -> int:
        """Committed nonce plus this sender's pending transactions."""
        return self.mempool.next_nonce(account)

    async def submit(self, raw_tx: bytes) -> bytes:
        """Admit ``raw_tx`` to the mempool (raises the specific ChainError); return its hash."""
        return self.mempool.add(raw_tx)

    def commit_block(self) -> Head:
        """Propose and commit one block now (used by the timer, and directly by tests).

        Raises:
            ChainError: the block failed validation (a bug: our own proposal).
        """
        head = self.app.head()
        now = max(int(time.time()), head.time)
        raw = self.app.propose(head.height + 1, now, self.key, self.mempool.candidates())
        self.app.commit(raw, b"")
        included = block_mod.decode_block(raw).txs
        self.mempool.on_commit(encoding.digest(tx) for tx in included)
        event, self._committed = self._committed, trio.Event()
        event.set()
        return self.app.head()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Commit a block every ``interval`` seconds until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.interval)  # the block clock, not synchronisation
            self.commit_block()

    async def _until(self, done: Any, timeout: float, what: str) -> Any:
        with trio.move_on_after(timeout):
            while True:
                result = done()
                if result is not None:
                    return result
                await self._committed.wait()
        raise NotCommitted(f"{what} not committed within {timeout:g} s")

    async def wait_receipt(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        """The receipt once ``tx_hash`` is committed.

        Raises:
            NotCommitted: not committed within ``timeout`` (it may have been dropped as stale).
        """
        result: dict[str, Any] = await self._until(
            lambda: self.app.receipt(tx_hash), timeout, f"tx {tx_hash.hex()[:16]}")
        return result

    async def wait_height(self, height: int, timeout: float) -> Head:
        """Return once ``height`` is committed.

        Raises:
            NotCommitted: not reached within ``timeout`` seconds.
        """
        head: Head = await self._until(
            lambda: self.app.head() if self.app.head().height >= height else None,
            timeout, f"height {height}")
        return head
