"""Fuzz the bulk-transfer protocols against a live host: random and mutated frame sequences.

Every stream carries a batch of frames: usually a plausible opening (a valid offer or get),
then frames drawn at random (data of odd sizes, ends with wrong digests, credits, requests in
the wrong direction) and byte-level mutations.  The host must drop each bad stream quickly
(never hang), and afterwards still serve a good peer.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import blake3
import pytest
import trio

from storaged.net import fetch as fetch_proto
from storaged.net import push as push_proto
from storaged.net.errors import DeadlineExceeded
from storaged.net.files import FileStore
from storaged.net.host import Node
from storaged.net.testing import cluster
from storaged.net.transfer import Transfers
from storaged.net.wire import MessageTable
from tests.net.test_rpc import mutate, random_cbor

FRAMES_PER_STREAM = 10
STREAMS = 1000  # x 10 frames = 10,000 frames per protocol


def random_frame(rng: random.Random, table: MessageTable) -> bytes:
    mtype = rng.choice(list(table.by_name.values()))
    if mtype.codec.value == "raw":
        body = rng.randbytes(rng.choice([0, 1, 100, 4096, 300_000]))
        return table.encode(mtype.name, body) if body else mtype_raw_empty(mtype.code)
    fields = {
        "key": rng.randbytes(rng.choice([0, 8, 64, 65])),
        "size": rng.choice([0, 1, 2**20, 2**63, -1]),
        "offset": rng.choice([0, 5, 2**40, -3]),
        "length": rng.choice([None, 0, 10, 2**30]),
        "credit": rng.choice([0, 1, 2**20, 2**40]),
        "blake3": rng.randbytes(rng.choice([31, 32])),
        "code": "x",
        "message": "y",
    }
    body = {k: v for k, v in fields.items() if rng.random() < 0.7}
    if rng.random() < 0.2:
        body[rng.choice(list(fields))] = random_cbor(rng)
    try:
        return table.encode(mtype.name, body)
    except Exception:  # the body broke our own encoder's rules: send it as garbage instead
        return mutate(rng, table.encode(mtype.name, {}), mtype.max_body)


def mtype_raw_empty(code: int) -> bytes:
    return bytes([0, 0, 0, 2, 1, code])


def batch(rng: random.Random, table: MessageTable, opening: bytes) -> bytes:
    frames = [opening] if rng.random() < 0.7 else []
    while len(frames) < FRAMES_PER_STREAM:
        frame = random_frame(rng, table)
        if rng.random() < 0.3:
            frame = mutate(rng, frame, 1 << 20)
        frames.append(frame)
    return b"".join(frames)


async def fuzz_streams(client: Node, server: str, protocol: str, payloads: list[bytes]) -> None:
    limiter = trio.CapacityLimiter(32)

    async def one(payload: bytes) -> None:
        async with limiter:
            try:
                s = await client.open_stream(server, protocol, timeout=10)
                await s.write(payload, timeout=10)
                await s.close()
                while await s.read(1 << 20, timeout=10):
                    pass
            except DeadlineExceeded:
                raise AssertionError("host hung on a fuzzed stream") from None
            except Exception:
                pass  # a reset is the expected answer to garbage

    async with trio.open_nursery() as nursery:
        for payload in payloads:
            nursery.start_soon(one, payload)


@pytest.mark.slow
async def test_fuzz_push_and_fetch_host_survives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="storaged.net.host")
    store = FileStore(tmp_path / "server")
    good = bytes(range(256)) * 4096  # 1 MiB
    store.path(b"good").write_bytes(good)
    rng = random.Random(44)

    def setup(node: Node) -> None:
        t = Transfers(node, stall_timeout=5)
        t.serve_push(store)
        t.serve_fetch(store)

    async with cluster(2, setup=setup) as (a, b):
        with trio.fail_after(150):
            offer = push_proto.TABLE.encode(
                "offer", {"key": b"fz", "size": 1 << 20, "blake3": b"\1" * 32}
            )
            pushes = [batch(rng, push_proto.TABLE, offer) for _ in range(STREAMS)]
            await fuzz_streams(a, b.peer_id, push_proto.PROTOCOL, pushes)
            get = fetch_proto.TABLE.encode(
                "get", {"key": b"good", "offset": 0, "length": None, "credit": 1 << 20}
            )
            gets = [batch(rng, fetch_proto.TABLE, get) for _ in range(STREAMS)]
            await fuzz_streams(a, b.peer_id, fetch_proto.PROTOCOL, gets)

            # the host still serves a good peer, both ways
            client = Transfers(a)
            hasher = blake3.blake3()

            async def consume(offset: int, data: bytes) -> None:
                hasher.update(data)

            await client.fetch(b.peer_id, b"good", consume)
            assert hasher.digest() == blake3.blake3(good).digest()
            mine = FileStore(tmp_path / "client")
            mine.path(b"up").write_bytes(good)
            await client.push(b.peer_id, b"up", mine)
            assert store.path(b"up").read_bytes() == good
        # The garbage was parsed and refused as such, not merely dropped by libp2p.
        violations = [r for r in caplog.records if "ProtocolViolation" in r.getMessage()]
        assert len(violations) > STREAMS
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
