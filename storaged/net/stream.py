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
from storaged.net.locks import eager_lock
from storaged.net.muxer import PATCHED, tune_stream

log = logging.getLogger(__name__)


class Stream:
    """One libp2p stream (already negotiated to ``protocol``) with deadlines on every call."""

    def __init__(self, raw: Any, peer: str, protocol: str) -> None:
        self._raw = raw
        self.peer = peer
        self.protocol = protocol
        if PATCHED:
            # libp2p's per-stream state lock yields on every read and write even when free
            # (see storaged.net.muxer, which tunes the Yamux stream under it).
            eager_lock(raw, "_state_lock")
            muxed = getattr(raw, "muxed_stream", None)
            if isinstance(muxed, YamuxStream):
                tune_stream(muxed)

    @property
    def reusable(self) -> bool:
        """False once the stream is known dead: closed or reset by either side, or its
        connection shut down.  A local check with no I/O, for pools deciding whether an idle
        stream may carry another exchange (a peer that vanished without a word still looks
        alive until its connection notices)."""
        muxed = getattr(self._raw, "muxed_stream", None)
        if not isinstance(muxed, YamuxStream):
            return True  # not a muxer we can inspect: let the exchange find out
        if muxed.closed or muxed.send_closed or muxed.recv_closed or muxed.reset_received:
            return False
        conn = muxed.conn
        return not conn.event_shutting_down.is_set() and muxed.stream_id in conn.streams

    async def read(self, max_bytes: int, *, timeout: float) -> bytes:
        """Up to ``max_bytes`` of what has arrived, waiting for at least one; ``b""`` at EOF.

        Raises:
            DeadlineExceeded: nothing arrived within ``timeout`` seconds.
            StreamBroken: the stream was reset or failed.
        """
        # move_on_after, not fail_after: a plain CancelScope, where fail_after's generator-based
        # context manager costs a few microseconds more on every call of this hot path.
        try:
            with trio.move_on_after(timeout):
                data: bytes = await self._raw.read(max_bytes)
                return data
        except StreamEOF:
            return b""
        except Exception as exc:
            raise StreamBroken(f"{self._who()}: read failed: {exc!r}") from exc
        raise DeadlineExceeded(f"{self._who()}: no data for {timeout:g}s")

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Send ``data``, waiting for the peer's flow-control window if needed.

        Raises:
            DeadlineExceeded: the peer did not accept the bytes within ``timeout`` seconds.
            StreamBroken: the stream was reset or failed.
        """
        try:
            with trio.move_on_after(timeout):
                await self._raw.write(data)
                return
        except Exception as exc:
            raise StreamBroken(f"{self._who()}: write failed: {exc!r}") from exc
        raise DeadlineExceeded(f"{self._who()}: write stalled for {timeout:g}s")

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
