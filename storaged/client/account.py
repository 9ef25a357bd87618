"""``storage status``, ``deals`` and ``wallet``: the client's view of its deals and funds.

Every function returns JSON-able dicts (the CLI prints them as rich tables or ``--json``).
"""

from __future__ import annotations

from typing import Any

import trio

from storaged.client.get import fetch_manifest
from storaged.client.light import LightNode
from storaged.data.capability import Capability
from storaged.errors import RemoteError, UserError
from storaged.net.rpc import DEAL

STATUS_TIMEOUT = 10.0


def _last(history: list[Any]) -> tuple[str, int | None]:
    if not history:
        return "", None
    state_reason_height = history[-1]
    return str(state_reason_height[1]), int(state_reason_height[2])


async def file_status(light: LightNode, cap: Capability) -> dict[str, Any]:
    """Per slot of the file: the deal's on-chain state and reason, and the provider's own view
    (bytes received, local state; ``error`` if it did not answer).

    Raises:
        NotFound / PeerUnavailable: no provider gave the manifest.  ConfigError: no chain.
    """
    manifest = await fetch_manifest(light, cap.cid)
    chain = light.need_chain()
    deals = manifest.deals or ()
    providers = manifest.providers or ()
    rows: list[dict[str, Any]] = [{} for _ in deals]

    async def one(slot: int, deal_id: int, peer: str) -> None:
        record = await chain.deal(deal_id)
        reason, height = _last(record["history"]) if record else ("not on chain", None)
        row: dict[str, Any] = {"slot": slot, "deal": deal_id, "provider": peer,
                               "state": record["state"] if record else "UNKNOWN",
                               "reason": reason, "since_height": height,
                               "start": record["proposal"]["start"] if record else None,
                               "end": record["proposal"]["end"] if record else None}
        try:  # a read: a stream that breaks off is retried once, within the same deadline
            with trio.fail_after(STATUS_TIMEOUT + 2):
                local = await light.rpc.request(peer, DEAL, {"op": "deal_status",
                                                             "deal": deal_id},
                                                timeout=STATUS_TIMEOUT, attempts=2)
            row["provider_state"] = local.get("state")
            row["received"] = local.get("received")
            row["last_proof"] = local.get("last_proof")
        except (RemoteError, trio.TooSlowError) as exc:
            row["provider_state"] = None
            row["error"] = str(exc) or type(exc).__name__
        rows[slot] = row

    async with trio.open_nursery() as nursery:
        for slot, (deal_id, peer) in enumerate(zip(deals, providers, strict=False)):
            nursery.start_soon(one, slot, deal_id, peer)
    return {"cid": cap.cid, "size": manifest.size, "k": manifest.k, "n": manifest.n,
            "height": await chain.height(), "deals": rows}


async def my_deals(light: LightNode) -> list[dict[str, Any]]:
    """Every deal on chain where this home's account is the client."""
    chain = light.need_chain()
    peers = {pk: p.peer_id for pk, p in (await chain.providers()).items()}
    out = []
    for deal_id, d in sorted((await chain.deals_of(light.public_key)).items()):
        p = d["proposal"]
        if p["client"] != light.public_key:
            continue
        reason, height = _last(d["history"])
        out.append({"deal": deal_id, "state": d["state"], "reason": reason,
                    "since_height": height, "provider": peers.get(p["provider"],
                                                                  p["provider"].hex()),
                    "size": p["size"], "price": p["price"], "start": p["start"],
                    "end": p["end"], "piece": p["piece"].hex()})
    return out


async def wallet(light: LightNode) -> dict[str, Any]:
    """Balance, free escrow and locked funds of this home's account."""
    account = await light.need_chain().account(light.public_key)
    return {"account": light.public_key.hex(), "balance": account.balance,
            "escrow": account.escrow, "locked": account.locked, "nonce": account.nonce}


async def move_escrow(light: LightNode, kind: str, amount: int) -> dict[str, Any]:
    """``escrow_deposit`` (balance -> escrow) or ``escrow_withdraw`` (free escrow -> balance);
    return the wallet after it is committed.

    Raises:
        UserError: amount not positive.  ChainError: refused (e.g. InsufficientFunds).
        NotCommitted: not committed in 60 s.
    """
    if amount <= 0:
        raise UserError(f"amount must be positive, got {amount}")
    await light.need_chain().send_and_wait(light.key, kind, {"amount": amount}, timeout=60)
    return await wallet(light)
