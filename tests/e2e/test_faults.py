"""End to end: a corrupted replica is found, declared faulty on chain and recovered.

Needs the chain's sector rules (``storaged.chain.view``, contracts section 1); until they are
built the provider takes deals but seals nothing, so there is no replica to corrupt.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SEGMENT, Net, same_file, write_random

pytestmark = pytest.mark.skipif(importlib.util.find_spec("storaged.chain.view") is None,
                                reason="the chain's sector rules (storaged.chain.view) are "
                                       "not built yet: nothing is sealed")


def _wait(what: str, timeout: float, probe: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)  # API polling interval; the deadline above bounds the wait


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
    # Declaring the fault costs the provider (fee / withheld payment): its funds went down.
    after = devnet.api(home, "/v1/wallet")
    assert (after["balance"] + after["escrow"] + after["locked"]
            < balance_before["balance"] + balance_before["escrow"] + balance_before["locked"])
    # Recovery re-seals from the unsealed piece; proving resumes and the file still reads.
    _wait("the sector to be ACTIVE again", 240, lambda: any(
        r["sector"] == sector["sector"] and r["state"] == "ACTIVE"
        for r in devnet.api(home, "/v1/sectors")["sectors"]))
    res = devnet.get(cap, tmp_path / "back")
    assert res.returncode == 0, res.stderr[-2000:]
    assert same_file(src, tmp_path / "back")
