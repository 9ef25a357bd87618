"""Network error leaves, under the project's :mod:`storaged.errors` branches.

A remote handler that fails sends an error *code* on the wire (see :mod:`storaged.net.rpc`);
the caller raises the matching class below, so code above the network layer can catch
"the peer said not found" apart from "the peer is gone" or "the peer broke the protocol".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from storaged.errors import PeerUnavailable, RemoteError


class StreamBroken(PeerUnavailable):
    """The stream was reset or ended early: the peer closed, crashed or was cut off."""


class DeadlineExceeded(PeerUnavailable):
    """The peer did not answer within the deadline."""


class RemoteRejected(RemoteError):
    """The peer understood the request and refused it (the error code says why)."""

    code = "rejected"


class RemoteNotFound(RemoteRejected):
    """The peer does not hold what was asked for."""

    code = "not_found"


class RemoteBadRequest(RemoteRejected):
    """The peer says our request was malformed or invalid."""

    code = "bad_request"


class RemoteBusy(RemoteRejected):
    """The peer is overloaded or out of space; try again later or elsewhere."""

    code = "busy"


class RemoteInternalError(RemoteRejected):
    """The peer's handler failed with a bug of its own."""

    code = "internal"


class RemoteIntegrityFailure(RemoteRejected):
    """The peer found bytes that fail verification: ones it received, or its own stored
    copy (a provider whose piece is corrupt on disk)."""

    code = "integrity"


ERROR_CLASSES: dict[str, type[RemoteRejected]] = {
    cls.code: cls
    for cls in (
        RemoteRejected,
        RemoteNotFound,
        RemoteBadRequest,
        RemoteBusy,
        RemoteInternalError,
        RemoteIntegrityFailure,
    )
}


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


@contextmanager
def first_error() -> Iterator[None]:
    """Turn an exception group from a nursery into its one meaningful error.

    When a transfer's helper task fails, trio cancels its siblings and raises a group; callers
    want the error itself (``except PeerUnavailable``).  Cancellations are dropped; if several
    real errors remain, the first is raised (the others are its ``__context__``-free siblings,
    logged at debug level by the caller if needed).
    """
    try:
        yield
    except BaseExceptionGroup as group:
        real = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if not real:
            raise
        raise real[0] from group
