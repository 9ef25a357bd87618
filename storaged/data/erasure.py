"""zfec k-of-n coding of one segment into n equal shares (padding is removed by the caller,
which knows the true segment length from the manifest)."""

from __future__ import annotations

import zfec

from storaged.errors import UserError


class ErasureParamsError(UserError):
    """k and n are out of range (1 <= k <= n <= 256 is required)."""


def check_params(k: int, n: int) -> None:
    """Raises ErasureParamsError unless 1 <= k <= n <= 256."""
    if not (1 <= k <= n <= 256):
        raise ErasureParamsError(f"erasure parameters k={k}, n={n}: need 1 <= k <= n <= 256")


def share_size(length: int, k: int) -> int:
    """Size of each share for a segment of `length` bytes (at least 1)."""
    return max(1, -(-length // k))


def encode(data: bytes, k: int, n: int) -> list[bytes]:
    """Split `data` into n shares, any k of which rebuild it (zero-padded to k * share_size)."""
    size = share_size(len(data), k)
    # Views, not slices: the only copies are the padding (when needed) and one per share.
    padded = memoryview(data if len(data) == size * k else data + bytes(size * k - len(data)))
    blocks = [padded[i * size : (i + 1) * size] for i in range(k)]
    return [bytes(s) for s in zfec.Encoder(k, n).encode(blocks)]


def decode(shares: dict[int, bytes], k: int, n: int, length: int) -> bytes:
    """Rebuild the segment (first `length` bytes) from any k shares keyed by share index."""
    idx = sorted(shares)[:k]
    blocks = zfec.Decoder(k, n).decode([shares[i] for i in idx], idx)
    joined = b"".join(blocks)
    return joined if len(joined) == length else joined[:length]
