"""A byte stream to one peer, as the rest of storaged sees it (no libp2p types leak out).

py-libp2p streams have two traps this wrapper closes: reads and writes never time out (a hung
peer blocks forever), and every failure is a different libp2p exception.  Here every call takes
a deadline and every failure is one of :class:`StreamBroken` / :class:`DeadlineExceeded`.
``read`` returns ``b""`` at a clean end of stream, like a socket.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from storaged.net.errors import DeadlineExceeded, StreamBroken

log = logging.getLogger(__name__)


class Stream:
    """One libp2p stream (already negotiated to ``protocol``) with deadlines on every call."""

    def __init__(self, raw: Any, peer: str, protocol: str) -> None:
        self._raw = raw
        self.peer = peer
        self.protocol = protocol
        muxed = getattr(raw, "muxed_stream", None)
        if isinstance(muxed, YamuxStream):
            _defer_small_window_updates(muxed)

    async def read(self, max_bytes: int, *, timeout: float) -> bytes:
        """Up to ``max_bytes`` of what has arrived, waiting for at least one; ``b""`` at EOF.

        Raises:
            DeadlineExceeded: nothing arrived within ``timeout`` seconds.
            StreamBroken: the stream was reset or failed.
        """
        try:
            with trio.fail_after(timeout):
                data: bytes = await self._raw.read(max_bytes)
                return data
        except StreamEOF:
            return b""
        except trio.TooSlowError:
            raise DeadlineExceeded(f"{self._who()}: no data for {timeout:g}s") from None
        except Exception as exc:
            raise StreamBroken(f"{self._who()}: read failed: {exc!r}") from exc

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Send ``data``, waiting for the peer's flow-control window if needed.

        Raises:
            DeadlineExceeded: the peer did not accept the bytes within ``timeout`` seconds.
            StreamBroken: the stream was reset or failed.
        """
        try:
            with trio.fail_after(timeout):
                await self._raw.write(data)
        except trio.TooSlowError:
            raise DeadlineExceeded(f"{self._who()}: write stalled for {timeout:g}s") from None
        except Exception as exc:
            raise StreamBroken(f"{self._who()}: write failed: {exc!r}") from exc

    async def read_in_scope(self, max_bytes: int) -> bytes:
        """:meth:`read` without a deadline of its own, for a caller already inside one (an RPC
        exchange bounded as a whole): saves a cancel scope per call on the hot path.

        Raises:
            StreamBroken: the stream was reset or failed.
        """
        try:
            data: bytes = await self._raw.read(max_bytes)
            return data
        except StreamEOF:
            return b""
        except trio.Cancelled:
            raise
        except Exception as exc:
            raise StreamBroken(f"{self._who()}: read failed: {exc!r}") from exc

    async def write_in_scope(self, data: bytes) -> None:
        """:meth:`write` without a deadline of its own, for a caller already inside one.

        Raises:
            StreamBroken: the stream was reset or failed.
        """
        try:
            await self._raw.write(data)
        except trio.Cancelled:
            raise
        except Exception as exc:
            raise StreamBroken(f"{self._who()}: write failed: {exc!r}") from exc

    async def close(self, *, timeout: float = 5.0) -> None:
        """Half-close our side cleanly (the peer reads EOF); falls back to reset on failure."""
        try:
            with trio.fail_after(timeout):
                await self._raw.close()
        except Exception:
            await self.reset()

    async def reset(self) -> None:
        """Abort the stream in both directions; never raises."""
        with trio.move_on_after(2.0), contextlib.suppress(Exception):
            await self._raw.reset()

    def _who(self) -> str:
        return f"peer {self.peer[:16]}… {self.protocol}"


def _defer_small_window_updates(muxed: YamuxStream) -> None:
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
            threshold = muxed._grow_threshold()
            if threshold > 0 and delta < threshold and (
                muxed._pending_recv_release + bytes_read < threshold
            ):
                muxed._pending_recv_release += bytes_read
                return
        await original(bytes_read=bytes_read)

    muxed._auto_tune_and_send_window_update = deferred  # type: ignore[method-assign]
