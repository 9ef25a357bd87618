"""The direct libsodium calls (in place, into reused buffers) against PyNaCl's own wrappers."""

from __future__ import annotations

import os

import pytest
from nacl import bindings

from storaged.data import crypto

KEY = bytes(range(32))
PREFIX = bytes(range(16))
AD = crypto.associated_data(10000, 4096, 3, 2)


def reference(plain: bytes, index: int) -> bytes:
    nonce = PREFIX + index.to_bytes(8, "big")
    return bytes(bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, AD, nonce, KEY))


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 63, 64, 65, 4096, 100_003])
def test_in_place_matches_pynacl(length: int) -> None:
    plain = os.urandom(length)
    buf = bytearray(plain) + bytearray(16 + 5)  # a bigger, reused buffer
    assert crypto.encrypt_in_place(KEY, PREFIX, AD, 7, memoryview(buf), length) == length + 16
    assert bytes(buf[: length + 16]) == reference(plain, 7)
    assert crypto.encrypt_segment(KEY, PREFIX, AD, 7, plain) == reference(plain, 7)
    assert crypto.decrypt_in_place(KEY, PREFIX, AD, 7, memoryview(buf), length + 16) == length
    assert bytes(buf[:length]) == plain
    assert crypto.decrypt_segment(KEY, PREFIX, AD, 7, memoryview(reference(plain, 7))) == plain


def test_wrong_key_index_or_ad_fails_authentication() -> None:
    sealed = reference(b"secret segment", 3)
    for key, index, ad in [(bytes(32), 3, AD), (KEY, 4, AD), (KEY, 3, AD + b"x")]:
        buf = bytearray(sealed)
        with pytest.raises(crypto.DecryptionError, match=f"segment {index} failed"):
            crypto.decrypt_in_place(key, PREFIX, ad, index, memoryview(buf), len(buf))
        assert b"secret" not in buf  # nothing decrypted is left behind
    with pytest.raises(crypto.DecryptionError, match="shorter than its tag"):
        crypto.decrypt_segment(KEY, PREFIX, AD, 0, b"x" * 15)


def test_bad_lengths_refused_before_libsodium_reads_memory() -> None:
    with pytest.raises(ValueError, match="need 26"):
        crypto.encrypt_in_place(KEY, PREFIX, AD, 0, memoryview(bytearray(25)), 10)
    with pytest.raises(ValueError, match="need 40"):
        crypto.decrypt_in_place(KEY, PREFIX, AD, 0, memoryview(bytearray(39)), 40)
    for key, prefix in [(KEY[:31], PREFIX), (KEY, PREFIX[:15]), (KEY + b"x", PREFIX)]:
        with pytest.raises(ValueError, match="key must be 32 bytes"):
            crypto.encrypt_segment(key, prefix, AD, 0, b"data")
