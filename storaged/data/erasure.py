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


def encode_blocks(padded: memoryview, k: int, n: int) -> list[bytes | memoryview]:
    """The n shares of a segment laid out zero-padded in `padded` (k equal blocks, back to back).

    Shares 0..k-1 are views of `padded` (no copy); the n - k parity shares are new bytes.

    Raises:
        ValueError: len(padded) is not a positive multiple of k.
    """
    size, rest = divmod(len(padded), k)
    if rest or not size:
        raise ValueError(f"{len(padded)} bytes do not split into {k} equal non-empty blocks")
    blocks = [padded[i * size : (i + 1) * size] for i in range(k)]
    out: list[bytes | memoryview] = zfec.Encoder(k, n).encode(blocks)
    return out


def encode(data: bytes, k: int, n: int) -> list[bytes]:
    """Split `data` into n shares, any k of which rebuild it (zero-padded to k * share_size)."""
    size = share_size(len(data), k)
    # Views, not slices: the only copies are the padding (when needed) and one per share.
    padded = memoryview(data if len(data) == size * k else data + bytes(size * k - len(data)))
    return [bytes(s) for s in encode_blocks(padded, k, n)]


def decode_into(shares: dict[int, bytes], k: int, n: int, out: memoryview) -> None:
    """Rebuild the zero-padded segment from k shares (keyed by share index) into `out`.

    `out` must be exactly k times the share size.

    Raises:
        ValueError: not exactly k shares, unequal share sizes, or `out` of the wrong size.
    """
    idx = sorted(shares)
    size = len(shares[idx[0]]) if idx else 0
    if len(idx) != k or any(len(shares[i]) != size for i in idx) or len(out) != k * size:
        raise ValueError(f"need {k} shares of one size filling {len(out)} bytes")
    blocks = zfec.Decoder(k, n).decode([shares[i] for i in idx], idx)
    for i, block in enumerate(blocks):
        out[i * size : (i + 1) * size] = block


def decode(shares: dict[int, bytes], k: int, n: int, length: int) -> bytes:
    """Rebuild the segment (first `length` bytes) from any k shares keyed by share index."""
    idx = sorted(shares)[:k]
    blocks = zfec.Decoder(k, n).decode([shares[i] for i in idx], idx)
    joined = b"".join(blocks)
    return joined if len(joined) == length else joined[:length]
