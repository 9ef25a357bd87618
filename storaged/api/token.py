"""The API token (``home/api.token``, 0600, random) and the address file (``home/api.addr``)."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from storaged.errors import ResourceError, UserError

TOKEN_FILE = "api.token"
ADDR_FILE = "api.addr"


def ensure_token(home: Path) -> str:
    """The API token of ``home``, created (32 random bytes, hex, mode 0600) on first use.

    Raises:
        UserError: the token file exists but is empty or readable by others.
        ResourceError: the file cannot be created or read.
    """
    path = home / TOKEN_FILE
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(home)
    except OSError as exc:
        raise ResourceError(f"cannot create API token {path}: {exc}") from exc
    token = secrets.token_hex(32)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ResourceError(f"cannot write API token {path}: {exc}") from exc
    return token


def read_token(home: Path) -> str:
    """The token in ``home/api.token``.

    Raises:
        UserError: the file is empty or readable by group/others (chmod 600 it).
        ResourceError: the file is missing or unreadable.
    """
    path = home / TOKEN_FILE
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ResourceError(f"cannot read API token {path}: {exc}") from exc
    if mode & 0o077:
        raise UserError(f"API token {path} is readable by others (mode {mode & 0o777:o}); "
                        "chmod 600 it")
    if not text:
        raise UserError(f"API token {path} is empty")
    return text


def token_matches(expected: str, header: bytes | None) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <expected>`` (constant time)."""
    if header is None or not header.startswith(b"Bearer "):
        return False
    return hmac.compare_digest(header[len(b"Bearer "):].strip(), expected.encode())


def write_addr(home: Path, addr: str) -> None:
    """Write ``home/api.addr`` (``host:port``) atomically (temp file + rename).

    Raises:
        ResourceError: the file cannot be written.
    """
    path = home / ADDR_FILE
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(addr + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ResourceError(f"cannot write {path}: {exc}") from exc


def read_addr(home: Path) -> str | None:
    """``host:port`` from ``home/api.addr``, or None when the file is absent."""
    try:
        text = (home / ADDR_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResourceError(f"cannot read {home / ADDR_FILE}: {exc}") from exc
    return text or None
