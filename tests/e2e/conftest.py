"""A real devnet for end-to-end tests: ``storaged start`` processes and ``storage`` commands.

The ``devnet`` fixture lays out 6 providers and a client with the devnet code
(:mod:`storaged.node.devnet`), starts one OS process per provider, waits (deadline) until every
API answers and blocks are committed, and kills every child at the end, pass or fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storaged.config import ClientConfig
from storaged.node import devnet as dn

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = 256 * 1024  # small segments keep the multi-segment cases quick
PROVIDERS = 6
K = 4


class Net:
    """The running devnet plus helpers that drive it like a user would."""

    def __init__(self, net: dn.Devnet) -> None:
        self.net = net

    @property
    def providers(self) -> list[Path]:
        return self.net.providers

    def storage(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run ``storage ARGS`` as the devnet client (a real process); never raises on a
        non-zero exit (the test looks at it)."""
        return subprocess.run([sys.executable, "-m", "cli.storage_cmd", *args], cwd=ROOT,
                              env=self.net.client_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def put(self, path: Path, timeout: float = 180.0) -> dict[str, Any]:
        """``storage put --json PATH``; returns its JSON answer (fails the test otherwise)."""
        res = self.storage("put", "--json", str(path), timeout=timeout)
        assert res.returncode == 0, f"put failed ({res.returncode}): {res.stderr[-2000:]}"
        answer: dict[str, Any] = json.loads(res.stdout)
        return answer

    def get(self, cap: str, out: Path, timeout: float = 180.0,
            ) -> subprocess.CompletedProcess[str]:
        return self.storage("get", "--json", cap, "-o", str(out), timeout=timeout)

    def kill(self, home: Path) -> None:
        """SIGKILL the provider of ``home`` (by PID) and reap it."""
        dn.kill(self.net, home)

    def restart(self, home: Path, timeout: float = 120.0) -> None:
        dn.start_provider(self.net, home)
        dn.wait_ready(self.net, timeout, homes=[home])

    def api(self, home: Path, path: str) -> Any:
        from storaged.api import client

        return client.request(home, "GET", path, timeout=10)


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Net]:
    net = dn.setup(tmp_path / "devnet", PROVIDERS,
                   client=ClientConfig(k=K, n=PROVIDERS, segment_size=SEGMENT,
                                       candidates_extra=0))
    try:
        dn.start(net)
        dn.wait_ready(net, timeout=120)
        yield Net(net)
    finally:
        dn.stop(net, timeout=15)
        leftover = [p.pid for p in net.procs.values() if p.poll() is None]
        assert not leftover, f"provider processes still running: {leftover}"


def wait_for(what: str, timeout: float, probe: Any) -> Any:
    """Poll ``probe()`` until it returns something truthy (returned) or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)  # API polling interval; the deadline above bounds the wait


def chain_deal(devnet: Net, deal_id: int) -> dict[str, Any] | None:
    """The deal record as the chain has it, read (and verified) by a light client."""
    import trio

    from storaged import config
    from storaged.client.light import open_light_node

    async def read() -> dict[str, Any] | None:
        home = devnet.net.client
        async with open_light_node(home, config.load(home, env={})) as light:
            return await light.need_chain().deal(deal_id)

    return trio.run(read)


def write_random(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes (written in 1 MiB chunks)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


def same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
