"""End to end: a corrupted replica is found, declared faulty on chain and recovered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SEGMENT, Net, same_file, write_random


def _wait(what: str, timeout: float, probe: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)  # API polling interval; the deadline above bounds the wait


def _chain_deal(devnet: Net, deal_id: int) -> dict[str, Any] | None:
    """The deal record as the chain has it, read (and verified) by a light client."""
    import trio

    from storaged import config
    from storaged.client.light import open_light_node

    async def read() -> dict[str, Any] | None:
        home = devnet.net.client
        async with open_light_node(home, config.load(home, env={})) as light:
            return await light.need_chain().deal(deal_id)

    return trio.run(read)


def _chain_params(devnet: Net) -> Any:
    from storaged.chain.genesis import GENESIS_FILE, load_genesis

    return load_genesis(devnet.net.client / GENESIS_FILE).params


def test_corrupt_replica_is_declared_faulty_and_recovered(devnet: Net, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f", 2 * SEGMENT + 5)
    cap = devnet.put(src)["capability"]
    home = devnet.providers[0]

    def active_sector() -> dict[str, Any] | None:
        rows = devnet.api(home, "/v1/sectors")["sectors"]
        return next((r for r in rows if r["state"] == "ACTIVE"), None)

    sector = _wait("an ACTIVE sector on p1", 240, active_sector)
    replica = home / "sectors" / f"{sector['sector']}.replica"
    balance_before = devnet.api(home, "/v1/wallet")
    with open(replica, "r+b") as f:  # flip bytes in the middle of the sealed replica
        f.seek(replica.stat().st_size // 2)
        chunk = f.read(4096)
        f.seek(-len(chunk), 1)
        f.write(bytes(b ^ 0xFF for b in chunk))

    def fault_recorded() -> list[Any] | None:
        for row in devnet.api(home, "/v1/proving")["sectors"]:
            if row["sector"] == sector["sector"] and row["faults"]:
                return list(row["faults"])
        return None

    faults = _wait("the fault to be recorded", 240, fault_recorded)
    assert faults, "a fault event with its reason"

    # On chain: the deal's history names the fault, and each faulty period burned exactly
    # fault_fee_bps of the deal's collateral (and withheld that period's payment).
    def burned() -> dict[str, Any] | None:
        rec = _chain_deal(devnet, sector["deal"])
        return rec if rec is not None and rec["burned"] > 0 else None

    rec = _wait("the fault fee to be burned on chain", 240, burned)
    params = _chain_params(devnet)
    collateral = rec["proposal"]["collateral"]
    fee = collateral * params.fault_fee_bps // 10_000
    assert fee > 0, (collateral, params.fault_fee_bps)
    assert rec["burned"] % fee == 0 or rec["burned"] == collateral, (rec, fee)
    assert any("FAULTY" in str(entry) for entry in rec["history"]), rec["history"]
    after = devnet.api(home, "/v1/wallet")
    # The fee comes out of the provider's locked collateral (no other deal moved it here).
    assert after["locked"] <= balance_before["locked"] - rec["burned"], (balance_before, after)
    # Recovery re-seals from the unsealed piece; proving resumes and the file still reads.
    _wait("the sector to be ACTIVE again", 240, lambda: any(
        r["sector"] == sector["sector"] and r["state"] == "ACTIVE"
        for r in devnet.api(home, "/v1/sectors")["sectors"]))
    res = devnet.get(cap, tmp_path / "back")
    assert res.returncode == 0, res.stderr[-2000:]
    assert same_file(src, tmp_path / "back")
