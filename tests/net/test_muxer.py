"""storaged.net.muxer: each fix to py-libp2p 0.8.1's Yamux/Noise hot path is live, and a stock
py-libp2p peer still talks to us.  Every test here fails with the stock muxer."""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import multiaddr
import pytest
import trio
import trio.testing
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from storaged.net import muxer
from storaged.net.errors import StreamBroken
from storaged.net.host import Node
from storaged.net.locks import EagerLock, WindowLock
from storaged.net.muxer import Muxer, _wait_for_window
from storaged.net.noise_io import _BufferedNoisePackets
from storaged.net.stream import Stream
from storaged.net.testing import cluster

SINK = "/storaged-test/sink/1.0.0"
ECHO = "/storaged-test/echo/1.0.0"


async def echo(stream: Stream) -> None:
    while data := await stream.read(1 << 20, timeout=30):
        await stream.write(data, timeout=30)
    await stream.close()


async def sink(stream: Stream) -> None:
    total = 0
    while data := await stream.read(1 << 20, timeout=30):
        total += len(data)
    await stream.write(str(total).encode(), timeout=30)
    await stream.close()


def serve(node: Node) -> None:
    node.set_handler(ECHO, echo)
    node.set_handler(SINK, sink)


async def read_exactly(stream: Stream, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await stream.read(n - len(got), timeout=30)
        assert chunk, "stream ended early"
        got += chunk
    return bytes(got)


def connection_of(stream: Stream) -> Any:
    return stream._raw.muxed_stream.conn


def tcp_of(stream: Stream) -> Any:
    """The TCP stream object under ``stream``'s (tuned) connection."""
    return connection_of(stream).secured_conn.conn.read_writer.read_write_closer.stream


def test_pinned_version_is_patched() -> None:
    assert muxer.LIBP2P_VERSION == "0.8.1"
    assert muxer.PATCHED


async def test_connections_are_ours_and_tuned() -> None:
    """py-libp2p 0.8.1 builds a stock Yamux whatever muxer_opt says; install() fixes that."""
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(20):
            stream = await a.open_stream(b.peer_id, ECHO)
            conn = connection_of(stream)
            assert type(conn) is Muxer
            assert conn.tuned
            assert type(conn.secured_conn.conn.read_writer).__name__ == "_BufferedNoisePackets"
            assert isinstance(stream._raw.muxed_stream.window_lock, WindowLock)
            await stream.close()


class StepCounter(trio.abc.Instrument):
    """Counts how often one task is scheduled (each resumption after a yield is a step)."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_small_write_yields_once() -> None:
    """A 40-byte write on an open window passed ~7 trio locks, each yielding to the scheduler
    although free; now only the socket send yields."""
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(20):
            stream = await a.open_stream(b.peer_id, ECHO)
            await stream.write(b"w" * 40, timeout=10)
            await read_exactly(stream, 40)
            counter = StepCounter(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(counter)
            try:
                for _ in range(10):
                    await stream.write(b"x" * 40, timeout=10)
            finally:
                trio.lowlevel.remove_instrument(counter)
            assert counter.steps <= 10  # stock 0.8.1: 70
            await read_exactly(stream, 400)
            await stream.close()


async def test_one_socket_read_per_small_message() -> None:
    """The Noise reader asked the socket for the 2-byte length and the body separately."""
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, ECHO)
            tcp = tcp_of(stream)
            reads = 0
            original = tcp.read

            async def counting(n: int | None = None) -> bytes:
                nonlocal reads
                reads += 1
                data: bytes = await original(n)
                return data

            tcp.read = counting
            try:
                for i in range(50):
                    msg = b"%040d" % i
                    await stream.write(msg, timeout=10)
                    assert await read_exactly(stream, 40) == msg
            finally:
                tcp.read = original
            assert reads <= 55  # one per echoed message (stock 0.8.1: two)
            await stream.close()


async def test_full_frames_fit_one_noise_message() -> None:
    """A full 64 KiB Yamux frame is 17 bytes over Noise's largest message, so each went out as
    two Noise messages (two encryptions, two sends); frames are now capped to fit one."""
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, SINK)
            conn = connection_of(stream)
            stream_id = stream._raw.muxed_stream.stream_id
            sizes: list[int] = []
            original = conn._write_frame

            async def spy(frame: bytes) -> None:
                if struct.unpack(">BBHII", frame[:12])[3] == stream_id:
                    sizes.append(len(frame))
                await original(frame)

            conn._write_frame = spy
            try:
                await stream.write(os.urandom(1 << 20), timeout=20)
            finally:
                conn._write_frame = original
            # Noise splits only a frame above MAX_PLAINTEXT_LENGTH (stock frames: 65,536 bytes,
            # two Noise messages each); the peer's window may cut some frames shorter.
            assert max(sizes) == MAX_PLAINTEXT_LENGTH
            assert sum(n - 12 for n in sizes) == 1 << 20
            await stream._raw.close()
            assert await stream.read(100, timeout=20) == str(1 << 20).encode()


async def test_eager_lock_still_excludes() -> None:
    lock = EagerLock()
    inside = 0
    most = 0

    async def worker() -> None:
        nonlocal inside, most
        for _ in range(20):
            async with lock:
                inside += 1
                most = max(most, inside)
                await trio.lowlevel.checkpoint()
                inside -= 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(worker)
    assert most == 1
    assert not lock.locked()


async def test_eager_lock_hands_off_in_order_and_survives_a_cancelled_waiter() -> None:
    lock = EagerLock()
    order: list[str] = []
    await lock.acquire()

    async def waiter(name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            async with lock:
                order.append(name)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(waiter, "a")
            doomed = await nursery.start(waiter, "b")
            await nursery.start(waiter, "c")
            await trio.testing.wait_all_tasks_blocked()
            doomed.cancel()  # parked: it must leave the queue without taking the lock
            await trio.testing.wait_all_tasks_blocked()
            assert order == [] and lock.locked()
            lock.release()
    assert order == ["a", "c"]
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


class _WindowedStream:
    """The attributes of a Yamux stream that the window wait reads."""

    def __init__(self) -> None:
        self.window_lock = WindowLock()
        self.send_window = 0
        self.closed = False


async def test_window_wait_wakes_on_the_update_not_on_a_timer(
    mock_clock: trio.testing.MockClock,
) -> None:
    # The mock clock never moves: only the WINDOW_UPDATE (applied under window_lock) can
    # wake the writer.  Stock 0.8.1 polls every 10 ms and would sleep here forever.
    stream = _WindowedStream()
    woke = trio.Event()

    async def writer() -> None:
        await _wait_for_window(stream)  # type: ignore[arg-type]
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        async with stream.window_lock:  # what the reader task does for a WINDOW_UPDATE
            stream.send_window += 65536
        await trio.testing.wait_all_tasks_blocked()
        assert woke.is_set()
        assert trio.current_time() == 0


async def test_window_wait_notices_close_and_gives_up_after_5s(
    mock_clock: trio.testing.MockClock,
) -> None:
    # The clock moves only when told: each step below is driven, not slept through.
    stream = _WindowedStream()
    done = trio.Event()

    async def waiter() -> None:
        await _wait_for_window(stream)  # type: ignore[arg-type]
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        mock_clock.jump(1.0)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()  # no window, not closed: still waiting after 1 s
        stream.closed = True  # a reset sets this without taking window_lock
        mock_clock.jump(0.05)  # the periodic re-check
        await trio.testing.wait_all_tasks_blocked()
        assert done.is_set()
    assert trio.current_time() < 1.1

    failed: list[BaseException] = []

    async def hopeless() -> None:
        try:
            await _wait_for_window(_WindowedStream())  # type: ignore[arg-type]
        except MuxedStreamError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hopeless)
        await trio.testing.wait_all_tasks_blocked()  # it started waiting at `start`
        start = trio.current_time()
        for _ in range(99):  # 4.95 s in 50 ms re-checks: not given up yet
            mock_clock.jump(0.05)
            await trio.testing.wait_all_tasks_blocked()
        assert failed == []
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # a waiter that did not give up fails below, not hangs
    assert len(failed) == 1 and "5 seconds" in str(failed[0])
    assert trio.current_time() - start == pytest.approx(5.05, abs=0.01)


@asynccontextmanager
async def stock_host() -> AsyncIterator[Any]:
    """A py-libp2p 0.8.1 host as shipped: Noise + stock Yamux, nothing of storaged.net."""
    kp = create_new_key_pair()
    noise = NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)
    host = new_host(
        key_pair=kp,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
    )
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await host.close()


@pytest.mark.parametrize("we_dial", [True, False])
async def test_stock_peer_interoperates(we_dial: bool) -> None:
    """Our tuned muxer against a stock py-libp2p 0.8.1 peer, both directions, small and bulk."""

    async def stock_echo(raw: Any) -> None:
        try:
            while data := await raw.read(1 << 20):
                await raw.write(data)
        except Exception:
            pass
        await raw.close()

    async with cluster(1, setup=serve) as (node,), stock_host() as stock:
        stock.set_stream_handler(TProtocol(ECHO), stock_echo)
        stock_id = str(stock.get_id())
        with trio.fail_after(60):
            if we_dial:
                await node.connect(f"{stock.get_addrs()[0]}/p2p/{stock_id}")
            else:
                await stock.connect(
                    PeerInfo(
                        ID.from_base58(node.peer_id),
                        [multiaddr.Multiaddr(node.addrs[0].split("/p2p/")[0])],
                    )
                )
            conns = stock.get_network().get_connections(ID.from_base58(node.peer_id))
            assert conns and all(type(c.muxed_conn) is Yamux for c in conns)

            # we open a stream to the stock peer
            stream = await node.open_stream(stock_id, ECHO)
            assert type(connection_of(stream)) is Muxer
            for i in range(20):
                msg = b"%040d" % i
                await stream.write(msg, timeout=10)
                assert await read_exactly(stream, 40) == msg
            bulk = os.urandom(3 << 20)

            async def send_bulk() -> None:
                await stream.write(bulk, timeout=30)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_bulk)
                assert await read_exactly(stream, len(bulk)) == bulk
            await stream.close()

            # the stock peer opens a stream to us
            raw = await stock.new_stream(ID.from_base58(node.peer_id), [TProtocol(ECHO)])
            await raw.write(b"hello")
            got = b""
            while len(got) < 5:
                got += await raw.read(5 - len(got))
            assert got == b"hello"

            async def stock_bulk() -> None:
                await raw.write(bulk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stock_bulk)
                got = bytearray()
                while len(got) < len(bulk):
                    got += await raw.read(len(bulk) - len(got))
            assert bytes(got) == bulk
            await raw.close()


def muxed_conn_to(node: Node, peer: str) -> Any:
    conns = node._libp2p_host().get_network().get_connections(ID.from_base58(peer))
    assert len(conns) == 1
    return conns[0].muxed_conn


async def test_reader_keeps_reading_while_the_write_lock_is_held() -> None:
    """The reader task owes the peer some frames (a ping answer here); it must not wait for
    the connection's write lock to send them, or a writer stuck on a full socket stops the
    reading too (fix 6: with both peers in that state, the connection deadlocks)."""
    got: list[bytes] = []
    arrived = trio.Event()

    async def hold(stream: Stream) -> None:
        nonlocal arrived
        while data := await stream.read(1000, timeout=30):
            got.append(data)
            arrived.set()
            arrived = trio.Event()

    def setup(node: Node) -> None:
        node.set_handler(ECHO, hold)

    async with cluster(2, setup=setup) as (a, b):
        with trio.fail_after(30):
            stream = await b.open_stream(a.peer_id, ECHO)
            waiter = arrived
            await stream.write(b"first", timeout=10)
            await waiter.wait()
            a_conn, b_conn = muxed_conn_to(a, b.peer_id), muxed_conn_to(b, a.peer_id)
            b_conn._ping_event = trio.Event()
            pong = b_conn._ping_event
            await a_conn._write_lock.acquire()  # as a writer blocked on a full socket would
            try:
                ping = struct.pack(">BBHII", 0, 2, 1, 0, 7)  # PING with SYN: must be answered
                await b_conn._write_frame(ping)
                waiter = arrived
                await stream.write(b"second", timeout=10)
                with trio.move_on_after(5) as scope:
                    await waiter.wait()
                assert not scope.cancelled_caught, "the reader stopped at the ping answer"
                assert got == [b"first", b"second"]
                assert not pong.is_set()  # the answer waits for the lock, not the reader
            finally:
                a_conn._write_lock.release()
            await pong.wait()  # and goes out once the lock is free
            await stream.close()


async def test_both_sides_saturated_while_opening_streams() -> None:
    """Both peers push 4 x 32 MiB at each other while opening small streams both ways (each
    SYN makes the peer's reader send an ACK).  Stock py-libp2p 0.8.1 deadlocks here within
    seconds: both readers wait on write locks held by writers blocked on full sockets."""
    total = 32 << 20
    chunk = os.urandom(256 << 10)
    finished = 0

    async def push(src: Node, dst: Node) -> None:
        nonlocal finished
        stream = await src.open_stream(dst.peer_id, SINK)
        for _ in range(total // len(chunk)):
            await stream.write(chunk, timeout=30)
        await stream._raw.close()
        assert await stream.read(100, timeout=30) == str(total).encode()
        finished += 1

    async def open_streams(src: Node, dst: Node) -> None:
        while finished < 8:
            stream = await src.open_stream(dst.peer_id, ECHO, timeout=30)
            await stream.write(b"ping", timeout=30)
            assert await read_exactly(stream, 4) == b"ping"
            await stream.close()
            await trio.sleep(0.02)

    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for src, dst in ((a, b), (b, a)):
                    for _ in range(4):
                        nursery.start_soon(push, src, dst)
                    nursery.start_soon(open_streams, src, dst)
    assert finished == 8


async def test_buffered_frame_bodies_are_taken_without_a_deadline_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stock 0.8.1 opened a cancel scope (and read its timeout from os.environ) for every DATA
    frame body, although the body came in the same Noise message as its header."""
    from libp2p.stream_muxer.yamux import yamux

    scopes = 0
    original = yamux._yamux_data_read_timeout

    def counting() -> float:
        nonlocal scopes
        scopes += 1
        return original()

    monkeypatch.setattr(yamux, "_yamux_data_read_timeout", counting)
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, ECHO)
            scopes = 0
            for i in range(20):
                msg = b"%040d" % i
                await stream.write(msg, timeout=10)
                assert await read_exactly(stream, 40) == msg
            await stream.close()
    assert scopes == 0  # stock: one per DATA frame, 40 here


async def test_plain_data_frames_skip_the_stock_reader() -> None:
    """Each received byte was copied five times and each frame cost ~15 debug f-strings on
    the stock path; plain DATA frames now go from the Noise message to the stream buffer."""
    payload = os.urandom(1 << 20)
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, ECHO)
            conn = connection_of(stream)
            taken = stock = 0
            take, read_body = conn._take_data_frame, conn._read_data_body

            def counting_take(msg: bytes) -> bool:
                nonlocal taken
                ok: bool = take(msg)
                taken += ok
                return ok

            async def counting_body(length: int) -> bytes:
                nonlocal stock
                stock += 1
                body: bytes = await read_body(length)
                return body

            conn._take_data_frame, conn._read_data_body = counting_take, counting_body
            async with trio.open_nursery() as nursery:  # the echo stalls if we do not read
                nursery.start_soon(functools.partial(stream.write, payload, timeout=20))
                assert await read_exactly(stream, len(payload)) == payload
            await stream.close()
    assert taken >= len(payload) // MAX_PLAINTEXT_LENGTH  # every echoed frame
    assert stock == 0  # stock 0.8.1: one _read_data_body per DATA frame


async def test_noise_messages_are_decrypted_where_the_socket_read_put_them() -> None:
    """Each received byte was copied twice before decryption (into the read-ahead buffer,
    then out as the message); now a message inside one socket read is a view of it, and
    only a message split across reads is gathered (once)."""
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, ECHO)
            packets = connection_of(stream).secured_conn.conn.read_writer
            tcp = tcp_of(stream)
            reads: list[bytes] = []
            messages: list[Any] = []
            tcp_read, packet_read = tcp.read, packets.read_msg

            async def spy_tcp(n: int | None = None) -> bytes:
                data: bytes = await tcp_read(n)
                reads.append(data)
                return data

            async def spy_packets() -> Any:
                msg = await packet_read()
                messages.append(msg)
                return msg

            tcp.read, packets.read_msg = spy_tcp, spy_packets
            for i in range(50):  # small echoes: each arrives within one socket read
                msg = b"%040d" % i
                await stream.write(msg, timeout=10)
                assert await read_exactly(stream, 40) == msg
            payload = os.urandom(1 << 20)  # bulk: some messages span reads
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(stream.write, payload, timeout=20))
                assert await read_exactly(stream, len(payload)) == payload
            await stream.close()
    assert all(isinstance(m, memoryview) for m in messages)  # stock: bytes copies
    in_place = [m for m in messages if any(m.obj is r for r in reads)]
    assert len(in_place) >= 45


async def test_a_corrupted_byte_on_the_wire_fails_the_connection_not_the_host() -> None:
    """Authentication fails on the tampered Noise message: that connection's streams break
    within their deadline, and the host still serves a new connection."""
    async with cluster(3, setup=serve) as (a, b, c):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, ECHO)
            await stream.write(b"before", timeout=10)
            assert await read_exactly(stream, 6) == b"before"
            tcp = tcp_of(stream)
            original = tcp.read

            async def flip(n: int | None = None) -> bytes:
                data: bytes = await original(n)
                return bytes([data[0], data[1], data[2] ^ 0x40]) + data[3:] if data else data

            tcp.read = flip
            # The reader is already waiting in the unflipped read: let one echo pass it.
            await stream.write(b"primer", timeout=10)
            assert await read_exactly(stream, 6) == b"primer"
            await stream.write(b"after!", timeout=10)
            with pytest.raises(StreamBroken):
                got = await stream.read(100, timeout=10)
                assert not got  # EOF counts as a break here too
                raise StreamBroken("ended")
            other = await c.open_stream(b.peer_id, ECHO)
            await other.write(b"still", timeout=10)
            assert await read_exactly(other, 5) == b"still"
            await other.close()


class _Chunks:
    """A raw connection that returns the given reads one by one, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""


@pytest.mark.parametrize("seed", range(20))
async def test_packet_reader_reassembles_messages_split_anywhere(seed: int) -> None:
    import random

    from libp2p.io.exceptions import IncompleteReadError

    rng = random.Random(seed)
    messages = [rng.randbytes(rng.choice([0, 1, 2, 40, 1000, 65_535])) for _ in range(30)]
    wire = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    cuts = sorted(rng.sample(range(1, len(wire)), 60))  # includes cuts inside length prefixes
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    reader = _BufferedNoisePackets(_Chunks(chunks))
    assert [bytes(await reader.read_msg()) for _ in messages] == messages
    with pytest.raises(IncompleteReadError) as clean:
        await reader.read_msg()
    assert clean.value.received_bytes == 0  # EOF between messages: a clean close

    truncated = _BufferedNoisePackets(_Chunks([b"\x00\x10abc"]))
    with pytest.raises(IncompleteReadError) as cut:
        await truncated.read_msg()
    assert cut.value.received_bytes == 5


async def test_packet_reader_loses_nothing_when_cancelled_mid_message() -> None:
    message = os.urandom(1000)
    wire = len(message).to_bytes(2, "big") + message
    parts = [wire[:1], wire[1:300], wire[300:]]
    stalled, released = trio.Event(), trio.Event()

    class Slow(_Chunks):
        async def read(self, n: int | None = None) -> bytes:
            if len(self.chunks) == 1 and not released.is_set():
                stalled.set()
                await released.wait()
            return await super().read(n)

    reader = _BufferedNoisePackets(Slow(parts))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def read_until_cancelled() -> None:
                with scope:
                    await reader.read_msg()

            nursery.start_soon(read_until_cancelled)
            await stalled.wait()  # two parts consumed, the third not yet there
            scope.cancel()
        assert scope.cancelled_caught
        released.set()
        assert bytes(await reader.read_msg()) == message


def gate_writes(stream: Stream) -> tuple[trio.Event, trio.Event]:
    """Make the socket under ``stream``'s connection look full: the next frame gets only its
    first byte out, and the rest waits until the returned ``gate`` is set (``entered`` is set
    once it waits).  Returns (entered, gate)."""
    writer = connection_of(stream)._frame_writer
    entered, gate = trio.Event(), trio.Event()
    send = writer._send

    def partial(packet: bytes, start: int) -> int:
        if gate.is_set():
            return send(packet, start)
        return send(packet[: start + 1], start) if start == 0 else 0

    async def wait_writable(_sock: Any) -> None:
        entered.set()
        await gate.wait()

    writer._send, writer._wait_writable = partial, wait_writable
    return entered, gate


async def test_a_write_cancelled_mid_frame_leaves_the_connection_usable() -> None:
    """Stock 0.8.1: a write cancelled while the socket was full left its Noise message cut
    short (its nonce used), so the peer failed to authenticate everything after it and
    dropped the connection."""
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            first = await a.open_stream(b.peer_id, ECHO)
            await first.write(b"hello", timeout=10)
            assert await read_exactly(first, 5) == b"hello"
            entered, gate = gate_writes(first)
            scope = trio.CancelScope()

            async def write_until_cancelled() -> None:
                with scope:
                    await first.write(b"cut?!", timeout=10)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_until_cancelled)
                await entered.wait()  # encrypted, one byte of it on the socket
                scope.cancel()
                gate.set()
            second = await a.open_stream(b.peer_id, ECHO)  # same connection
            assert connection_of(second) is connection_of(first)
            await second.write(b"after", timeout=10)
            assert await read_exactly(second, 5) == b"after"
            await second.close()


async def test_a_frame_the_peer_never_takes_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Muxer, "frame_timeout", 0.3)
    async with cluster(2, setup=serve) as (a, b):
        with trio.fail_after(30):
            stream = await a.open_stream(b.peer_id, ECHO)
            await stream.write(b"hello", timeout=10)
            assert await read_exactly(stream, 5) == b"hello"
            gate_writes(stream)  # never opened
            with pytest.raises(StreamBroken, match="not taken within"):
                await stream.write(b"stuck", timeout=10)
            assert connection_of(stream).event_shutting_down.is_set()
