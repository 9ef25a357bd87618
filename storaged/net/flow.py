"""Credit-based flow control for bulk transfers, and the storage interfaces they stream through.

Why credits: py-libp2p's Yamux resets a sender's stream when the receiver's window stays full
for 5 s.  A receiver that simply stops reading while its disk is slow would therefore kill
the transfer.  Here the receiver grants *credit* (an absolute byte position the sender may
send up to) of at most ``window`` bytes beyond what it has stored, and it always keeps reading:
bytes it has not stored yet wait in a bounded in-memory queue, which can never overflow because
the sender may not exceed the credit.  Memory per transfer is bounded by ``window`` + one chunk.
"""

from __future__ import annotations

from typing import Protocol

from storaged.errors import ProtocolViolation

CHUNK_SIZE = 1 << 20  # data frames carry 256 KiB .. 1 MiB; we send 1 MiB
MIN_CHUNK = 256 << 10
DEFAULT_WINDOW = 8 << 20  # credit granted ahead of what the receiver has stored
MAX_WINDOW = 64 << 20


class ChunkSink(Protocol):
    """Where received bytes go (the node implements it over the share store).

    Calls for one key come in order: ``begin``, any ``write``s at increasing offsets, then
    ``commit`` (hash verified) or ``discard`` (hash mismatch).  A transfer that breaks off gets
    neither: the partial bytes stay, and the next ``begin`` for the key resumes after them.
    """

    async def begin(self, key: bytes, size: int, digest: bytes) -> int:
        """Prepare to receive ``size`` bytes hashing to ``digest``; return how many leading
        bytes are already durably held (0 for a new object).  Raise a StoragedError to refuse
        (e.g. ResourceError when out of space)."""
        ...

    async def read_back(self, key: bytes, offset: int, length: int) -> bytes:
        """Bytes already held (used to hash the held prefix when resuming)."""
        ...

    async def write(self, key: bytes, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``."""
        ...

    async def commit(self, key: bytes) -> None:
        """All bytes arrived and match the digest: make the object visible."""
        ...

    async def discard(self, key: bytes) -> None:
        """The bytes failed verification: drop everything held for ``key``."""
        ...


class ChunkSource(Protocol):
    """Where sent bytes come from (the node implements it over the share store)."""

    async def size(self, key: bytes) -> int:
        """Total size of the object; raise NotFound if it is not held."""
        ...

    async def read(self, key: bytes, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end)."""
        ...


class CreditSender:
    """The sending side's view: how far it has sent and how far it may send."""

    def __init__(self, position: int, end: int) -> None:
        self.position = position
        self.end = end
        self.credit = position

    def grant(self, credit: int, what: str) -> None:
        """Apply a credit message (credits only grow, never past ``end``).

        Raises:
            ProtocolViolation: the credit shrinks or exceeds the end.
        """
        if credit < self.credit or credit > self.end:
            raise ProtocolViolation(f"{what}: credit {credit} outside [{self.credit}, {self.end}]")
        self.credit = credit

    def allowed(self) -> int:
        """Bytes that may be sent now."""
        return self.credit - self.position

    def sent(self, n: int) -> None:
        self.position += n


class CreditReceiver:
    """The receiving side's view: bytes received, bytes stored, credit granted."""

    def __init__(self, position: int, end: int, window: int) -> None:
        self.received = position
        self.stored = position
        self.end = end
        self.window = window
        self.granted = min(end, position + window)

    def on_data(self, n: int, what: str) -> int:
        """Account ``n`` received bytes; return the offset they belong at.

        Raises:
            ProtocolViolation: the sender exceeded its credit (or the object's size), or sent
                a chunk smaller than MIN_CHUNK that does not end the object.
        """
        offset = self.received
        if n == 0 or offset + n > self.granted:
            raise ProtocolViolation(
                f"{what}: {n} bytes at {offset} exceed credit {self.granted} (size {self.end})"
            )
        if n < MIN_CHUNK and offset + n != self.end:
            # Tiny chunks would let a peer fill our queue with many small items.
            raise ProtocolViolation(f"{what}: chunk of {n} bytes below {MIN_CHUNK} mid-object")
        self.received += n
        return offset

    def on_stored(self, n: int) -> int | None:
        """Account ``n`` stored bytes; return a new credit to send, or None if not worth it
        yet (credits go out once a quarter window has been freed, to keep messages few)."""
        self.stored += n
        target = min(self.end, self.stored + self.window)
        if (target >= self.end and self.granted < self.end) or target - self.granted >= max(
            self.window // 4, 1
        ):
            self.granted = target
            return target
        return None
