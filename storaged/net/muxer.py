"""Our Yamux: py-libp2p 0.8.1's muxer with narrow fixes to its hot path.

:class:`Muxer` is the class :class:`storaged.net.host.Node` hands libp2p as its only stream
muxer.  It *is* py-libp2p's ``Yamux`` (a subclass; the frames on the wire are the same, so it
talks to any Yamux peer), tuned per object when a connection or stream is created.  Each fix
was found by profiling ``bench/net.py`` (see docs/architecture.md, section 6) and is pinned to
py-libp2p 0.8.1: with any other version :data:`PATCHED` is False, a warning is logged at import
and the stock code runs unchanged (the tests fail then, on purpose, so an upgrade re-checks).

What the stock code does, and what changes:

1. **Locks that yield when free.**  A small message crossed ~16 scheduler passes per round
   trip on each side, because each of the ~10 ``trio.Lock``/``Semaphore`` acquisitions on the
   way (stream state, read/write lock, window lock, connection write lock, TCP read and write
   locks, stream table lock) yields to the scheduler even when nobody holds the lock, and every
   pass costs an ``epoll_wait`` and a trip through trio's run loop.  Those lock objects are
   swapped for :class:`EagerLock` / :class:`EagerSemaphore`, which take a free lock without
   yielding (a held one is waited for exactly as before).  Mutual exclusion is unchanged; only
   scheduling points go, and every path still yields where it waits for the socket or a peer.
2. **Two socket reads per Noise message.**  The Noise reader read the 2-byte length prefix and
   then the body with one ``recv`` each.  ``noise_io._BufferedNoisePackets`` reads what the kernel
   holds (up to 256 KiB) and cuts messages out of that read, so one ``recv`` serves one or
   more messages, and hands each on as a view of the read, decrypted where it lies
   (``noise_io._decrypt_in_place``: ``NoiseConnection.decrypt`` accepts only ``bytes``, which
   cost two copies of every received byte before decryption).  It replaces the packet reader
   of a Noise connection only once the handshake is done (the muxer is built after it), and
   nothing else reads that socket afterwards.
3. **Two Noise messages per full Yamux frame.**  Yamux cut data into 64 KiB frames (header
   included) but a Noise message carries at most 65,519 plaintext bytes, so every full frame
   went out as a 65,519-byte and a 17-byte Noise message: two encryptions, two ``send``\\ s and
   two messages to parse on the peer.  Our streams' ``write`` caps a frame at 65,519 bytes;
   any frame size up to the window is valid Yamux, so peers see nothing new.
4. **A WINDOW_UPDATE per small read** ("partial slack"): each 40-byte message cost the reader
   an extra frame.  Updates are deferred until half the window is used, go-yamux's rule
   (:func:`defer_small_window_updates`).
5. **Eager debug formatting and an extra checkpoint per frame** in ``Yamux._write_frame``
   (it unpacks the header and builds an f-string log line for every frame even with debug
   logging off, then yields once more after the write): dropped in :meth:`Muxer._write_frame`;
   and a cancel scope plus an ``os.environ`` lookup per received DATA frame whose body is
   already buffered: skipped in :meth:`Muxer._read_data_body`.

6. **A deadlock under bidirectional load.**  The connection's single reader task
   (``handle_incoming``) itself writes the frames it owes the peer: the ACK of a new inbound
   stream, the answer to a Yamux ping (the peer pings 0.5 s after connecting, then every
   30 s), the RST of a duplicate stream id.  It waits for the connection's write lock, held by
   a stream writer blocked on a full socket.  When both peers are writing more than their TCP
   buffers hold (windows grow to several MiB), both readers end up there: neither side drains
   its socket again, so both stall forever (found by ``tests/net/test_muxer.py::
   test_both_sides_saturated_while_opening_streams``: stock 0.8.1 stalls there within
   seconds).  Here the reader hands those frames to a sender task and goes back to reading
   (:meth:`Muxer._write_frame`); at most ``_MAX_CONTROL_QUEUE`` of them wait, beyond that the
   reader waits as before, so a peer flooding pings or SYNs cannot grow our memory.

7. **A sender out of window polled every 10 ms.**  ``YamuxStream.write`` slept 10 ms between
   checks of its send window, so a sender that outran its receiver idled up to 10 ms per stall
   although the peer's WINDOW_UPDATE usually lands microseconds later: 100-165 such sleeps
   per 256 MiB push (over a second of a two-second transfer) and 16-25 per raw stream.  The
   window lock is a :class:`WindowLock`, whose release wakes a waiting writer
   (:func:`_wait_for_window`); raw libp2p went from ~475 to ~640 MB/s in ``bench/net.py``.

8. **Five copies of every received byte.**  A DATA frame's body went from the decrypted
   Noise message into the session's ``BytesIO`` (one slice, one write), out of it
   (``tobytes``), into the stream's buffer and out to the reader: with about fifteen debug
   f-strings built per frame on the way.  A plain DATA frame (no flags) that fills one Noise
   message, for a known stream, is now appended to the stream's buffer straight from the
   message (:meth:`Muxer._take_data_frame`, called by the header read of the connection's
   reader); every other frame takes the stock path.  Sending and receiving 128 MiB between
   two hosts of one process took 0.40-0.43 s of CPU, now 0.35-0.39 s.

9. **Writes cut by cancellation.**  A stream write cancelled while it holds the
   connection (a deadline, or a client dropping the fetches it no longer needs) could stop
   after Noise had encrypted its frame, using up a nonce, or halfway through the socket
   write.  The peer then failed to authenticate every later message and dropped the whole
   connection, with every stream on it: 21 times in 12 runs of the client round-trip tests,
   seen by clients as a DEAL request "closed before answering".  Frames are now written
   whole (:meth:`Muxer._write_whole`, ``noise_io.FrameWriter``): a pending cancellation is
   taken before encrypting, the encrypted frame is offered to the socket with a non-blocking
   ``os.write``, and only a frame the kernel takes in part waits, shielded, for the rest; one
   the peer does not take within ``frame_timeout`` closes the connection.

Nothing here changes what a peer sees beyond frame sizes (fix 3), the timing of window
updates (fix 4) and control frames sent a little later (fix 6), all within the Yamux spec.
``tests/net/test_muxer.py`` checks each fix is live and that a stock py-libp2p 0.8.1 host still
talks to us.
"""

from __future__ import annotations

import importlib.metadata
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable, MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import (
    HEADER_SIZE,
    TYPE_DATA,
    YAMUX_HEADER_FORMAT,
    Yamux,
    YamuxStream,
    _yamux_batch_threshold_divisor,
    _yamux_disable_hysteresis,
)

from storaged.net.locks import EagerLock, EagerSemaphore, WindowLock, eager_lock
from storaged.net.noise_io import FrameWriter, tune_secured_conn

log = logging.getLogger(__name__)

PINNED_VERSION = "0.8.1"
LIBP2P_VERSION = importlib.metadata.version("libp2p")
PATCHED = LIBP2P_VERSION == PINNED_VERSION
"""True when the fixes below are applied (only on the py-libp2p version they were written
for; they reach into its internals)."""

if not PATCHED:
    log.warning(
        "py-libp2p %s is not %s: storaged.net runs its stock Yamux/Noise hot path (slower); "
        "re-check storaged/net/muxer.py against the new version",
        LIBP2P_VERSION,
        PINNED_VERSION,
    )

# Largest Yamux frame (header + payload) that fits one Noise message.
MAX_FRAME = MAX_PLAINTEXT_LENGTH
_HEADER = struct.Struct(YAMUX_HEADER_FORMAT)
# Control frames (12 bytes each) the reader may leave to the sender task before it waits.
_MAX_CONTROL_QUEUE = 1024
# YamuxStream._grow_threshold() is target_recv_window // this (0: hysteresis off); 0.8.1 reads
# both PY_YAMUX_* settings from os.environ on every call, so they are read once here.
_GROW_DIVISOR = 0 if _yamux_disable_hysteresis() else _yamux_batch_threshold_divisor()


def _fast_header_reads(secured: SecureSession, muxer: Muxer) -> None:
    """Make the reader task's header reads on ``secured`` deliver plain DATA frames itself
    (fix 8).  Per object, like the stream fixes: ``secured.read`` is replaced by a function
    that, when the stock reader asks for a frame header and nothing is buffered, reads Noise
    messages and hands each whole plain DATA frame to :meth:`Muxer._take_data_frame`; the
    first message that is anything else goes into the session's buffer and the stock read
    returns its header, so the stock reader handles it as before.  Reads of frame bodies and
    reads with bytes already buffered are the stock ones."""
    stock_read = secured.read

    async def read(n: int | None = None) -> bytes:
        """Raises:
        ConnectionClosedError: the connection ended between messages (as stock)."""
        buffered = secured.high_watermark - secured.low_watermark
        if n != HEADER_SIZE or buffered or muxer.reading_body:
            return await stock_read(n)
        while True:
            msg = await secured.conn.read_msg()
            if not msg:
                raise ConnectionClosedError("Connection closed")
            if not muxer._take_data_frame(msg):
                secured._fill(msg)
                return await stock_read(n)

    secured.read = read  # type: ignore[method-assign]


def tune_stream(muxed: YamuxStream) -> None:
    """Per-stream fixes (1, 3, 4) on a Yamux stream of a :class:`Muxer` connection."""
    if getattr(muxed, "_storaged_tuned", False):
        return
    muxed._storaged_tuned = True  # type: ignore[attr-defined]
    eager_lock(muxed, "window_lock", WindowLock)
    eager_lock(muxed, "close_lock")
    rw = muxed.rw_lock
    eager_lock(rw, "_readers_lock")
    if isinstance(rw._writer_lock, trio.Semaphore) and rw._writer_lock.value == 1:
        rw._writer_lock = EagerSemaphore(1)  # type: ignore[assignment]
    muxed.write = _frame_capped_write(muxed)  # type: ignore[method-assign, assignment]
    defer_small_window_updates(muxed)


def _frame_capped_write(muxed: YamuxStream) -> Callable[[bytes], Coroutine[Any, Any, None]]:
    """``YamuxStream.write`` of py-libp2p 0.8.1, with frames capped at one Noise message
    (fix 3) and the payload sliced from a memoryview (one copy less per frame).  Window
    accounting, locking, the 5 s zero-window limit and the errors raised are the stock ones."""

    async def write(data: bytes) -> None:
        """Send ``data`` in DATA frames within the peer's window.

        Raises:
            MuxedStreamError: the stream is closed, or the window stayed at zero for 5 s.
        """
        if muxed.send_closed:
            raise MuxedStreamError("Stream is closed for sending")
        view = memoryview(data)
        total = len(view)
        sent = 0
        while sent < total:
            frame: bytes | None = None
            while frame is None:
                async with muxed.rw_lock.write_lock():
                    if muxed.send_closed:
                        raise MuxedStreamError("Stream is closed for sending")
                    async with muxed.window_lock:
                        if muxed.closed:
                            raise MuxedStreamError("Stream is closed")
                        if muxed.send_window > 0:
                            n = min(muxed.send_window, MAX_FRAME - HEADER_SIZE, total - sent)
                            muxed.send_window -= n
                            header = _HEADER.pack(0, TYPE_DATA, 0, muxed.stream_id, n)
                            frame = header + view[sent : sent + n]
                if frame is not None:
                    break
                muxed._zero_window_waits += 1
                await _wait_for_window(muxed)
            await muxed.conn._write_frame(frame)
            sent += len(frame) - HEADER_SIZE

    return write


async def _wait_for_window(muxed: YamuxStream) -> None:
    """Wait until the peer grants send window or the stream closes (fix 7).

    Stock 0.8.1 polls every 10 ms, so a sender that outruns its receiver idles up to 10 ms per
    stall although the WINDOW_UPDATE usually arrives within microseconds: over a hundred such
    stalls per 256 MiB push.  Here the writer parks on the :class:`WindowLock` and wakes when
    the reader task has applied an update.  A close or reset does not take that lock, so the
    window is also re-checked every 50 ms; the stock 5 s limit and its error are kept.

    Raises:
        MuxedStreamError: no window for 5 s.
    """
    lock: Any = muxed.window_lock  # a WindowLock once tuned (typed trio.Lock by libp2p)
    deadline = trio.current_time() + 5.0
    while muxed.send_window <= 0 and not muxed.closed:
        now = trio.current_time()
        if now >= deadline:
            raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")
        with trio.move_on_at(min(deadline, now + 0.05)):
            if isinstance(lock, WindowLock):
                await lock.wait_for_change()
            else:
                await trio.sleep(0.01)


def defer_small_window_updates(muxed: YamuxStream) -> None:
    """Send Yamux WINDOW_UPDATEs only once half the window is consumed (go-yamux's rule).

    py-libp2p 0.8.1 answers every read smaller than half the window with its own WINDOW_UPDATE
    frame ("partial slack"), so each 40-byte request or response costs the reader an extra
    Noise-encrypted frame, a send() and a wake-up of the peer: half the frames of a small
    request/response exchange.  Here such reads are only counted (``_pending_recv_release``) and
    released in one update when they reach the threshold or the window is half used, which is
    when libp2p's own code sends anyway; the sender always keeps at least half a window, so
    bulk transfers never stall on it.  Done per stream object (libp2p's files are untouched).
    """
    original = muxed._auto_tune_and_send_window_update

    async def deferred(*, bytes_read: int = 0) -> None:
        async with muxed.window_lock:
            buffered = len(muxed.conn.stream_buffers.get(muxed.stream_id, b""))
            delta = muxed.target_recv_window - (muxed.recv_window + buffered)
            threshold = muxed.target_recv_window // _GROW_DIVISOR if _GROW_DIVISOR else 0
            if (
                threshold > 0
                and delta < threshold
                and (muxed._pending_recv_release + bytes_read < threshold)
            ):
                muxed._pending_recv_release += bytes_read
                return
        await original(bytes_read=bytes_read)

    muxed._auto_tune_and_send_window_update = deferred  # type: ignore[method-assign]


class Muxer(Yamux):
    """py-libp2p's Yamux with the fixes above applied to each connection and stream."""

    frame_timeout = 10.0
    """Seconds a cancelled frame write may still take to finish (fix 9): one frame is at most
    one Noise message (64 KiB), so this only runs out on a peer that stopped reading."""

    def __init__(
        self,
        secured_conn: Any,
        peer_id: Any,
        is_initiator: bool | None = None,
        on_close: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        super().__init__(secured_conn, peer_id, is_initiator, on_close)
        self.tuned = False
        self._frame_writer: FrameWriter | None = None
        self._reader: trio.lowlevel.Task | None = None
        self._control: deque[bytes] = deque()
        self._control_sending = False
        self.reading_body = False  # the reader is inside _read_data_body (fix 8)
        if PATCHED:
            self.streams_lock = EagerLock()  # type: ignore[assignment]
            self._write_lock = EagerLock()  # type: ignore[assignment]
            self._frame_writer = tune_secured_conn(secured_conn)
            self.tuned = self._frame_writer is not None
            if self.tuned:
                _fast_header_reads(secured_conn, self)
            if not self.tuned:
                log.warning(
                    "connection to %s is not Noise over TCP as py-libp2p %s builds it "
                    "(%s): its socket reads stay unbuffered",
                    peer_id,
                    PINNED_VERSION,
                    type(secured_conn).__name__,
                )

    async def handle_incoming(self) -> None:
        self._reader = trio.lowlevel.current_task()
        await super().handle_incoming()

    async def _read_data_body(self, length: int) -> bytes:
        """A DATA frame's body (fix 5).  Stock 0.8.1 opens a 60 s cancel scope and reads the
        timeout from ``os.environ`` for every frame, although the body nearly always arrived
        in the same Noise message as the header and sits decrypted in the session's buffer;
        then it is taken without waiting (so without a deadline to enforce)."""
        secured: Any = self.secured_conn  # a SecureSession when tuned
        if self.tuned and secured.high_watermark - secured.low_watermark >= length:
            body: bytes = secured._drain(length)
            return body
        self.reading_body = True
        try:
            return await super()._read_data_body(length)
        finally:
            self.reading_body = False

    def _take_data_frame(self, msg: bytes) -> bool:
        """Deliver ``msg`` (one decrypted Noise message) if it is exactly one plain DATA frame
        for an open stream: what the stock reader does for such a frame, minus the copies and
        the log formatting.  False (nothing done) for anything else, and while another task
        holds the stream table lock (the stock path waits for it)."""
        busy = self.streams_lock.locked() or self.event_shutting_down.is_set()
        if len(msg) <= HEADER_SIZE or busy:
            return False
        _version, typ, flags, stream_id, length = _HEADER.unpack_from(msg)
        if typ != TYPE_DATA or flags or len(msg) != HEADER_SIZE + length:
            return False
        stream = self.streams.get(stream_id)
        buffer = self.stream_buffers.get(stream_id)
        if stream is None or buffer is None:
            return False
        with memoryview(msg) as view:
            buffer += view[HEADER_SIZE:]
        stream.recv_window -= length
        if stream.recv_window < 0:
            log.warning(
                "yamux stream %d from %s exceeded its receive window by %d bytes",
                stream_id, self.peer_id, -stream.recv_window,
            )
            stream.recv_window = 0
        self.stream_events[stream_id].set()
        return True

    async def _write_frame(self, data: bytes) -> None:
        """Write one frame under the connection's write lock (fix 5); called from the reader
        task, queue it for :meth:`_send_control` instead (fix 6)."""
        if not PATCHED:
            await super()._write_frame(data)
            return
        if (
            trio.lowlevel.current_task() is self._reader
            and self._nursery is not None
            and len(self._control) < _MAX_CONTROL_QUEUE
        ):
            self._control.append(data)
            if not self._control_sending:
                self._control_sending = True
                self._nursery.start_soon(self._send_control)
            return
        async with self._write_lock:
            await self._write_whole(data)

    async def _write_whole(self, frame: bytes) -> None:
        """Write ``frame`` to the connection completely, even if the caller is cancelled (fix
        9); the caller holds the write lock.  Noise gives each message the next nonce when it
        encrypts it, so a write cancelled between encryption and the socket leaves the peer
        expecting a message that never comes: it fails to authenticate every later one and
        drops the connection; a frame cut off halfway breaks the Yamux framing the same way.
        A frame the peer does not take within :attr:`frame_timeout` closes the connection,
        whose state is then unknown.

        Raises:
            MuxedConnUnavailable: the frame did not go out in time; the connection is closed.
            ConnectionClosedError (or what the socket raises): the connection is broken.
        """
        writer = self._frame_writer
        if writer is not None and len(frame) <= MAX_FRAME:
            whole = await writer.write(frame, self.frame_timeout)
        else:  # untuned connection, or a frame over one Noise message: shield the stock write
            deadline = trio.current_time() + self.frame_timeout
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                await self.secured_conn.write(frame)
            whole = not scope.cancelled_caught
        if not whole:
            self.event_shutting_down.set()
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await self.secured_conn.close()  # the reader fails and cleans up
            raise MuxedConnUnavailable(
                f"a {len(frame)}-byte frame to {self.peer_id} was not taken within "
                f"{self.frame_timeout:g}s; connection closed"
            )

    async def _send_control(self) -> None:
        """Send the control frames the reader queued, in order; a failed write means the
        connection is gone (the reader sees that on its side), so it is only logged."""
        try:
            while self._control:
                frame = self._control.popleft()
                async with self._write_lock:
                    await self._write_whole(frame)
        except Exception as exc:
            log.debug("yamux control frame to %s not sent: %r", self.peer_id, exc)
            self._control.clear()
        finally:
            self._control_sending = False

    async def open_stream(self) -> YamuxStream:
        stream = await super().open_stream()
        if PATCHED:
            tune_stream(stream)
        return stream

    async def accept_stream(self) -> Any:
        stream = await super().accept_stream()
        if PATCHED and isinstance(stream, YamuxStream):
            tune_stream(stream)
        return stream


def install(host: Any) -> bool:
    """Make ``host`` (a new py-libp2p 0.8.1 host) build :class:`Muxer` connections.

    ``muxer_opt`` alone is not enough: 0.8.1's ``MuxerMultistream.new_conn`` builds a stock
    ``Yamux`` whenever ``/yamux/1.0.0`` is negotiated, whatever class was registered.  So that
    one method of this host's upgrader is replaced (per object) by the same negotiation
    followed by the registered class.  Returns False, changing nothing, when not
    :data:`PATCHED` or the host is not laid out as 0.8.1 lays it out.
    """
    if not PATCHED:
        return False
    try:
        multistream = host.get_network().upgrader.muxer_multistream
        selector = multistream._selector
    except AttributeError:
        log.warning("libp2p host has no upgrader.muxer_multistream: stock Yamux in use")
        return False

    async def new_conn(conn: Any, peer_id: Any) -> Any:
        protocol, transport_class = await selector.select(
            conn, conn.is_initiator, multistream.negotiate_timeout
        )
        muxed = transport_class(conn, peer_id)
        return multistream._annotate_connection(muxed, conn, protocol)

    multistream.new_conn = new_conn
    return True


__all__ = [
    "LIBP2P_VERSION",
    "MAX_FRAME",
    "PATCHED",
    "Muxer",
    "defer_small_window_updates",
    "install",
    "tune_stream",
]
