"""``/storaged/push/1.0.0``: streamed, resumable upload of one object (a provider's shares).

Messages (framing in :mod:`storaged.net.wire`; ``→`` client to provider)::

    code  name    dir  codec  body                                         limit
    0x01  offer   →    CBOR   {"key": bytes≤64, "size": uint, "blake3": bytes32}   1 KiB
    0x02  accept  ←    CBOR   {"offset": uint, "credit": uint}                    64 B
    0x03  credit  ←    CBOR   {"credit": uint}                                    64 B
    0x04  data    →    RAW    the next bytes of the object                         1 MiB
    0x05  end     →    CBOR   {"blake3": bytes32}  (the whole object's blake3)    64 B
    0x06  done    ←    CBOR   {"size": uint}       (stored and verified)          64 B
    0x07  error   ←    CBOR   {"code": text, "message": text}                     4 KiB

Exchange: offer → accept (``offset`` = bytes the provider already holds: a resumed push
starts there) → data frames, never past the granted credit (see :mod:`storaged.net.flow`),
while credits flow back → end → done.  The provider hashes the whole object (re-reading a held
prefix on resume) and answers ``error`` with code ``integrity`` on mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storaged.errors import LocalBugError, ProtocolViolation
from storaged.net.errors import ERROR_CLASSES, RemoteRejected
from storaged.net.flow import CHUNK_SIZE, CreditReceiver, CreditSender
from storaged.net.wire import Codec, FrameDecoder, MessageTable, MessageType, require

PROTOCOL = "/storaged/push/1.0.0"
MAX_KEY = 64
DIGEST_SIZE = 32

TABLE = MessageTable(
    PROTOCOL,
    [
        MessageType(0x01, "offer", Codec.CBOR, 1024),
        MessageType(0x02, "accept", Codec.CBOR, 64),
        MessageType(0x03, "credit", Codec.CBOR, 64),
        MessageType(0x04, "data", Codec.RAW, CHUNK_SIZE),
        MessageType(0x05, "end", Codec.CBOR, 64),
        MessageType(0x06, "done", Codec.CBOR, 64),
        MessageType(0x07, "error", Codec.CBOR, 4096),
    ],
)


@dataclass(frozen=True)
class Offered:
    key: bytes
    size: int
    digest: bytes


@dataclass(frozen=True)
class Chunk:
    offset: int
    data: bytes


@dataclass(frozen=True)
class Ended:
    digest: bytes


def raise_remote_error(body: dict[str, Any], what: str) -> None:
    """Raise the RemoteRejected subclass an ``error`` frame names.

    Raises:
        RemoteRejected (subclass by code), or ProtocolViolation for a malformed error frame.
    """
    code = require(body, "code", str, what)
    message = require(body, "message", str, what)
    raise ERROR_CLASSES.get(code, RemoteRejected)(f"peer refused ({code}): {message}")


def uint(body: dict[str, Any], key: str, what: str) -> int:
    value: int = require(body, key, int, what)
    if value < 0:
        raise ProtocolViolation(f"{what}: {key} is negative")
    return value


def digest_field(body: dict[str, Any], what: str) -> bytes:
    digest: bytes = require(body, "blake3", bytes, what)
    if len(digest) != DIGEST_SIZE:
        raise ProtocolViolation(f"{what}: blake3 must be {DIGEST_SIZE} bytes")
    return digest


class PushSenderSession:
    """Client side of one push, without I/O."""

    def __init__(self, key: bytes, size: int, digest: bytes) -> None:
        if len(key) > MAX_KEY or len(digest) != DIGEST_SIZE or size < 0:
            raise LocalBugError("push: key too long, bad digest or negative size")
        self.key, self.size, self.digest = key, size, digest
        self._decoder = FrameDecoder(TABLE)
        self.flow: CreditSender | None = None
        self.finished = False

    def offer(self) -> bytes:
        return TABLE.encode("offer", {"key": self.key, "size": self.size, "blake3": self.digest})

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the provider (accept / credit / done / error).

        Raises:
            ProtocolViolation: malformed or out-of-order frame.
            RemoteRejected subclass: the provider refused or failed verification.
        """
        self._decoder.feed(data)
        while (frame := self._decoder.next_frame()) is not None:
            what = f"{PROTOCOL} {frame.name}"
            if frame.name == "error":
                raise_remote_error(frame.body, what)
            if frame.name == "accept" and self.flow is None:
                offset = uint(frame.body, "offset", what)
                if offset > self.size:
                    raise ProtocolViolation(f"{what}: offset {offset} beyond size {self.size}")
                self.flow = CreditSender(offset, self.size)
                self.flow.grant(uint(frame.body, "credit", what), what)
            elif frame.name == "credit" and self.flow is not None:
                self.flow.grant(uint(frame.body, "credit", what), what)
            elif frame.name == "done" and self.flow is not None and self.flow.position == self.size:
                if uint(frame.body, "size", what) != self.size:
                    raise ProtocolViolation(f"{what}: provider stored a different size")
                self.finished = True
            else:
                raise ProtocolViolation(f"{what}: unexpected at this point")

    def data(self, chunk: bytes) -> bytes:
        """Frame for the next chunk (must fit the credit)."""
        if self.flow is None or len(chunk) > self.flow.allowed() or not chunk:
            raise LocalBugError("push: chunk sent without credit")
        self.flow.sent(len(chunk))
        return TABLE.encode("data", chunk)

    def end(self) -> bytes:
        if self.flow is None or self.flow.position != self.size:
            raise LocalBugError("push: end before all bytes were sent")
        return TABLE.encode("end", {"blake3": self.digest})


class PushReceiverSession:
    """Provider side of one push, without I/O."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._decoder = FrameDecoder(TABLE)
        self.offered: Offered | None = None
        self.flow: CreditReceiver | None = None
        self.ended = False

    def receive_data(self, data: bytes) -> list[Offered | Chunk | Ended]:
        """Feed bytes from the client; return the events they complete.

        Raises:
            ProtocolViolation: malformed frame, out-of-order frame, data beyond the credit,
                or an end whose digest differs from the offer's.
        """
        self._decoder.feed(data)
        events: list[Offered | Chunk | Ended] = []
        while (frame := self._decoder.next_frame()) is not None:
            what = f"{PROTOCOL} {frame.name}"
            if frame.name == "offer" and self.offered is None:
                key = require(frame.body, "key", bytes, what)
                if len(key) > MAX_KEY:
                    raise ProtocolViolation(f"{what}: key longer than {MAX_KEY} bytes")
                self.offered = Offered(
                    key, uint(frame.body, "size", what), digest_field(frame.body, what)
                )
                events.append(self.offered)
            elif frame.name == "data" and self.flow is not None and not self.ended:
                events.append(Chunk(self.flow.on_data(len(frame.body), what), frame.body))
            elif frame.name == "end" and self.flow is not None and not self.ended:
                if self.flow.received != self.flow.end:
                    raise ProtocolViolation(f"{what}: at {self.flow.received} of {self.flow.end}")
                digest = digest_field(frame.body, what)
                if self.offered is None or digest != self.offered.digest:
                    raise ProtocolViolation(f"{what}: digest differs from the offer's")
                self.ended = True
                events.append(Ended(digest))
            else:
                raise ProtocolViolation(f"{what}: unexpected at this point")
        return events

    @property
    def mid_frame(self) -> bool:
        return self._decoder.buffered > 0

    def accept(self, offset: int) -> bytes:
        if self.offered is None or self.flow is not None:
            raise LocalBugError("push: accept without a fresh offer")
        self.flow = CreditReceiver(offset, self.offered.size, self.window)
        return TABLE.encode("accept", {"offset": offset, "credit": self.flow.granted})

    def stored(self, n: int) -> bytes | None:
        """Account ``n`` bytes written to the sink; maybe a credit frame to send."""
        if self.flow is None:
            raise LocalBugError("push: stored before accept")
        credit = self.flow.on_stored(n)
        return None if credit is None else TABLE.encode("credit", {"credit": credit})

    def done(self) -> bytes:
        if self.offered is None:
            raise LocalBugError("push: done without offer")
        return TABLE.encode("done", {"size": self.offered.size})

    @staticmethod
    def refuse(code: str, message: str) -> bytes:
        return TABLE.encode("error", {"code": code, "message": message[:1000]})
