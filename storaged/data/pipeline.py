"""Streaming put/get: segment -> encrypt -> zfec -> hash, and back, in bounded memory.

Per segment work runs in a thread pool (zfec, blake3 and libsodium release the GIL); at most
`window` segments are in flight, so memory is O(window * segment_size) whatever the file size.
Results are handed to the sink / written out strictly in segment order.

Shares go out through a :data:`ShareSink` and come back through a :data:`ShareSource`, plain
callables, so a directory, the share store or the network can plug in.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


def _put_segment(
    plain: bytes, index: int, key: bytes | None, prefix: bytes | None, ad: bytes, k: int, n: int
) -> tuple[list[bytes], SegmentEntry]:
    sealed = plain if key is None else crypto.encrypt_segment(key, prefix or b"", ad, index, plain)
    shares = erasure.encode(sealed, k, n)
    entry = SegmentEntry(crypto.hash_segment(sealed), tuple(crypto.hash_share(s) for s in shares))
    return shares, entry


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
    The key is None for a public file.

    Raises:
        ErasureParamsError: bad k or n.
        UserError: bad segment size, or the file size differs from `size`.
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
    window = window or workers + 1
    entries: list[SegmentEntry] = []
    pending: deque[Future[tuple[list[bytes], SegmentEntry]]] = deque()

    def drain_one() -> None:
        shares, entry = pending.popleft().result()
        sink(len(entries), shares)
        entries.append(entry)

    with ThreadPoolExecutor(workers, thread_name_prefix="put") as pool:
        for index in range(count):
            plain = src.read(min(segment_size, size - index * segment_size))
            if len(plain) != min(segment_size, size - index * segment_size):
                raise UserError(f"file shrank while reading (segment {index} is short)")
            ad = crypto.associated_data(size, segment_size, count, index)
            pending.append(pool.submit(_put_segment, plain, index, key, prefix, ad, k, n))
            if len(pending) >= window:
                drain_one()
        while pending:
            drain_one()
    if src.read(1):
        raise UserError(f"file grew while reading (longer than {size} bytes)")
    manifest = Manifest(
        size, segment_size, k, n, CIPHER_NONE if public else CIPHER_XCHACHA, prefix, tuple(entries)
    )
    return manifest, key


def _get_segment(
    manifest: Manifest,
    key: bytes | None,
    index: int,
    shares: dict[int, bytes],
    on_bad_share: BadShareHook | None = None,
) -> bytes:
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
                break
            continue
        bad.append(reason)
        if on_bad_share is not None:
            on_bad_share(index, i, reason)
    if len(good) < manifest.k:
        detail = f" ({len(bad)} bad: {'; '.join(bad)})" if bad else ""
        raise NotEnoughShares(
            f"segment {index}: {len(good)} good shares of {len(shares)} given, "
            f"need {manifest.k}{detail}"
        )
    sealed = erasure.decode(good, manifest.k, manifest.n, manifest.stored_length(index))
    if crypto.hash_segment(sealed) != entry.segment_hash:
        raise IntegrityError(f"segment {index}: decoded bytes do not match the manifest")
    if key is None:
        return sealed
    ad = crypto.associated_data(manifest.size, manifest.segment_size, len(manifest.segments), index)
    try:
        return crypto.decrypt_segment(key, manifest.nonce_prefix or b"", ad, index, sealed)
    except crypto.DecryptionError as exc:
        # The ciphertext matched the manifest's hash, so the key (not the data) is wrong.
        raise CapabilityError("the key in this capability does not decrypt this file") from exc


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
    next one is used, so up to (given - k) corrupted shares per segment are tolerated.

    Raises:
        CapabilityError: the file is encrypted and no key was given, or the key is wrong.
        NotEnoughShares: fewer than k shares of a segment verified (names the segment, how many
            were good and why the others were refused).
        IntegrityError: a decoded segment does not match its manifest hash.
    """
    if manifest.encrypted and key is None:
        raise CapabilityError("this file is encrypted and the capability carries no key")
    if not manifest.encrypted:
        key = None
    workers = workers or _default_workers()
    window = window or workers + 1
    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="get") as pool:
        for index in range(len(manifest.segments)):
            pending.append(
                pool.submit(_get_segment, manifest, key, index, source(index), on_bad_share)
            )
            if len(pending) >= window:
                dst.write(pending.popleft().result())
        while pending:
            dst.write(pending.popleft().result())


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
