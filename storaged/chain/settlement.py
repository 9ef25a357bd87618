"""The ``Settlement`` interface: what the provider market and the client need from the chain.

Deal logic (``storaged.node``, ``cli``) talks only to this interface, never to ``ChainApp`` or
state keys, so the same market code can later settle on another chain (an EVM contract
reached through web3) by adding a second implementation.  Writes are *built* here as signed
transaction bytes; submitting them (gossip, RPC) is the transport's job, and inclusion is
observed through the read methods.  :class:`EmbeddedSettlement` is the implementation over the
embedded chain.
"""

from __future__ import annotations

from typing import Any, Protocol

import nacl.signing

from storaged.chain import deals, randomness
from storaged.chain.accounts import Account
from storaged.chain.app import ChainApp
from storaged.chain.state import StateOverlay
from storaged.chain.tx import sign_tx


class Settlement(Protocol):
    """Where deals are paid, locked, refunded and slashed."""

    def height(self) -> int:
        """Height (epoch) of the last final block."""
        ...

    def account(self, party: bytes) -> Account:
        """Balance, escrow (free and locked) and next nonce of ``party``."""
        ...

    def deal(self, deal_id: int) -> dict[str, Any] | None:
        """The deal record (proposal, state, history), if published."""
        ...

    def randomness(self, tag: bytes, height: int, entropy: bytes) -> bytes:
        """Chain randomness drawn from the beacon at ``height`` (PoRep seeds, PoSt challenges)."""
        ...

    def deposit_tx(self, key: nacl.signing.SigningKey, amount: int, fee: int) -> bytes:
        """A signed escrow deposit from ``key``'s balance."""
        ...

    def publish_deal_tx(
        self, provider_key: nacl.signing.SigningKey, proposal: dict[str, Any],
        client_sig: bytes, provider_sig: bytes, fee: int,
    ) -> bytes:
        """A signed publish_deal carrying both parties' proposal signatures."""
        ...


class EmbeddedSettlement:
    """:class:`Settlement` over the embedded chain's committed state."""

    def __init__(self, app: ChainApp) -> None:
        self._app = app

    def height(self) -> int:
        return self._app.head().height

    def account(self, party: bytes) -> Account:
        return self._app.account(party)

    def deal(self, deal_id: int) -> dict[str, Any] | None:
        return deals.load_deal(StateOverlay(self._app.kv), deal_id)

    def randomness(self, tag: bytes, height: int, entropy: bytes) -> bytes:
        return randomness.randomness(StateOverlay(self._app.kv), tag, height, entropy)

    def _nonce(self, key: nacl.signing.SigningKey) -> int:
        return self._app.account(bytes(key.verify_key)).nonce

    def deposit_tx(self, key: nacl.signing.SigningKey, amount: int, fee: int) -> bytes:
        return sign_tx(key, self._app.chain_id, "escrow_deposit", self._nonce(key), fee,
                       {"amount": amount})

    def publish_deal_tx(
        self, provider_key: nacl.signing.SigningKey, proposal: dict[str, Any],
        client_sig: bytes, provider_sig: bytes, fee: int,
    ) -> bytes:
        body = {"proposal": proposal, "client_sig": client_sig, "provider_sig": provider_sig}
        return sign_tx(provider_key, self._app.chain_id, "publish_deal",
                       self._nonce(provider_key), fee, body)
