"""ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite 0x03) over libsodium's ed25519 point ops.

The VRF key is an ordinary ed25519 key: the 32-byte seed is the secret, ``Y`` (the ed25519
public key) the public key.  ``prove(seed, alpha) -> pi`` (80 bytes: Gamma 32 || c 16 || s 32),
``verify(Y, pi, alpha) -> beta`` (64 bytes) and ``proof_to_hash(pi) -> beta``.  Pinned by the
RFC 9381 Appendix B.3 vectors in tests/vectors/chain_vrf_rfc9381.json.

Point arithmetic goes through ``nacl.bindings``; its scalar multiplication refuses points
outside the prime-order subgroup, so verification here also rejects a ``Gamma`` or ``Y`` with a
small-order component.  An honest prover never produces one (Gamma = x * H with H cofactor-
cleared), so this is stricter than RFC 9381 only for malicious proofs, and we want it.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import nacl.exceptions

from storaged.chain.errors import ChainError

SUITE = b"\x03"
L = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19
C_LEN = 16
PROOF_LEN = 32 + C_LEN + 32


class InvalidVrfProof(ChainError):
    """A VRF proof (or its public key) does not verify."""


def _scalar(n: int) -> bytes:
    return (n % L).to_bytes(32, "little")


def _mul(n: int, point: bytes) -> bytes:
    return bytes(sodium.crypto_scalarmult_ed25519_noclamp(_scalar(n), point))


def _base(n: int) -> bytes:
    return bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(_scalar(n)))


def _sub(a: bytes, b: bytes) -> bytes:
    return bytes(sodium.crypto_core_ed25519_sub(a, b))


def _times_cofactor(point: bytes) -> bytes:
    """8 * point by three doublings (add accepts any on-curve point, unlike scalarmult)."""
    for _ in range(3):
        point = bytes(sodium.crypto_core_ed25519_add(point, point))
    return point


def _decodes(candidate: bytes) -> bool:
    """RFC 8032 §5.1.3 decoding succeeds: canonical y below p and x recoverable (on curve)."""
    if int.from_bytes(candidate, "little") & ((1 << 255) - 1) >= P:
        return False
    try:
        sodium.crypto_core_ed25519_add(candidate, candidate)
    except (RuntimeError, nacl.exceptions.RuntimeError):
        return False
    return True


def encode_to_curve(public_key: bytes, alpha: bytes) -> bytes:
    """ECVRF_encode_to_curve_try_and_increment (RFC 9381 §5.4.1.1), cofactor cleared."""
    for ctr in range(256):
        h = hashlib.sha512(SUITE + b"\x01" + public_key + alpha + bytes([ctr]) + b"\x00")
        candidate = h.digest()[:32]
        if _decodes(candidate):
            return _times_cofactor(candidate)
    raise InvalidVrfProof("encode_to_curve found no point in 256 tries")  # prob. 2**-256


def _challenge(*points: bytes) -> int:
    data = SUITE + b"\x02" + b"".join(points) + b"\x00"
    return int.from_bytes(hashlib.sha512(data).digest()[:C_LEN], "little")


def _secret(seed: bytes) -> tuple[int, bytes, bytes]:
    h = hashlib.sha512(seed).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    x = int.from_bytes(a, "little")
    return x, h[32:], _base(x)


def prove(seed: bytes, alpha: bytes) -> bytes:
    """The VRF proof ``pi`` of ``alpha`` under the ed25519 ``seed`` (RFC 9381 §5.1)."""
    x, prefix, public_key = _secret(seed)
    h = encode_to_curve(public_key, alpha)
    gamma = _mul(x, h)
    k = int.from_bytes(hashlib.sha512(prefix + h).digest(), "little") % L
    c = _challenge(public_key, h, gamma, _base(k), _mul(k, h))
    s = (k + c * x) % L
    return gamma + c.to_bytes(C_LEN, "little") + s.to_bytes(32, "little")


def proof_to_hash(pi: bytes) -> bytes:
    """beta = SHA512(suite || 0x03 || 8*Gamma || 0x00) (RFC 9381 §5.2); no verification.

    Raises:
        InvalidVrfProof: ``pi`` has the wrong length or Gamma does not decode.
    """
    if len(pi) != PROOF_LEN or not _decodes(pi[:32]):
        raise InvalidVrfProof("malformed VRF proof")
    return hashlib.sha512(SUITE + b"\x03" + _times_cofactor(pi[:32]) + b"\x00").digest()


def verify(public_key: bytes, pi: bytes, alpha: bytes) -> bytes:
    """Verify ``pi`` for ``alpha`` under ``public_key``; returns beta (RFC 9381 §5.3).

    Raises:
        InvalidVrfProof: bad key, malformed proof, or the proof does not verify.
    """
    if len(public_key) != 32 or not sodium.crypto_core_ed25519_is_valid_point(public_key):
        raise InvalidVrfProof("VRF public key is not a valid prime-order point")
    beta = proof_to_hash(pi)
    gamma = pi[:32]
    c = int.from_bytes(pi[32:32 + C_LEN], "little")
    s = int.from_bytes(pi[32 + C_LEN:], "little")
    if s >= L:
        raise InvalidVrfProof("VRF proof scalar s is not reduced")
    h = encode_to_curve(public_key, alpha)
    try:
        u = _sub(_base(s), _mul(c, public_key))
        v = _sub(_mul(s, h), _mul(c, gamma))
    except (RuntimeError, nacl.exceptions.RuntimeError) as exc:
        raise InvalidVrfProof("VRF proof point outside the prime-order group") from exc
    if _challenge(public_key, h, gamma, u, v) != c:
        raise InvalidVrfProof("VRF proof does not verify")
    return beta
