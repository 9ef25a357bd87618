"""What the provider node and tools need from "the chain", whichever node runs it.

:class:`ChainAccess` is implemented by :class:`storaged.chain.node.ChainNode` (a full node in a
BFT network over libp2p) and by :class:`storaged.chain.local.LocalChain` (one validator, no
network: node-logic tests and single-machine tools).  Code above the chain (market, sealing,
proving, API) depends on this protocol only, so it runs unchanged on either.

:class:`TxSender` signs and submits a node's own transactions with correct nonces, including
several in flight at once (the mempool orders a sender's pending txs by nonce).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import nacl.signing
import trio

from storaged.chain.app import Head
from storaged.chain.tx import sign_tx
from storaged.errors import PeerUnavailable

if TYPE_CHECKING:
    from storaged.chain.view import ChainView


class NotCommitted(PeerUnavailable):
    """A transaction or height was not committed within the deadline."""


class ChainAccess(Protocol):
    """A running chain node as seen by the code that uses it."""

    chain_id: str

    def head(self) -> Head:
        """The last committed block."""
        ...

    def view(self) -> ChainView:
        """Read-only access to the committed state."""
        ...

    def next_nonce(self, account: bytes) -> int:
        """The nonce ``account``'s next transaction must carry (committed + pending)."""
        ...

    async def submit(self, raw_tx: bytes) -> bytes:
        """Check ``raw_tx`` against the committed state, queue and broadcast it; return its hash.

        Raises:
            ChainError: the specific rule the transaction breaks (nothing is queued).
        """
        ...

    async def wait_receipt(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        """The receipt (with ``"height"``) once the transaction is committed.

        Raises:
            NotCommitted: not committed within ``timeout`` seconds.
        """
        ...

    async def wait_height(self, height: int, timeout: float) -> Head:
        """Return once a block at ``height`` or above is committed.

        Raises:
            NotCommitted: not reached within ``timeout`` seconds.
        """
        ...


class TxSender:
    """Signs transactions of one key and submits them through a :class:`ChainAccess`.

    A lock serialises nonce assignment and submission, so concurrent tasks of one node never
    reuse a nonce.
    """

    def __init__(self, chain: ChainAccess, key: nacl.signing.SigningKey, *, fee: int = 1) -> None:
        self.chain = chain
        self.key = key
        self.fee = fee
        self.public_key = bytes(key.verify_key)
        self._lock = trio.Lock()

    async def send(self, kind: str, body: dict[str, Any]) -> bytes:
        """Sign and submit one transaction; return its hash (not yet committed).

        Raises:
            ChainError: the chain refused it at admission (a specific rule).
        """
        async with self._lock:
            nonce = self.chain.next_nonce(self.public_key)
            raw = sign_tx(self.key, self.chain.chain_id, kind, nonce, self.fee, body)
            return await self.chain.submit(raw)

    async def send_and_wait(
        self, kind: str, body: dict[str, Any], *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Submit one transaction and return its receipt once committed.

        Raises:
            ChainError: refused at admission.
            NotCommitted: not committed within ``timeout`` seconds.
        """
        tx_hash = await self.send(kind, body)
        return await self.chain.wait_receipt(tx_hash, timeout)
