"""ChainView: read-only access to the committed chain state of a KV.

The provider node (sealer, prover, market) and the API read the chain only through this
class; every method reads the committed state (never a block being built), so what it
returns is what the last certified block says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proofs.profiles import Profile
from storaged.chain import accounts, deals, encoding, providers, sectors
from storaged.chain.accounts import Account, Params
from storaged.chain.app import HEAD_FIELDS, Head, read_receipt
from storaged.chain.errors import StateCorrupt
from storaged.chain.providers import Provider
from storaged.chain.state import StateOverlay
from storaged.errors import NotFound
from storaged.store import schema
from storaged.store.kv import KV

_LIVE = (sectors.ACTIVE, sectors.FAULTY)


@dataclass(frozen=True)
class PostDue:
    """One open proving period of a sector: prove ``challenges`` at a height in open..close."""

    sector: int
    deal: int
    period: int
    open: int
    close: int
    challenges: list[int]


class ChainView:
    """Read-only queries over the committed chain state in ``kv``."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv

    def _state(self) -> StateOverlay:
        return StateOverlay(self._kv)

    def head(self) -> Head:
        """The last committed block. Raises StateCorrupt without genesis."""
        raw = self._kv.get(schema.CHAIN_HEAD)
        if raw is None:
            raise StateCorrupt("chain store has no head (run genesis first)")
        return Head(**encoding.require_map(encoding.decode(raw), HEAD_FIELDS, "head"))

    def params(self) -> Params:
        """Chain parameters in force. Raises StateCorrupt if missing."""
        return accounts.load_params(self._state())

    def profile(self) -> Profile:
        """The proof profile (layers, challenge counts) the parameters select."""
        return sectors.proof_profile(self.params())

    def account(self, pk: bytes) -> Account:
        """The account of ``pk`` (empty if never funded)."""
        return accounts.load_account(self._state(), pk)

    def provider(self, pk: bytes) -> Provider | None:
        """The provider registered under ``pk``, if any."""
        return providers.load_provider(self._state(), pk)

    def providers(self) -> list[tuple[bytes, Provider]]:
        """Every registered provider, sorted by key."""
        state = self._state()
        out = []
        for key, _ in state.scan(schema.STATE_PROVIDER):
            pk = key[len(schema.STATE_PROVIDER):]
            found = providers.load_provider(state, pk)
            if found is not None:
                out.append((pk, found))
        return out

    def deal(self, deal_id: int) -> dict[str, Any] | None:
        """The deal record (proposal, state, history, sector, settled, burned), if any."""
        return deals.load_deal(self._state(), deal_id)

    def deals_of(self, pk: bytes) -> list[tuple[int, dict[str, Any]]]:
        """Every deal with ``pk`` as client or provider, by id.

        Raises:
            StateCorrupt: the party index names a missing deal.
        """
        state = self._state()
        out = []
        for key, _ in state.scan(schema.STATE_DEAL_PARTY + pk):
            deal_id = int.from_bytes(key[-8:], "big")
            deal = deals.load_deal(state, deal_id)
            if deal is None:
                raise StateCorrupt(f"party index names missing deal {deal_id}")
            out.append((deal_id, deal))
        return out

    def sector(self, provider: bytes, number: int) -> dict[str, Any] | None:
        """The sector record (see :mod:`storaged.chain.sectors`), if any."""
        return sectors.load_sector(self._state(), provider, number)

    def sectors_of(self, provider: bytes) -> list[tuple[int, dict[str, Any]]]:
        """Every sector of ``provider``, by number."""
        state = self._state()
        out = []
        for key, _ in state.scan(schema.STATE_SECTOR + provider):
            number = int.from_bytes(key[-8:], "big")
            rec = sectors.load_sector(state, provider, number)
            if rec is not None:
                out.append((number, rec))
        return out

    def ticket(self, height: int) -> bytes:
        """The ticket randomness of a committed ``height``.

        Raises:
            StateCorrupt: ``height`` is not committed.
        """
        return sectors.ticket(self._state(), height)

    def porep_seed(self, provider: bytes, number: int) -> bytes | None:
        """The PoRep seed of a precommitted sector; None until its seed height is committed."""
        state = self._state()
        rec = sectors.load_sector(state, provider, number)
        if rec is None or self.head().height < rec["seed_height"]:
            return None
        return sectors.porep_seed(state, provider, number, rec["seed_height"])

    def replica_id(self, provider: bytes, number: int) -> bytes:
        """The replica id a precommitted sector is sealed under.

        Raises:
            NotFound: no such sector.
        """
        state = self._state()
        rec = sectors.load_sector(state, provider, number)
        if rec is None:
            raise NotFound(f"no sector {number} of this provider on chain")
        return sectors.replica_id_of(state, provider, number, rec)

    def post_due(self, provider: bytes, height: int) -> list[PostDue]:
        """Periods open at ``height`` and not yet proven, for ACTIVE and FAULTY sectors.

        A PoSt included in the block at ``height`` counts for these periods.  The challenge
        randomness is drawn at the period's first height - 1, so ``height`` may be at most
        head + 1.
        """
        state = self._state()
        params = accounts.load_params(state)
        out = []
        for number, rec in self.sectors_of(provider):
            if rec["state"] not in _LIVE:
                continue
            deal = deals.load_deal(state, rec["deal"])
            if deal is None or deal["state"] != deals.ACTIVE:
                continue
            p = deal["proposal"]
            if not p["start"] <= height < p["end"]:
                continue
            length = rec["period_len"]
            period = sectors.period_at(p, height, length)
            if period <= rec["proven"]:
                continue
            first, last = sectors.period_bounds(p, period, length)
            challenges = sectors.post_challenges(state, p, provider, number, period, params,
                                                 length)
            out.append(PostDue(number, rec["deal"], period, first, last, challenges))
        return out

    def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        """The committed receipt of ``tx_hash`` with its height and index, or None."""
        return read_receipt(self._kv, tx_hash)
