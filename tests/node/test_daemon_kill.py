"""A provider process killed (SIGKILL) mid-push: after a restart nothing stored is lost, the
push resumes from the durable length, and the piece is checked and handed on."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import blake3
import nacl.signing
import pytest
import trio

from storaged import config
from storaged.chain.deals import sign_proposal
from storaged.chain.genesis import GENESIS_FILE, Genesis, write_genesis
from storaged.config import ApiConfig, Config, MarketConfig, NodeConfig, StorageConfig
from storaged.data.piece import commitment_of
from storaged.errors import PeerUnavailable
from storaged.net.identity import load_signing_key
from storaged.net.rpc import DEAL, Rpc
from storaged.net.testing import cluster
from storaged.net.transfer import Transfers
from storaged.node.market import deal_collateral, deal_price
from storaged.node.pieces import SYNC_EVERY
from tests.node.market_env import MemorySource, random_bytes

REPO = Path(__file__).resolve().parents[2]
CHAIN = "storaged-kill-test"
CLIENT_SEED = bytes([0x33]) * 32


async def start_provider(home: Path) -> tuple[trio.Process, str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.node.daemon_process", str(home), CLIENT_SEED.hex()],
        cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = b""
    with trio.fail_after(60):
        while not line.endswith(b"\n"):
            data = await proc.stdout.receive_some(1024)
            assert data, "provider process exited before serving"
            line += data
    return proc, line.decode().strip()


async def stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    with trio.CancelScope(shield=True), trio.fail_after(10):
        await proc.wait()
    if proc.stdout is not None:
        await proc.stdout.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class KillingSource(MemorySource):
    """The client's piece; the provider process is SIGKILLed once ``kill_at`` bytes are read."""

    proc: trio.Process | None = None
    kill_at = 0
    killed = False

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        if self.proc is not None and offset >= self.kill_at:
            self.proc.kill()
            self.proc, self.killed = None, True
        return await super().read(key, offset, length)


@pytest.mark.slow
async def test_provider_killed_mid_push_resumes_from_durable_length(tmp_path: Path) -> None:
    home = tmp_path / "provider"
    client_key = nacl.signing.SigningKey(CLIENT_SEED)
    pk = bytes(load_signing_key(home).verify_key)
    write_genesis(home / GENESIS_FILE, Genesis(CHAIN, 1_700_000_000, allocations={
        pk: 10**12, bytes(client_key.verify_key): 10**12}))
    # A fixed port: py-libp2p 0.8.1 re-dials only the first address it knows for a peer, so
    # a provider restarted on another port would be unreachable from this same client.
    port = free_port()
    config.write(home, Config(api=ApiConfig(port=0), node=NodeConfig(chain_id=CHAIN,
                                              listen=(f"/ip4/127.0.0.1/tcp/{port}",)),
                              market=MarketConfig(min_start_delay=5, min_duration=50),
                              storage=StorageConfig(min_free_bytes=0)))
    data = random_bytes(20 << 20)
    digest = blake3.blake3(data).digest()
    comm_d, size = await trio.to_thread.run_sync(commitment_of, data)
    source = KillingSource()
    source.objects[comm_d] = data
    proc, addr = await start_provider(home)
    try:
        async with cluster(1) as (me,):
            with trio.fail_after(90):
                peer = await me.connect(addr)
                ask = await Rpc(me).request(peer, DEAL, {"op": "ask"}, timeout=10)
                start = 10_000  # far ahead of the head: the deal outlives both runs
                proposal = {"piece": comm_d, "size": size, "client": bytes(client_key.verify_key),
                            "provider": pk, "price": deal_price(ask["price"], size),
                            "start": start, "end": start + 100,
                            "collateral": deal_collateral(ask["collateral"], size)}
                deal = (await Rpc(me).request(peer, DEAL, {
                    "op": "propose", "proposal": proposal,
                    "client_sig": sign_proposal(client_key, CHAIN, proposal)},
                    timeout=20))["deal"]
                source.proc, source.kill_at = proc, 19 << 20
                with pytest.raises(PeerUnavailable):
                    await Transfers(me, stall_timeout=5).push(peer, comm_d, source,
                                                              digest=digest, attempts=1)
                assert source.killed  # the provider died mid-push, not after it
                await stop(proc)
                await me.disconnect(peer)
                # Restarted on the same home: the deal is still there, and the push resumes.
                proc, addr = await start_provider(home)
                peer = await me.connect(addr)
                result = await Transfers(me).push(peer, comm_d, source, digest=digest)
                assert result.resumed_from >= SYNC_EVERY
                assert result.resumed_from % SYNC_EVERY == 0
                status = await Rpc(me).request(peer, DEAL, {"op": "deal_status", "deal": deal},
                                               timeout=10)
                assert status["received"] == len(data)
                assert status["state"] in ("received", "sealing") or \
                    status["state"].startswith("sector_")
                got = bytearray()

                async def consume(offset: int, chunk: bytes) -> None:
                    got.extend(chunk)

                await Transfers(me).fetch(peer, comm_d, consume, offset=(20 << 20) - 4096)
                assert bytes(got) == data[-4096:]
    finally:
        await stop(proc)
