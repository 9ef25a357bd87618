"""Push and fetch between real hosts: big objects, resume, refusals, killed peers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
import trio

from storaged.errors import IntegrityError, PeerUnavailable, ProtocolViolation, StoragedError
from storaged.net import flow
from storaged.net.errors import RemoteIntegrityFailure, RemoteNotFound
from storaged.net.files import FileStore
from storaged.net.host import Node
from storaged.net.push import PushReceiverSession, PushSenderSession
from storaged.net.rpc import QUERY, Rpc
from storaged.net.testing import cluster
from storaged.net.transfer import Transfers
from tests.net.peer_process import pattern_bytes

REPO = Path(__file__).resolve().parents[2]


def make_object(store: FileStore, key: bytes, size: int) -> bytes:
    """Write ``size`` random bytes as ``key``; return their blake3."""
    hasher = blake3.blake3()
    with open(store.path(key), "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(8 << 20, left))
            hasher.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return hasher.digest()


def file_hash(path: Path) -> bytes:
    return blake3.blake3(path.read_bytes(), max_threads=blake3.blake3.AUTO).digest()


def two_stores(tmp_path: Path) -> tuple[FileStore, FileStore]:
    return FileStore(tmp_path / "a"), FileStore(tmp_path / "b")


@pytest.mark.slow
async def test_push_256_mib_and_fetch_a_range(tmp_path: Path) -> None:
    src, dst = two_stores(tmp_path)
    size = 256 << 20
    digest = make_object(src, b"share-1", size)
    transfers: dict[str, Transfers] = {}

    def setup(node: Node) -> None:
        transfers[node.peer_id] = t = Transfers(node)
        t.serve_push(dst)
        t.serve_fetch(dst)

    async with cluster(2, setup=setup) as (a, b):
        with trio.fail_after(120):
            result = await transfers[a.peer_id].push(b.peer_id, b"share-1", src, digest=digest)
        assert (result.size, result.resumed_from, result.attempts) == (size, 0, 1)
        assert file_hash(dst.path(b"share-1")) == digest

        got = bytearray()

        async def consume(offset: int, data: bytes) -> None:
            assert offset == (100 << 20) + 12345 + len(got)
            got.extend(data)

        with trio.fail_after(30):
            res = await transfers[a.peer_id].fetch(
                b.peer_id, b"share-1", consume, offset=(100 << 20) + 12345, length=3 << 20
            )
        assert (res.size, res.length) == (size, 3 << 20)
        expected = src.path(b"share-1").read_bytes()[(100 << 20) + 12345 :][: 3 << 20]
        assert bytes(got) == expected


class CuttingStore(FileStore):
    """A sink that drops the connection to the pusher once ``cut_at`` bytes are stored."""

    node: Node
    cut_at: int
    cut_done = False

    async def write(self, key: bytes, offset: int, data: bytes) -> None:
        await super().write(key, offset, data)
        if not self.cut_done and offset + len(data) >= self.cut_at:
            self.cut_done = True
            for peer in self.node.connected_peers():
                await self.node.disconnect(peer)


async def test_push_resumes_after_the_connection_is_killed(tmp_path: Path) -> None:
    src = FileStore(tmp_path / "a")
    dst = CuttingStore(tmp_path / "b")
    size = 24 << 20
    digest = make_object(src, b"k", size)
    transfers: dict[str, Transfers] = {}
    async with cluster(2) as (a, b):
        dst.node, dst.cut_at = b, 10 << 20
        transfers[a.peer_id] = Transfers(a, stall_timeout=5)
        Transfers(b).serve_push(dst)
        with trio.fail_after(60):
            result = await transfers[a.peer_id].push(b.peer_id, b"k", src, attempts=3)
        assert dst.cut_done
        assert result.attempts == 2
        assert 10 << 20 <= result.resumed_from < size
        assert file_hash(dst.path(b"k")) == digest
        assert not list(dst.dir.glob("*.part"))


async def test_fetch_resumes_and_reports_missing(tmp_path: Path) -> None:
    src = FileStore(tmp_path / "a")
    size = 20 << 20
    make_object(src, b"obj", size)
    async with cluster(2) as (a, b):
        Transfers(b).serve_fetch(src)
        client = Transfers(a, stall_timeout=5)
        got = bytearray()
        cut = trio.Event()

        async def consume(offset: int, data: bytes) -> None:
            assert offset == len(got)
            got.extend(data)
            if len(got) >= 7 << 20:
                cut.set()

        async def cutter() -> None:
            await cut.wait()
            await a.disconnect(b.peer_id)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cutter)
                res = await client.fetch(b.peer_id, b"obj", consume)
            assert res.attempts == 2 and res.size == size
            assert blake3.blake3(bytes(got)).digest() == file_hash(src.path(b"obj"))
            with pytest.raises(RemoteNotFound, match="not stored here"):
                await client.fetch(b.peer_id, b"nope", consume)


class CorruptAfter(FileStore):
    """A source whose bytes past ``bad_from`` fail its own check (a block corrupt on disk)."""

    bad_from = 3 << 20

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        if offset + length > self.bad_from:
            raise IntegrityError(f"{key!r} block {offset >> 20} is corrupt on disk")
        return await super().read(key, offset, length)


async def test_a_source_failing_mid_range_is_reported_not_reset(tmp_path: Path) -> None:
    """The provider's error travels as an error frame after the bytes already sent: the
    client gets the reason at once instead of a reset it would retry."""
    src = CorruptAfter(tmp_path / "a")
    make_object(src, b"obj", 8 << 20)
    async with cluster(2) as (a, b):
        Transfers(b).serve_fetch(src)
        got = bytearray()

        async def consume(offset: int, data: bytes) -> None:
            got.extend(data)

        with trio.fail_after(30), pytest.raises(RemoteIntegrityFailure, match="corrupt on disk"):
            await Transfers(a).fetch(b.peer_id, b"obj", consume, attempts=3)
        # Bytes before the bad block, in order (a data frame that arrives in the same read
        # as the error frame is not delivered: the error ends the fetch).
        assert 0 < len(got) <= CorruptAfter.bad_from
        assert bytes(got) == src.path(b"obj").read_bytes()[: len(got)]


async def test_wrong_digest_is_refused_and_discarded(tmp_path: Path) -> None:
    src, dst = two_stores(tmp_path)
    make_object(src, b"x", 3 << 20)
    async with cluster(2) as (a, b):
        Transfers(b).serve_push(dst)
        with trio.fail_after(30), pytest.raises(RemoteIntegrityFailure, match="do not match"):
            await Transfers(a).push(b.peer_id, b"x", src, digest=b"\0" * 32)
        assert not dst.path(b"x").exists()
        assert not list(dst.dir.glob("*.part"))


def test_sender_beyond_credit_is_a_protocol_violation() -> None:
    sender = PushSenderSession(b"k", 10 << 20, b"\1" * 32)
    receiver = PushReceiverSession(window=2 << 20)
    [_offer] = receiver.receive_data(sender.offer())
    sender.receive_data(receiver.accept(0))
    assert sender.flow is not None and sender.flow.allowed() == 2 << 20
    receiver.receive_data(sender.data(b"a" * (1 << 20)))
    receiver.receive_data(sender.data(b"a" * (1 << 20)))
    cheat = PushSenderSession.__new__(PushSenderSession)  # a peer ignoring credit
    from storaged.net.push import TABLE

    with pytest.raises(ProtocolViolation, match="exceed credit"):
        receiver.receive_data(TABLE.encode("data", b"a" * flow.MIN_CHUNK))
    del cheat


def test_tiny_chunks_mid_object_are_refused() -> None:
    sender = PushSenderSession(b"k", 10 << 20, b"\1" * 32)
    receiver = PushReceiverSession(window=2 << 20)
    receiver.receive_data(sender.offer())
    sender.receive_data(receiver.accept(0))
    with pytest.raises(ProtocolViolation, match="below"):
        receiver.receive_data(sender.data(b"a" * 100))


# -- real OS processes -----------------------------------------------------------------------


async def start_peer(tmp_path: Path, mib: int) -> tuple[trio.Process, str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.net.peer_process", str(tmp_path / "peer"), str(mib)],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = b""
    with trio.fail_after(30):
        while not line.endswith(b"\n"):
            data = await proc.stdout.receive_some(1024)
            assert data, "peer process exited before listening"
            line += data
    return proc, line.decode().strip()


async def stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    with trio.CancelScope(shield=True), trio.fail_after(10):
        await proc.wait()
    if proc.stdout is not None:
        await proc.stdout.aclose()


@pytest.mark.slow
async def test_two_processes_push_fetch_and_query(tmp_path: Path) -> None:
    proc, addr = await start_peer(tmp_path, 0)
    try:
        src = FileStore(tmp_path / "mine")
        digest = make_object(src, b"two-proc", 16 << 20)
        async with cluster(1) as (me,):
            with trio.fail_after(60):
                peer = await me.connect(addr)
                got = await Rpc(me).request(peer, QUERY, {"hello": 1})
                assert got == {"echo": {"hello": 1}}
                await Transfers(me).push(peer, b"two-proc", src)
                back = blake3.blake3()

                async def consume(offset: int, data: bytes) -> None:
                    back.update(data)

                res = await Transfers(me).fetch(peer, b"two-proc", consume)
                assert res.length == 16 << 20 and back.digest() == digest
    finally:
        await stop(proc)


@pytest.mark.slow
async def test_peer_killed_mid_stream_gives_specific_error_in_time(tmp_path: Path) -> None:
    proc, addr = await start_peer(tmp_path, 64)
    try:
        async with cluster(1) as (me,):
            client = Transfers(me, stall_timeout=5)
            peer = await me.connect(addr)
            received = 0

            async def consume(offset: int, data: bytes) -> None:
                nonlocal received
                assert data == pattern_bytes(offset, len(data))
                received += len(data)
                if received >= 4 << 20 and proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)

            start = trio.current_time()
            with trio.fail_after(20), pytest.raises(PeerUnavailable):
                await client.fetch(peer, b"big", consume, attempts=1)
            assert trio.current_time() - start < 15
            assert 4 << 20 <= received < 64 << 20
    finally:
        await stop(proc)


def test_integrity_error_is_ours() -> None:
    # A range hash mismatch is IntegrityError (bad data), not a RemoteError (bad peer).
    assert not issubclass(IntegrityError, PeerUnavailable)


class HungStore(FileStore):
    """A sink whose disk never returns from a write (a hung provider)."""

    async def write(self, key: bytes, offset: int, data: bytes) -> None:
        await trio.sleep_forever()


async def test_hung_receiver_gives_deadline_error_not_a_hang(tmp_path: Path) -> None:
    src = FileStore(tmp_path / "a")
    make_object(src, b"h", 16 << 20)
    async with cluster(2) as (a, b):
        Transfers(b).serve_push(HungStore(tmp_path / "b"))
        start = trio.current_time()
        with trio.fail_after(20), pytest.raises(PeerUnavailable, match="no data for 1s"):
            await Transfers(a, stall_timeout=1).push(b.peer_id, b"h", src, attempts=2)
        assert trio.current_time() - start < 10


async def test_transfers_beyond_the_limit_are_refused_busy(tmp_path: Path) -> None:
    from storaged.net.errors import RemoteBusy

    src = FileStore(tmp_path / "a")
    make_object(src, b"h", 4 << 20)
    async with cluster(2) as (a, b), trio.open_nursery() as nursery:
        server = Transfers(b, max_inbound=1)
        begun = trio.Event()

        class SignallingStore(HungStore):
            async def begin(self, key: bytes, size: int, digest: bytes) -> int:
                begun.set()
                return await super().begin(key, size, digest)

        server.serve_push(SignallingStore(tmp_path / "b"))
        client = Transfers(a, stall_timeout=30)
        nursery.start_soon(client.push, b.peer_id, b"h", src)  # occupies the only slot

        with trio.fail_after(10):
            await begun.wait()
            assert server.inbound == 1
            with pytest.raises(RemoteBusy, match="too many transfers"):
                await client.push(b.peer_id, b"h", src, attempts=1)
        nursery.cancel_scope.cancel()


async def test_the_prefetcher_stops_quietly_when_the_sender_has_stopped() -> None:
    """The sender failed (its error is the one to report) while the prefetching task still
    held a chunk: the task must stop, not raise trio's BrokenResourceError, which a CI run
    saw reported in place of the sender's PeerUnavailable."""
    from storaged.net.transfer import _prefetch

    class Source:
        async def size(self, key: bytes) -> int:
            return 4 << 20

        async def read(self, key: bytes, offset: int, length: int) -> bytes:
            return b"x" * length

    send, recv = trio.open_memory_channel[bytes | StoragedError](1)
    await recv.aclose()  # the sender is gone
    with trio.fail_after(10):
        await _prefetch(Source(), b"k", 0, 4 << 20, send)
