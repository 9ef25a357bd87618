"""Per-segment authenticated encryption (XChaCha20-Poly1305) and domain-separated blake3.

Nonce: 24 bytes = the file's random 16-byte nonce prefix || segment index (8 bytes, big-endian).
A fresh prefix is drawn per file and the key is fresh per file too, so a nonce never repeats
under one key; deriving from the index (instead of random per segment) keeps the manifest small.

Associated data binds each segment to its file and position, so segments cannot be reordered,
swapped between files or dropped at the end undetected (the total count and file size are in it):
``b"storaged seg v1" || file_size u64 || segment_size u32 || segment_count u64 || index u64``.

The pipeline uses :func:`encrypt_in_place` / :func:`decrypt_in_place`, which call PyNaCl's
bundled libsodium directly (through its cffi module, which releases the GIL) on a caller-owned
buffer: the PyNaCl wrappers zero a fresh output, then copy it into a new bytes object, which
cost more than half as much CPU as the cipher itself on 4 MiB segments.
:func:`encrypt_segment` / :func:`decrypt_segment` are the same cipher returning bytes.
"""

from __future__ import annotations

import struct

import blake3
from nacl._sodium import ffi as _ffi  # PyNaCl's cffi binding of its bundled libsodium
from nacl._sodium import lib as _sodium
from nacl.bindings import sodium_init

from storaged.errors import IntegrityError

# Picks libsodium's SIMD ChaCha20/Poly1305 for this CPU (importing nacl.bindings does it too, but
# only this module calls libsodium directly); without it the portable code runs ~3x slower.
sodium_init()

KEY_SIZE = 32
NONCE_PREFIX_SIZE = 16
TAG_SIZE = 16
NONCE_SIZE = NONCE_PREFIX_SIZE + 8

SHARE_CONTEXT = "storaged 2026-11 share v1"
SEGMENT_CONTEXT = "storaged 2026-11 segment v1"


class DecryptionError(IntegrityError):
    """A segment's authentication tag did not verify (wrong key, or tampered/misplaced bytes)."""


def hash_share(data: bytes | memoryview) -> bytes:
    """blake3 of one share, keyed by the share context."""
    return blake3.blake3(data, derive_key_context=SHARE_CONTEXT).digest()


def hash_segment(data: bytes | memoryview) -> bytes:
    """blake3 of one (encrypted) segment, keyed by the segment context."""
    return blake3.blake3(data, derive_key_context=SEGMENT_CONTEXT).digest()


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">Q", index)


def associated_data(file_size: int, segment_size: int, count: int, index: int) -> bytes:
    """The bytes every segment's tag authenticates besides its ciphertext."""
    return b"storaged seg v1" + struct.pack(">QIQQ", file_size, segment_size, count, index)


def _check(key: bytes, nonce: bytes) -> None:
    # libsodium reads exactly 32 key bytes and 24 nonce bytes: a short one would be read past.
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes and nonce prefix {NONCE_PREFIX_SIZE}")


Bytes = bytes | bytearray | memoryview
"""Any contiguous byte buffer (memoryviews must be C-contiguous, of bytes)."""


def encrypt_in_place(key: bytes, prefix: bytes, ad: bytes, index: int, buf: memoryview,
                     length: int) -> int:
    """Encrypt the plaintext ``buf[:length]`` in place: ``buf[:length + 16]`` becomes the
    ciphertext then the tag (libsodium supports the exact overlap; its tests encrypt in place).
    Return length + 16.

    Raises:
        ValueError: `buf` is shorter than length + 16, or the key or prefix has the wrong length.
    """
    nonce = _nonce(prefix, index)
    _check(key, nonce)
    sealed_len = length + TAG_SIZE
    if length < 0 or len(buf) < sealed_len:
        raise ValueError(f"buffer of {len(buf)} bytes, need {sealed_len}")
    ptr = _ffi.from_buffer(buf, require_writable=True)
    clen = _ffi.new("unsigned long long *")
    rc = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        ptr, clen, ptr, length, ad, len(ad), _ffi.NULL, nonce, key
    )
    if rc != 0 or clen[0] != sealed_len:  # libsodium documents no failure for valid lengths
        raise ValueError(f"segment {index}: encryption failed (rc={rc})")
    return sealed_len


def decrypt_in_place(key: bytes, prefix: bytes, ad: bytes, index: int, buf: memoryview,
                     sealed_len: int) -> int:
    """Check the tag of ``buf[:sealed_len]`` and decrypt it in place into
    ``buf[:sealed_len - 16]``; return that length.  If the tag fails nothing is decrypted (and
    libsodium zeroes ``buf[:sealed_len - 16]``).

    Raises:
        DecryptionError: the tag does not verify for this key, index and file (or the sealed
            bytes are shorter than a tag).
        ValueError: `buf` is shorter than `sealed_len`, or the key or prefix has the wrong length.
    """
    nonce = _nonce(prefix, index)
    _check(key, nonce)
    if sealed_len < TAG_SIZE:
        raise DecryptionError(f"segment {index} is shorter than its tag")
    if len(buf) < sealed_len:
        raise ValueError(f"buffer of {len(buf)} bytes, need {sealed_len}")
    ptr = _ffi.from_buffer(buf, require_writable=True)
    mlen = _ffi.new("unsigned long long *")
    rc = _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        ptr, mlen, _ffi.NULL, ptr, sealed_len, ad, len(ad), nonce, key
    )
    if rc != 0:
        raise DecryptionError(f"segment {index} failed authentication")
    return sealed_len - TAG_SIZE


def encrypt_segment(key: bytes, prefix: bytes, ad: bytes, index: int, plain: Bytes) -> bytes:
    """Encrypt one segment; the result is len(plain) + 16 bytes.

    Raises:
        ValueError: the key or prefix has the wrong length.
    """
    buf = bytearray(len(plain) + TAG_SIZE)
    buf[: len(plain)] = plain
    encrypt_in_place(key, prefix, ad, index, memoryview(buf), len(plain))
    return bytes(buf)


def decrypt_segment(key: bytes, prefix: bytes, ad: bytes, index: int, sealed: Bytes) -> bytes:
    """Decrypt one segment.

    Raises:
        DecryptionError: the tag does not verify for this key, index and file.
        ValueError: the key or prefix has the wrong length.
    """
    buf = bytearray(sealed)
    n = decrypt_in_place(key, prefix, ad, index, memoryview(buf), len(buf))
    return bytes(buf[:n])
