"""The project's error tree: one root, and a branch that says whose fault it was.

Every error raised on purpose by storaged is a :class:`StoragedError`.  The four branches tell a
caller (and the CLI, which maps them to messages and exit codes) who has to act:

- :class:`UserError`: the person at the keyboard gave something wrong; fix the input.
- :class:`RemoteError`: another peer misbehaved or went away; try another peer or later.
- :class:`IntegrityError`: bytes failed verification (hash, tag, proof); the data is bad.
- :class:`ResourceError`: this machine lacks something (disk space, a lock, a file); fix the host.
- :class:`LocalBugError`: an invariant of our own code broke; report it.

Subsystems add leaves under these branches (``ChainError``, ``ProofError``...), never new roots.
Raise with ``raise NewError(...) from exc`` so the cause survives.
"""

from __future__ import annotations


class StoragedError(Exception):
    """Root of every error storaged raises on purpose."""

    exit_code = 1


class UserError(StoragedError):
    """The user's input (arguments, files, capability, config) is wrong."""

    exit_code = 2


class ConfigError(UserError):
    """The node configuration is invalid: unknown key, bad type or bad value."""


class CapabilityError(UserError):
    """A capability string is malformed or its key does not open the file."""


class RemoteError(StoragedError):
    """A remote peer failed or misbehaved."""

    exit_code = 3


class ProtocolViolation(RemoteError):
    """A peer sent bytes that break the wire protocol (bad frame, type, size or order)."""


class PeerUnavailable(RemoteError):
    """A peer could not be reached, went away mid-exchange, or missed its deadline."""


class IntegrityError(StoragedError):
    """Data failed verification: a hash, an authentication tag or a proof did not match."""

    exit_code = 4


class ResourceError(StoragedError):
    """This host lacks a resource: disk space, a file, a lock or a port."""

    exit_code = 5


class NotFound(ResourceError):
    """A requested object (share, manifest, deal, block) is not stored here."""


class LocalBugError(StoragedError):
    """An internal invariant broke: a bug in storaged itself."""

    exit_code = 70
