"""The Noise layer under our Yamux: a buffered packet reader that decrypts in place.

Installed by :class:`storaged.net.muxer.Muxer` on each Noise-over-TCP connection once its
handshake is done (fix 2 of :mod:`storaged.net.muxer`; pinned to py-libp2p 0.8.1).
"""

from __future__ import annotations

import os
from typing import Any

import trio
from cryptography.exceptions import InvalidTag
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.security.noise.io import NoisePacketReadWriter, NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from noise.constants import MAX_MESSAGE_LEN
from noise.exceptions import NoiseInvalidMessage

from storaged.net.locks import eager_lock

# Bytes asked of the socket per read of the Noise reader: several full messages.
_READ_AHEAD = 256 << 10


class _BufferedNoisePackets(NoisePacketReadWriter):
    """Noise's ``u16 length | message`` packet reader, reading ahead instead of twice a message.

    py-libp2p's reader calls ``recv`` for the 2-byte length and again for the body; this one
    asks the socket for what it holds (up to ``_READ_AHEAD``) and cuts whole messages out of
    that read.  A message inside one read is returned as a memoryview of it (the read is an
    immutable ``bytes``, so no copy is needed: the decryption reads it in place); only a
    message split across reads is gathered into a buffer of its own.  Only the transport
    reader of a finished handshake is replaced (nothing else reads that socket), so no byte
    meant for someone else is taken.  Writing is unchanged.
    """

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self._chunk = b""  # the last socket read
        self._pos = 0  # start of its unread bytes
        self._partial = bytearray()  # the start of a message split across reads

    async def read_msg(self) -> bytes | memoryview:  # type: ignore[override]
        """One Noise message (ciphertext): a view of the socket read it arrived in.

        Raises:
            IncompleteReadError: the connection ended (``received_bytes == 0`` between
                messages: a clean close, as py-libp2p reports it).
            Whatever the raw connection raises on a broken socket.
        """
        partial = self._partial
        if not partial:
            msg = self._cut(self._chunk, self._pos)
            if msg is not None:
                return msg
            # Split across reads: gather the message (one copy of its own bytes).  Kept on
            # self, so a read cancelled mid-message loses nothing.
            partial += memoryview(self._chunk)[self._pos :]
            self._pos = len(self._chunk)
        while True:
            chunk = await self.read_write_closer.read(_READ_AHEAD)
            if not chunk:
                raise IncompleteReadError(
                    f"Connection closed during read operation: {len(partial)} bytes of a "
                    "Noise message buffered",
                    expected_bytes=max(len(partial), 2),
                    received_bytes=len(partial),
                )
            self._chunk, self._pos = chunk, 0
            if not partial and (msg := self._cut(chunk, 0)) is not None:
                return msg
            pos = min(max(2 - len(partial), 0), len(chunk))  # complete the length prefix
            partial += chunk[:pos]
            if len(partial) >= 2:
                size = 2 + ((partial[0] << 8) | partial[1])
                take = min(size - len(partial), len(chunk) - pos)
                partial += memoryview(chunk)[pos : pos + take]
                self._pos = pos + take
                if len(partial) == size:
                    self._partial = bytearray()
                    return memoryview(partial)[2:]
            else:
                self._pos = pos

    def _cut(self, chunk: bytes, pos: int) -> memoryview | None:
        """The message starting at ``pos`` of ``chunk`` if all of it is there (consumed)."""
        if len(chunk) - pos < 2:
            return None
        end = pos + 2 + ((chunk[pos] << 8) | chunk[pos + 1])
        if end > len(chunk):
            return None
        self._pos = end
        return memoryview(chunk)[pos + 2 : end]


def _decrypt_in_place(noise: NoiseTransportReadWriter) -> None:
    """Make ``noise.read_msg`` decrypt the packet reader's memoryview where it lies.

    The stock ``read_msg`` goes through ``NoiseConnection.decrypt``, which refuses anything
    but ``bytes`` (so a view would have to be copied first) and formats two debug lines per
    message.  This one makes the same checks and the same call underneath; the nonce
    handling is the ``CipherState``'s own, untouched.
    """
    packets = noise.read_writer
    connection: Any = noise.noise_state  # a noise.connection.NoiseConnection

    async def read_msg(prefix_encoded: bool = False) -> bytes:
        """Raises:
        NoiseInvalidMessage: an oversized message, or one that fails authentication.
        IncompleteReadError and socket errors: from the packet reader."""
        data = await packets.read_msg()
        if prefix_encoded or not connection.handshake_finished:  # not after a handshake
            msg = bytes(data)
            return noise.decrypt(msg[len(noise.prefix) :] if prefix_encoded else msg)
        if len(data) > MAX_MESSAGE_LEN:
            raise NoiseInvalidMessage(f"Noise message of {len(data)} bytes")
        try:
            plain: bytes = connection.noise_protocol.cipher_state_decrypt.decrypt_with_ad(
                None, data
            )
        except InvalidTag:
            raise NoiseInvalidMessage("Failed authentication of message") from None
        return plain

    noise.read_msg = read_msg  # type: ignore[method-assign]


class FrameWriter:
    """Writes one Yamux frame as one Noise message on the socket, whole (fix 9 of
    :mod:`storaged.net.muxer`), without a cancel scope when the socket takes it at once.

    Noise gives a message its nonce when it encrypts it, so a write that stops after that
    (cancelled) or halfway through the socket leaves the peer unable to authenticate
    anything after it.  Here a pending cancellation is taken before encrypting; then the
    message is offered to the socket with a non-blocking ``os.write``, which cannot be
    interrupted.  Only if the kernel takes part of it does the rest wait for the socket, in
    a shielded scope bounded by the caller's ``timeout``.  The caller holds the connection's
    write lock, so nothing else writes this socket (after the handshake, py-libp2p writes it
    only through the muxer).
    """

    def __init__(self, noise: NoiseTransportReadWriter, sock: Any) -> None:
        self._noise = noise
        self._sock = sock  # the trio socket under the connection
        self._wait_writable = trio.lowlevel.wait_writable

    async def write(self, frame: bytes, timeout: float) -> bool:
        """Send ``frame`` (at most ``MAX_PLAINTEXT_LENGTH`` bytes); False if the peer did not
        take all of it within ``timeout`` (the connection is then unusable).

        Raises:
            trio.Cancelled: only before anything was encrypted.
            ConnectionClosedError: the socket is closed or broken.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        ciphertext = self._noise.encrypt(frame)  # uses the next nonce: no checkpoint from here
        packet = len(ciphertext).to_bytes(2, "big") + ciphertext
        sent = self._send(packet, 0)
        if sent == len(packet):
            return True
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout) as scope:
            while sent < len(packet):
                try:
                    await self._wait_writable(self._sock)
                except (trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionClosedError(f"socket closed mid-frame: {exc!r}") from exc
                sent += self._send(packet, sent)
        return not scope.cancelled_caught

    def _send(self, packet: bytes, start: int) -> int:
        """Bytes of ``packet[start:]`` the kernel took now (0 if its buffer is full).

        Raises:
            ConnectionClosedError: the socket is closed or the connection broke.
        """
        fd = self._sock.fileno()
        if fd < 0:
            raise ConnectionClosedError("socket closed")
        try:
            with memoryview(packet) as view:
                return os.write(fd, view[start:])
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ConnectionClosedError(f"connection broken: {exc!r}") from exc


def tune_secured_conn(secured: Any) -> FrameWriter | None:
    """Apply fixes 1, 2 and 9 of :mod:`storaged.net.muxer` below a Noise-over-TCP connection
    (eager TCP locks; the buffered, decrypt-in-place reader) and return its
    :class:`FrameWriter`; None if its layers are not the ones py-libp2p 0.8.1 builds for
    Noise over TCP (then nothing is changed)."""
    if type(secured) is not SecureSession:
        return None
    noise = secured.conn
    if type(noise) is not NoiseTransportReadWriter:
        return None
    packets = noise.read_writer
    raw = packets.read_write_closer
    if type(packets) is not NoisePacketReadWriter or type(raw) is not RawConnection:
        return None
    tcp = raw.stream
    if type(tcp) is not TrioTCPStream or not isinstance(tcp.stream, trio.SocketStream):
        return None
    eager_lock(tcp, "read_lock")
    eager_lock(tcp, "write_lock")
    noise.read_writer = _BufferedNoisePackets(raw)
    _decrypt_in_place(noise)
    return FrameWriter(noise, tcp.stream.socket)


__all__ = ["FrameWriter", "tune_secured_conn"]
