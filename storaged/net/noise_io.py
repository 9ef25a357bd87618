"""The Noise layer under our Yamux: a buffered packet reader that decrypts in place.

Installed by :class:`storaged.net.muxer.Muxer` on each Noise-over-TCP connection once its
handshake is done (fix 2 of :mod:`storaged.net.muxer`; pinned to py-libp2p 0.8.1).
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from libp2p.io.exceptions import IncompleteReadError
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


def tune_secured_conn(secured: Any) -> bool:
    """Apply fixes 1 and 2 of :mod:`storaged.net.muxer` below a Noise-over-TCP connection
    (eager TCP locks; the buffered, decrypt-in-place reader); False if its layers are not the
    ones py-libp2p 0.8.1 builds for Noise over TCP (then nothing is changed)."""
    if type(secured) is not SecureSession:
        return False
    noise = secured.conn
    if type(noise) is not NoiseTransportReadWriter:
        return False
    packets = noise.read_writer
    raw = packets.read_write_closer
    if type(packets) is not NoisePacketReadWriter or type(raw) is not RawConnection:
        return False
    tcp = raw.stream
    if type(tcp) is not TrioTCPStream:
        return False
    eager_lock(tcp, "read_lock")
    eager_lock(tcp, "write_lock")
    noise.read_writer = _BufferedNoisePackets(raw)
    _decrypt_in_place(noise)
    return True


__all__ = ["tune_secured_conn"]
