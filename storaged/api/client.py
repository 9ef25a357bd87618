"""A small synchronous client of the local API, for the ``storaged`` CLI and tests."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from storaged.api.token import read_addr, read_token
from storaged.errors import ResourceError, StoragedError

TIMEOUT = 130.0  # the server gives a route 120 s (chain waits) before answering 504


class NotRunning(ResourceError):
    """No daemon answers at this home."""


class ApiError(StoragedError):
    """The daemon answered with an error; carries its class name and exit code."""

    def __init__(self, cls: str, message: str, exit_code: int) -> None:
        super().__init__(f"{message} ({cls})")
        self.error_class = cls
        self.exit_code = exit_code


def _not_running(home: Path) -> NotRunning:
    return NotRunning(f"storaged is not running at {home} (start it with `storaged start`)")


def request(home: Path, method: str, path: str, body: dict[str, Any] | None = None, *,
            timeout: float = TIMEOUT) -> Any:
    """Call the API of the daemon whose home is ``home``; returns the decoded JSON answer
    (or the text of ``/metrics``).

    Raises:
        NotRunning: no ``api.addr``, or nothing listens there.
        ApiError: the daemon answered with an error body.
        ResourceError: the token cannot be read.
        UserError: the token file is insecure or empty.
    """
    addr = read_addr(home)
    if addr is None:
        raise _not_running(home)
    token = read_token(home)
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except (ConnectionRefusedError, ConnectionResetError) as exc:
        raise _not_running(home) from exc
    except TimeoutError as exc:
        raise ResourceError(f"storaged at {home} did not answer in {timeout:.0f} s") from exc
    except OSError as exc:
        raise _not_running(home) from exc
    finally:
        conn.close()
    content_type = resp.getheader("content-type", "")
    if not content_type.startswith("application/json"):
        if resp.status != 200:
            raise ApiError("RemoteError", f"HTTP {resp.status}", 3)
        return data.decode()
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ApiError("ProtocolViolation", f"API answered malformed JSON: {exc}", 3) from exc
    if resp.status != 200:
        err = obj.get("error", {}) if isinstance(obj, dict) else {}
        raise ApiError(str(err.get("class", "StoragedError")),
                       str(err.get("message", f"HTTP {resp.status}")),
                       int(err.get("exit_code", 1)))
    return obj
