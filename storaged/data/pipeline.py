"""Streaming put/get: segment -> encrypt -> zfec -> hash, and back, in bounded memory.

Per segment work runs in a worker pool (zfec, blake3 and libsodium release the GIL) while the
calling thread reads the next segment (or fetches its shares) and hands finished ones on; at most
`window` segments are outstanding, so memory is O(window * segment_size) whatever the file size.
Results are handed to the sink / written out strictly in segment order
(:class:`~storaged.data.ordered.OrderedPool`).

Each outstanding segment owns a slot: one buffer reused from segment to segment.  Put reads
the plaintext straight into it (``readinto``), libsodium encrypts it in place and zfec reads its
k blocks as views of it; get gathers the k blocks into it and decrypts in place.  So the only
per-segment allocations are the shares handed to the sink (put) and the blocks zfec rebuilds
(get).  Fresh multi-MiB allocations are
not free: each page is faulted in and zeroed by the kernel.

Shares go out through a :data:`ShareSink` and come back through a :data:`ShareSource`, plain
callables, so a directory, the share store or the network can plug in.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import BinaryIO

import trio

from storaged.data import crypto, erasure
from storaged.data.manifest import (
    CIPHER_NONE,
    CIPHER_XCHACHA,
    Manifest,
    SegmentEntry,
    segment_count,
)
from storaged.data.ordered import OrderedPool
from storaged.errors import CapabilityError, IntegrityError, UserError

DEFAULT_SEGMENT_SIZE = 4 * 1024 * 1024
DEFAULT_K = 4
DEFAULT_N = 6

ShareSink = Callable[[int, list[bytes]], None]
"""Called once per segment, in order, with (segment index, the n shares by share index)."""
ShareSource = Callable[[int], dict[int, bytes]]
"""Returns at least k shares of a segment, keyed by share index (more lets bad ones be skipped)."""
BadShareHook = Callable[[int, int, str], None]
"""Told (segment index, share index, reason) for each share that failed verification and was
skipped; it runs in a worker thread."""


class ShareIntegrityError(IntegrityError):
    """A share's blake3 does not match the manifest; names the segment and share index."""


class NotEnoughShares(ShareIntegrityError):
    """Fewer than k good shares of a segment were available (bad ones are named in the message).

    A :class:`ShareIntegrityError` so callers that caught a bad share before still catch it.
    """


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _Scratch:
    """One slot's reusable buffer, grown on demand (so a small file allocates little)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def view(self, length: int) -> memoryview:
        if len(self._buf) < length:
            self._buf = bytearray(length)
        return memoryview(self._buf)[:length]


def _read_exact(src: BinaryIO, into: memoryview, index: int) -> None:
    """Fill `into` from `src` (``readinto`` when the object has it, else ``read``).

    Raises:
        UserError: the file ended first (it shrank while being read).
    """
    readinto = getattr(src, "readinto", None)
    got = 0
    while got < len(into):
        if readinto is not None:
            n = readinto(into[got:]) or 0
        else:
            chunk = src.read(len(into) - got)
            n = len(chunk)
            into[got : got + n] = chunk
        if n == 0:
            raise UserError(f"file shrank while reading (segment {index} is short)")
        got += n


def encode_file(
    src: BinaryIO,
    sink: ShareSink,
    *,
    size: int | None = None,
    k: int = DEFAULT_K,
    n: int = DEFAULT_N,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    public: bool = False,
    workers: int | None = None,
    window: int | None = None,
) -> tuple[Manifest, bytes | None]:
    """Read `src` to its end, push every segment's shares to `sink`; return (manifest, key).

    `size` defaults to the file's size from fstat; the file must not change while read.
    The key is None for a public file.  `sink` runs on the calling thread.

    Raises:
        ErasureParamsError: bad k or n.
        UserError: bad segment size, or the file size differs from `size`.
        Exception: whatever `sink` raises (no later segment is handed to it).
    """
    erasure.check_params(k, n)
    if not 1 <= segment_size <= 2**31:
        raise UserError(f"segment size {segment_size} must be in [1, 2**31]")
    if size is None:
        size = os.fstat(src.fileno()).st_size
    key = None if public else secrets.token_bytes(crypto.KEY_SIZE)
    prefix = None if public else secrets.token_bytes(crypto.NONCE_PREFIX_SIZE)
    count = segment_count(size, segment_size)
    workers = workers or _default_workers()
    # one slot per worker, one being filled on this thread, one done and awaiting its turn
    window = window or workers + 2
    tag = 0 if key is None else crypto.TAG_SIZE
    entries: list[SegmentEntry] = []
    # Per slot, one buffer: the plaintext is read into it, encrypted in place (ciphertext + tag)
    # and zero-padded to k equal blocks, which zfec reads as views.
    bufs = [_Scratch() for _ in range(window)]

    def padded_length(length: int) -> int:
        return k * erasure.share_size(length + tag, k)

    def put_segment(index: int, length: int, slot: int) -> tuple[list[bytes], SegmentEntry]:
        stored = length + tag
        padded = bufs[slot].view(padded_length(length))
        if key is not None and prefix is not None:
            ad = crypto.associated_data(size, segment_size, count, index)
            crypto.encrypt_in_place(key, prefix, ad, index, padded, length)
        padded[stored:] = bytes(len(padded) - stored)  # the buffer holds an older segment
        segment_hash = crypto.hash_segment(padded[:stored])
        shares = erasure.encode_blocks(padded, k, n)
        entry = SegmentEntry(segment_hash, tuple(crypto.hash_share(s) for s in shares))
        # The data shares are views of the reused buffer: the sink gets copies it may keep.
        return [s if isinstance(s, bytes) else bytes(s) for s in shares], entry

    def consume(result: tuple[list[bytes], SegmentEntry]) -> None:
        shares, entry = result
        sink(len(entries), shares)
        entries.append(entry)

    with OrderedPool(consume, workers=workers, window=window, name="put") as pool:
        for index in range(count):
            length = min(segment_size, size - index * segment_size)
            slot = pool.reserve()
            _read_exact(src, bufs[slot].view(padded_length(length))[:length], index)
            pool.submit(put_segment, index, length, slot)
    if src.read(1):
        raise UserError(f"file grew while reading (longer than {size} bytes)")
    manifest = Manifest(
        size, segment_size, k, n, CIPHER_NONE if public else CIPHER_XCHACHA, prefix, tuple(entries)
    )
    return manifest, key


def _verified_shares(
    manifest: Manifest, index: int, shares: dict[int, bytes], on_bad_share: BadShareHook | None
) -> dict[int, bytes]:
    """The first k shares (in index order) whose blake3 matches the manifest.

    Raises:
        NotEnoughShares: fewer than k verified.
    """
    entry = manifest.segments[index]
    good: dict[int, bytes] = {}
    bad: list[str] = []
    # Check shares in index order until k verify; a share that fails its hash is skipped (and
    # reported) so the spares (n - k of them) are used instead of failing the whole get.
    for i in sorted(shares):
        if not 0 <= i < manifest.n:
            reason = f"share index {i} out of range (n={manifest.n})"
        elif crypto.hash_share(shares[i]) != entry.share_hashes[i]:
            reason = f"share {i}: blake3 does not match manifest"
        else:
            good[i] = shares[i]
            if len(good) == manifest.k:
                return good
            continue
        bad.append(reason)
        if on_bad_share is not None:
            on_bad_share(index, i, reason)
    detail = f" ({len(bad)} bad: {'; '.join(bad)})" if bad else ""
    raise NotEnoughShares(
        f"segment {index}: {len(good)} good shares of {len(shares)} given, "
        f"need {manifest.k}{detail}"
    )


def decode_file(
    manifest: Manifest,
    key: bytes | None,
    source: ShareSource,
    dst: BinaryIO,
    *,
    workers: int | None = None,
    window: int | None = None,
    on_bad_share: BadShareHook | None = None,
) -> None:
    """Fetch shares per segment from `source`, verify, decode, decrypt, write to `dst` in order.

    A share whose hash does not match the manifest is skipped (passed to `on_bad_share`) and the
    next one is used, so up to (given - k) corrupted shares per segment are tolerated.  `source`
    and ``dst.write`` run on the calling thread; ``dst.write`` is given a memoryview of a reused
    buffer, valid until it returns (a writer that keeps the data must copy it).

    Raises:
        CapabilityError: the file is encrypted and no key was given, or the key is wrong.
        NotEnoughShares: fewer than k shares of a segment verified (names the segment, how many
            were good and why the others were refused).
        IntegrityError: a decoded segment does not match its manifest hash (or a share that
            matched its hash has a size the manifest does not imply).
        Exception: whatever `source` or ``dst.write`` raises.
    """
    if manifest.encrypted and key is None:
        raise CapabilityError("this file is encrypted and the capability carries no key")
    if not manifest.encrypted:
        key = None
    workers = workers or _default_workers()
    # one slot per worker, one being filled on this thread, one done and awaiting its turn
    window = window or workers + 2
    k, n, count = manifest.k, manifest.n, len(manifest.segments)
    bufs = [_Scratch() for _ in range(window)]  # per slot: the k blocks, decrypted in place

    def get_segment(index: int, shares: dict[int, bytes], slot: int) -> memoryview:
        good = _verified_shares(manifest, index, shares, on_bad_share)
        stored = manifest.stored_length(index)
        share_len = erasure.share_size(stored, k)
        for i, share in good.items():
            if len(share) != share_len:
                raise IntegrityError(
                    f"segment {index}: share {i} is {len(share)} bytes, the manifest implies "
                    f"{share_len}"
                )
        padded = bufs[slot].view(k * share_len)
        erasure.decode_into(good, k, n, padded)
        if crypto.hash_segment(padded[:stored]) != manifest.segments[index].segment_hash:
            raise IntegrityError(f"segment {index}: decoded bytes do not match the manifest")
        if key is None:
            return padded[:stored]
        ad = crypto.associated_data(manifest.size, manifest.segment_size, count, index)
        try:
            plain_len = crypto.decrypt_in_place(
                key, manifest.nonce_prefix or b"", ad, index, padded, stored
            )
        except crypto.DecryptionError as exc:
            # The ciphertext matched the manifest's hash, so the key (not the data) is wrong.
            raise CapabilityError("the key in this capability does not decrypt this file") from exc
        return padded[:plain_len]

    def write(plain: memoryview) -> None:
        dst.write(plain)

    with OrderedPool(write, workers=workers, window=window, name="get") as pool:
        for index in range(count):
            slot = pool.reserve()
            pool.submit(get_segment, index, source(index), slot)


async def encode_file_async(
    src: BinaryIO, sink: ShareSink, **kw: object
) -> tuple[Manifest, bytes | None]:
    """:func:`encode_file` off the trio thread (the sink runs in that worker thread)."""
    return await trio.to_thread.run_sync(lambda: encode_file(src, sink, **kw))  # type: ignore[arg-type]


async def decode_file_async(
    manifest: Manifest, key: bytes | None, source: ShareSource, dst: BinaryIO, **kw: object
) -> None:
    """:func:`decode_file` off the trio thread (the source runs in that worker thread)."""
    await trio.to_thread.run_sync(
        lambda: decode_file(manifest, key, source, dst, **kw),  # type: ignore[arg-type]
    )
