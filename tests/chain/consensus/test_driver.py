"""The trio shell: four drivers over lossy in-memory channels commit heights on a virtual clock."""

from __future__ import annotations

import random

import trio
import trio.testing
from nacl.signing import SigningKey

from storaged.chain.consensus.certificate import Certificate
from storaged.chain.consensus.driver import Driver
from storaged.chain.consensus.machine import Machine, Timeouts
from storaged.chain.consensus.sync import Commit
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.consensus.wal import Signer
from storaged.store.kv import MemoryKV
from tests.chain.consensus.sim import SimApp

CHAIN = "driver-chain"


async def test_four_drivers_commit_despite_drops(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(21)
    keys = [SigningKey(bytes([i + 7]) * 32) for i in range(4)]
    valset = ValidatorSet.of((bytes(k.verify_key), 1) for k in keys)
    channels = [trio.open_memory_channel[bytes | Commit](1000) for _ in keys]
    apps = [SimApp(i, valset) for i in range(4)]
    done = trio.Event()

    def make_broadcast(i: int):  # type: ignore[no-untyped-def]
        async def broadcast(data: bytes) -> None:
            for j, (send, _) in enumerate(channels):
                if j != i and rng.random() >= 0.3:  # 30% of messages lost: rebroadcast heals
                    send.send_nowait(data)
            if all(len(a.committed) >= 5 for a in apps):
                done.set()
        return broadcast

    synced: list[int] = []

    def make_on_behind(i: int):  # type: ignore[no-untyped-def]
        def on_behind(height: int) -> None:  # stands in for the sync protocol
            synced.append(i)
            source = next((a for a in apps if height in a.committed), None)
            if source is not None:
                channels[i][0].send_nowait(
                    Commit(height, source.committed[height], source.certs[height]))
        return on_behind

    drivers = [Driver(Machine(apps[i], Signer(keys[i], CHAIN, MemoryKV()), CHAIN,
                              Timeouts(500, 300, 300, 100)), apps[i], make_broadcast(i),
                      rebroadcast_s=0.5, on_behind=make_on_behind(i)) for i in range(4)]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for i, d in enumerate(drivers):
                await nursery.start(d.run, channels[i][1], 1)
            await done.wait()
            nursery.cancel_scope.cancel()
    for h in range(1, 6):
        assert len({a.committed[h] for a in apps}) == 1
    assert all(d.rejected == 0 for d in drivers)


async def test_driver_counts_garbage_and_keeps_going(
        autojump_clock: trio.testing.MockClock) -> None:
    key = SigningKey(b"\x05" * 32)
    valset = ValidatorSet.of([(bytes(key.verify_key), 1)])
    three = trio.Event()

    class App(SimApp):
        def commit(self, height: int, value: bytes, certificate: Certificate) -> None:
            super().commit(height, value, certificate)
            if len(self.committed) >= 3:  # a single validator decides alone
                three.set()

    app = App(0, valset)
    sent: list[bytes] = []

    async def broadcast(data: bytes) -> None:
        sent.append(data)

    driver = Driver(Machine(app, Signer(key, CHAIN, MemoryKV()), CHAIN), app, broadcast)
    send, recv = trio.open_memory_channel[bytes | Commit](10)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run, recv, 1)
            await send.send(b"\xff garbage")
            await three.wait()
            nursery.cancel_scope.cancel()
    assert driver.rejected == 1
    assert sent
