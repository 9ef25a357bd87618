"""Typed BLAKE3 entry points over the live proofs backend (``proofs.impl``).

The C binding is untyped; these wrappers give callers type hints and one place to import from.
Results are identical in both backends (the C core's own BLAKE3 vs the ``blake3`` package).
"""

from __future__ import annotations

import proofs


def blake3_hash(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3 of ``data`` (32 bytes)."""
    out: bytes = proofs.impl.blake3_hash(data)
    return out


def blake3_keyed_hash(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """Keyed BLAKE3 of ``data`` under a 32-byte ``key``.

    Raises:
        ProofError: ``key`` is not 32 bytes.
    """
    out: bytes = proofs.impl.blake3_keyed_hash(key, data)
    return out


def blake3_derive_key(context: str, material: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3 derive_key: a 32-byte key for ``context`` (a fixed, versioned string) and material.

    Raises:
        ProofError: ``context`` contains a NUL character.
    """
    out: bytes = proofs.impl.blake3_derive_key(context, material)
    return out


def blake3_keyed_hash_many(key: bytes, data: bytes | bytearray | memoryview, count: int) -> bytes:
    """Keyed hashes of ``count`` equal-length messages concatenated in ``data``, concatenated.

    Raises:
        ProofError: bad key size, negative count, or ``data`` does not split evenly.
    """
    out: bytes = proofs.impl.blake3_keyed_hash_many(key, data, count)
    return out


def blake3_backend() -> str:
    """The C core's BLAKE3 path ("avx2", "portable", ...), or "python" for the twin."""
    if proofs.native is None:
        return "python"
    name: str = proofs.native.blake3_backend()
    return name
