"""Per-segment authenticated encryption (XChaCha20-Poly1305) and domain-separated blake3.

Nonce: 24 bytes = the file's random 16-byte nonce prefix || segment index (8 bytes, big-endian).
A fresh prefix is drawn per file and the key is fresh per file too, so a nonce never repeats
under one key; deriving from the index (instead of random per segment) keeps the manifest small.

Associated data binds each segment to its file and position, so segments cannot be reordered,
swapped between files or dropped at the end undetected (the total count and file size are in it):
``b"storaged seg v1" || file_size u64 || segment_size u32 || segment_count u64 || index u64``.
"""

from __future__ import annotations

import struct

import blake3
from nacl import bindings
from nacl.exceptions import CryptoError

from storaged.errors import IntegrityError

KEY_SIZE = 32
NONCE_PREFIX_SIZE = 16
TAG_SIZE = 16

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


def encrypt_segment(key: bytes, prefix: bytes, ad: bytes, index: int, plain: bytes) -> bytes:
    """Encrypt one segment; the result is len(plain) + 16 bytes."""
    return bytes(
        bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, _nonce(prefix, index), key)
    )


def decrypt_segment(key: bytes, prefix: bytes, ad: bytes, index: int, sealed: bytes) -> bytes:
    """Decrypt one segment.

    Raises:
        DecryptionError: the tag does not verify for this key, index and file.
    """
    try:
        return bytes(
            bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, ad, _nonce(prefix, index), key
            )
        )
    except CryptoError as exc:
        raise DecryptionError(f"segment {index} failed authentication") from exc
