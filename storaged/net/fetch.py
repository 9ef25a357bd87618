"""``/storaged/fetch/1.0.0``: ranged retrieval of one object (a share, a manifest).

Messages (framing in :mod:`storaged.net.wire`; ``→`` client to provider)::

    code  name    dir  codec  body                                                 limit
    0x01  get     →    CBOR   {"key": bytes≤64, "offset": uint, "length": uint|null,  1 KiB
                               "credit": uint}   (credit: bytes of the range the
                                                   provider may send before more credit)
    0x02  meta    ←    CBOR   {"size": uint, "length": uint}  (object size; bytes to follow) 64 B
    0x03  credit  →    CBOR   {"credit": uint}   (absolute, within the range)           64 B
    0x04  data    ←    RAW    the next bytes of the range                               1 MiB
    0x05  end     ←    CBOR   {"blake3": bytes32}  (blake3 of exactly the range's bytes) 64 B
    0x07  error   ←    CBOR   {"code": text, "message": text}                           4 KiB

A broken retrieval resumes by asking again from the first missing offset; each range carries
its own end hash, checked by the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from storaged.errors import LocalBugError, ProtocolViolation
from storaged.net.flow import CHUNK_SIZE, MAX_WINDOW, CreditReceiver, CreditSender
from storaged.net.push import MAX_KEY, digest_field, raise_remote_error, uint
from storaged.net.wire import Codec, FrameDecoder, MessageTable, MessageType, require

PROTOCOL = "/storaged/fetch/1.0.0"

TABLE = MessageTable(
    PROTOCOL,
    [
        MessageType(0x01, "get", Codec.CBOR, 1024),
        MessageType(0x02, "meta", Codec.CBOR, 64),
        MessageType(0x03, "credit", Codec.CBOR, 64),
        MessageType(0x04, "data", Codec.RAW, CHUNK_SIZE),
        MessageType(0x05, "end", Codec.CBOR, 64),
        MessageType(0x07, "error", Codec.CBOR, 4096),
    ],
)


@dataclass(frozen=True)
class Get:
    key: bytes
    offset: int
    length: int | None
    credit: int


@dataclass(frozen=True)
class Meta:
    size: int
    length: int


@dataclass(frozen=True)
class Data:
    offset: int  # within the object
    data: bytes


@dataclass(frozen=True)
class End:
    digest: bytes


class FetchClientSession:
    """Client side of one ranged retrieval, without I/O."""

    def __init__(self, key: bytes, offset: int, length: int | None, window: int) -> None:
        if len(key) > MAX_KEY or offset < 0 or (length is not None and length < 0):
            raise LocalBugError("fetch: bad key, offset or length")
        self.key, self.offset, self.length, self.window = key, offset, length, window
        self._decoder = FrameDecoder(TABLE)
        self.meta: Meta | None = None
        self.flow: CreditReceiver | None = None
        self.ended = False

    def get(self) -> bytes:
        return TABLE.encode(
            "get",
            {"key": self.key, "offset": self.offset, "length": self.length, "credit": self.window},
        )

    def receive_data(self, data: bytes) -> list[Meta | Data | End]:
        """Feed bytes from the provider; return completed events.

        Raises:
            ProtocolViolation: malformed/out-of-order frame, data beyond the credit or range.
            RemoteRejected subclass: the provider refused (e.g. RemoteNotFound).
        """
        self._decoder.feed(data)
        events: list[Meta | Data | End] = []
        while (frame := self._decoder.next_frame()) is not None:
            what = f"{PROTOCOL} {frame.name}"
            if frame.name == "error":
                raise_remote_error(frame.body, what)
            if frame.name == "meta" and self.meta is None:
                size, length = uint(frame.body, "size", what), uint(frame.body, "length", what)
                want = self.length if self.length is not None else size - self.offset
                if self.offset > size or length != min(want, size - self.offset):
                    raise ProtocolViolation(f"{what}: length {length} does not fit the request")
                self.meta = Meta(size, length)
                self.flow = CreditReceiver(0, length, self.window)
                events.append(self.meta)
            elif frame.name == "data" and self.flow is not None and not self.ended:
                pos = self.flow.on_data(len(frame.body), what)
                events.append(Data(self.offset + pos, frame.body))
            elif frame.name == "end" and self.flow is not None and not self.ended:
                if self.flow.received != self.flow.end:
                    raise ProtocolViolation(f"{what}: at {self.flow.received} of {self.flow.end}")
                self.ended = True
                events.append(End(digest_field(frame.body, what)))
            else:
                raise ProtocolViolation(f"{what}: unexpected at this point")
        return events

    def consumed(self, n: int) -> bytes | None:
        """Account ``n`` bytes handed to the consumer; maybe a credit frame to send."""
        if self.flow is None:
            raise LocalBugError("fetch: consumed before meta")
        credit = self.flow.on_stored(n)
        return None if credit is None else TABLE.encode("credit", {"credit": credit})


class FetchServerSession:
    """Provider side of one ranged retrieval, without I/O."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder(TABLE)
        self.request: Get | None = None
        self.flow: CreditSender | None = None

    def receive_data(self, data: bytes) -> Get | None:
        """Feed bytes from the client; return the request once complete (credits are applied
        to :attr:`flow`).

        Raises:
            ProtocolViolation: malformed/out-of-order frame, bad range, or a shrinking credit.
        """
        self._decoder.feed(data)
        got: Get | None = None
        while (frame := self._decoder.next_frame()) is not None:
            what = f"{PROTOCOL} {frame.name}"
            if frame.name == "get" and self.request is None:
                key = require(frame.body, "key", bytes, what)
                if len(key) > MAX_KEY:
                    raise ProtocolViolation(f"{what}: key longer than {MAX_KEY} bytes")
                length = frame.body.get("length")
                if length is not None:
                    length = uint(frame.body, "length", what)
                credit = uint(frame.body, "credit", what)
                if not 0 < credit <= MAX_WINDOW:
                    raise ProtocolViolation(f"{what}: credit must be in 1..{MAX_WINDOW}")
                self.request = Get(key, uint(frame.body, "offset", what), length, credit)
                got = self.request
            elif frame.name == "credit" and self.flow is not None:
                self.flow.grant(uint(frame.body, "credit", what), what)
            else:
                raise ProtocolViolation(f"{what}: unexpected at this point")
        return got

    def meta(self, size: int) -> tuple[bytes, int]:
        """The meta frame for an object of ``size`` bytes, and the range length to send.

        Raises:
            ProtocolViolation: the requested offset lies beyond the object.
        """
        req = self.request
        if req is None:
            raise LocalBugError("fetch: meta before get")
        if req.offset > size:
            raise ProtocolViolation(f"{PROTOCOL}: offset {req.offset} beyond size {size}")
        length = size - req.offset if req.length is None else min(req.length, size - req.offset)
        self.flow = CreditSender(0, length)
        self.flow.grant(min(req.credit, length), PROTOCOL)
        return TABLE.encode("meta", {"size": size, "length": length}), length

    def data(self, chunk: bytes) -> bytes:
        if self.flow is None or not chunk or len(chunk) > self.flow.allowed():
            raise LocalBugError("fetch: chunk sent without credit")
        self.flow.sent(len(chunk))
        return TABLE.encode("data", chunk)

    @staticmethod
    def end(digest: bytes) -> bytes:
        return TABLE.encode("end", {"blake3": digest})

    @staticmethod
    def refuse(code: str, message: str) -> bytes:
        return TABLE.encode("error", {"code": code, "message": message[:1000]})
