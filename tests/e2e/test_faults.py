"""End to end: a corrupted replica is found, declared faulty on chain and recovered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import SEGMENT, Net, chain_deal, same_file, wait_for, write_random


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

    sector = wait_for("an ACTIVE sector on p1", 240, active_sector)
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

    faults = wait_for("the fault to be recorded", 240, fault_recorded)
    assert faults, "a fault event with its reason"

    # On chain: the deal's history names the fault, and each faulty period burned exactly
    # fault_fee_bps of the deal's collateral (and withheld that period's payment).
    def burned() -> dict[str, Any] | None:
        rec = chain_deal(devnet, sector["deal"])
        return rec if rec is not None and rec["burned"] > 0 else None

    rec = wait_for("the fault fee to be burned on chain", 240, burned)
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
    wait_for("the sector to be ACTIVE again", 240, lambda: any(
        r["sector"] == sector["sector"] and r["state"] == "ACTIVE"
        for r in devnet.api(home, "/v1/sectors")["sectors"]))
    res = devnet.get(cap, tmp_path / "back")
    assert res.returncode == 0, res.stderr[-2000:]
    assert same_file(src, tmp_path / "back")
