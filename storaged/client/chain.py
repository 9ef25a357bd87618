"""What the client needs from the chain, over a verifying light client or a local chain.

:class:`ClientChain` is async throughout because the usual implementation,
:class:`NetworkChain`, asks full nodes over ``/storaged/query/1.0.0`` through
:class:`~storaged.chain.client.ChainClient` (every read verified against a commit certificate
and a Merkle proof).  :class:`LocalChainAdapter` serves the same calls from an in-process
:class:`~storaged.chain.local.LocalChain` (single-machine tools and tests).
"""

from __future__ import annotations

from typing import Any, Protocol

import nacl.signing
import trio

from storaged.chain import deals as chain_deals
from storaged.chain import providers as chain_providers
from storaged.chain.accounts import Account, load_account
from storaged.chain.client import ChainClient
from storaged.chain.local import LocalChain
from storaged.chain.providers import Provider
from storaged.chain.state import StateOverlay
from storaged.chain.tx import sign_tx
from storaged.store import schema


class ClientChain(Protocol):
    """Chain reads and transactions of the client."""

    chain_id: str

    async def height(self) -> int:
        """Height of the last committed block."""
        ...

    async def account(self, public_key: bytes) -> Account:
        """The committed account (all zero if never funded)."""
        ...

    async def providers(self) -> dict[bytes, Provider]:
        """Every registered provider by public key."""
        ...

    async def deal(self, deal_id: int) -> dict[str, Any] | None:
        """The on-chain deal record (proposal, state, history)."""
        ...

    async def deals_of(self, public_key: bytes) -> dict[int, dict[str, Any]]:
        """Deals where ``public_key`` is client or provider."""
        ...

    async def wait_tx(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        """The receipt (with ``"height"``) once the chain node we read from committed it.

        Raises:
            NotCommitted: not committed within ``timeout``.
        """
        ...

    async def send_and_wait(self, key: nacl.signing.SigningKey, kind: str, body: dict[str, Any],
                            timeout: float) -> dict[str, Any]:
        """Sign, submit and wait for the receipt of one transaction.

        Raises:
            ChainError: refused at admission (the specific rule).
            NotCommitted: not committed within ``timeout``.
        """
        ...


class NetworkChain:
    """:class:`ClientChain` over a verifying :class:`ChainClient`."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self.chain_id = client.chain_id
        self._lock = trio.Lock()

    async def height(self) -> int:
        return (await self.client.head()).height

    async def account(self, public_key: bytes) -> Account:
        return await self.client.account(public_key)

    async def providers(self) -> dict[bytes, Provider]:
        return await self.client.providers()

    async def deal(self, deal_id: int) -> dict[str, Any] | None:
        return await self.client.deal(deal_id)

    async def deals_of(self, public_key: bytes) -> dict[int, dict[str, Any]]:
        return await self.client.deals_of(public_key)

    async def wait_tx(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        return await self.client.wait_receipt(tx_hash, timeout)

    async def send_and_wait(self, key: nacl.signing.SigningKey, kind: str, body: dict[str, Any],
                            timeout: float) -> dict[str, Any]:
        sender = bytes(key.verify_key)
        async with self._lock:  # one nonce at a time for this key
            nonce = await self.client.load_nonce(sender)
            raw = sign_tx(key, self.chain_id, kind, nonce, 1, body)
            tx_hash = await self.client.submit(raw)
        return await self.client.wait_receipt(tx_hash, timeout)


class LocalChainAdapter:
    """:class:`ClientChain` over an in-process :class:`LocalChain` (same state, no network)."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.chain_id = chain.chain_id
        self._lock = trio.Lock()

    def _state(self) -> StateOverlay:
        return StateOverlay(self.chain.app.kv)

    async def height(self) -> int:
        return self.chain.head().height

    async def account(self, public_key: bytes) -> Account:
        return load_account(self._state(), public_key)

    async def providers(self) -> dict[bytes, Provider]:
        state = self._state()
        out: dict[bytes, Provider] = {}
        for k, _ in state.scan(schema.STATE_PROVIDER):
            pk = k[len(schema.STATE_PROVIDER):]
            p = chain_providers.load_provider(state, pk)
            if p is not None:
                out[pk] = p
        return out

    async def deal(self, deal_id: int) -> dict[str, Any] | None:
        return chain_deals.load_deal(self._state(), deal_id)

    async def deals_of(self, public_key: bytes) -> dict[int, dict[str, Any]]:
        state = self._state()
        out: dict[int, dict[str, Any]] = {}
        for k, _ in state.scan(schema.STATE_DEAL):
            deal_id = int.from_bytes(k[1:9], "big")
            d = chain_deals.load_deal(state, deal_id)
            if d is not None and public_key in (d["proposal"]["client"],
                                                d["proposal"]["provider"]):
                out[deal_id] = d
        return out

    async def wait_tx(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        return await self.chain.wait_receipt(tx_hash, timeout)

    async def send_and_wait(self, key: nacl.signing.SigningKey, kind: str, body: dict[str, Any],
                            timeout: float) -> dict[str, Any]:
        async with self._lock:
            nonce = self.chain.next_nonce(bytes(key.verify_key))
            tx_hash = await self.chain.submit(sign_tx(key, self.chain_id, kind, nonce, 1, body))
        return await self.chain.wait_receipt(tx_hash, timeout)
