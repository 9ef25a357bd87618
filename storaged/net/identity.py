"""The node's persisted identity key and the home-directory lock.

Layout inside a node home (both files are created here, nothing else is touched):

- ``node.key``: the 32-byte ed25519 seed of the libp2p identity, raw, mode 0600.  The peer id is
  derived from it, so keeping this file keeps the peer id across restarts.  The same key signs
  the node's chain transactions (:func:`load_signing_key`): one identity per node, so the
  provider registered on chain is provably the peer a client talks to.
- ``node.lock``: held with ``flock`` for as long as a node runs; contains the holder's pid.  A
  second process on the same home fails fast instead of sharing a key and a database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

import nacl.signing
from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from storaged.errors import ResourceError, UserError

KEY_FILE = "node.key"
LOCK_FILE = "node.lock"
SEED_SIZE = 32


def load_or_create_key(home: Path) -> KeyPair:
    """Return the node's ed25519 key pair, creating ``home/node.key`` (0600) on first use.

    Raises:
        UserError: the key file exists but is not a 32-byte seed, or is readable by others.
        ResourceError: the home directory cannot be created or written.
    """
    path = home / KEY_FILE
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_key(path)
    except OSError as exc:
        raise ResourceError(f"cannot create identity key {path}: {exc}") from exc
    seed = os.urandom(SEED_SIZE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ResourceError(f"cannot write identity key {path}: {exc}") from exc
    return create_new_key_pair(seed)


def load_signing_key(home: Path) -> nacl.signing.SigningKey:
    """The node's ed25519 key as a PyNaCl signing key (chain transactions, deal signatures),
    creating it like :func:`load_or_create_key` on first use.

    Raises:
        UserError: the key file is malformed or readable by others.
        ResourceError: the home directory cannot be created or written.
    """
    load_or_create_key(home)
    return nacl.signing.SigningKey(_read_seed(home / KEY_FILE))


def peer_id_of(public_key: bytes) -> str:
    """The libp2p peer id (base58) of an ed25519 public key.

    Raises:
        UserError: ``public_key`` is not 32 bytes.
    """
    if len(public_key) != 32:
        raise UserError(f"an ed25519 public key is 32 bytes, got {len(public_key)}")
    return str(ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).pretty())


def _read_seed(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Refuse rather than silently fix: someone may already have copied the key.
        raise UserError(f"identity key {path} is accessible by others (mode {mode:o}); chmod 600")
    seed = path.read_bytes()
    if len(seed) != SEED_SIZE:
        raise UserError(f"identity key {path} is {len(seed)} bytes, expected {SEED_SIZE}")
    return seed


def _load_key(path: Path) -> KeyPair:
    return create_new_key_pair(_read_seed(path))


class HomeLock:
    """An exclusive ``flock`` on ``home/node.lock``, released by :meth:`release` or process exit."""

    def __init__(self, home: Path) -> None:
        """Take the lock.

        Raises:
            ResourceError: another live process holds it (its pid is in the message), or the
                lock file cannot be opened.
        """
        self.path = home / LOCK_FILE
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ResourceError(f"cannot open lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise ResourceError(
                f"node home {home} is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Drop the lock; idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
