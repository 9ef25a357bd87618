"""Catch-up messages: a lagging node asks a peer for committed values with their certificates.

Byte formats (canonical CBOR, version 1), carried by the network's ``/storaged/sync/1.0.0``
request/response protocol:

- request ``[1, "get_commits", from_height, limit]`` (1 <= limit <= MAX_COMMITS_PER_RESPONSE)
- response ``[1, "commits", [[height, value, certificate_bytes], ...]]`` in increasing height.

Nothing in a response is trusted: :func:`verify_commit` checks each certificate against the
validator set the application gives for that height and that it names ``blake3(value)``; the
node then hands ``(value, certificate)`` to :meth:`Machine.on_certificate` (or, when far
behind, commits through the application height by height).
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from storaged.chain.consensus.certificate import Certificate, decode_certificate
from storaged.chain.consensus.errors import InvalidCertificate, MalformedMessage
from storaged.chain.consensus.messages import MAX_HEIGHT, value_id
from storaged.chain.consensus.validators import ValidatorSet

MAX_COMMITS_PER_RESPONSE = 64


@dataclass(frozen=True, slots=True)
class GetCommits:
    from_height: int
    limit: int

    def encode(self) -> bytes:
        return cbor2.dumps([1, "get_commits", self.from_height, self.limit], canonical=True)


@dataclass(frozen=True, slots=True)
class Commit:
    height: int
    value: bytes
    certificate: Certificate


def decode_get_commits(data: bytes) -> GetCommits:
    """Raises: MalformedMessage: not a canonical version-1 request within limits."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    if (not isinstance(obj, list) or len(obj) != 4 or obj[:2] != [1, "get_commits"]
            or type(obj[2]) is not int or not 0 <= obj[2] <= MAX_HEIGHT
            or type(obj[3]) is not int or not 1 <= obj[3] <= MAX_COMMITS_PER_RESPONSE):
        raise MalformedMessage("not a version-1 get_commits request")
    req = GetCommits(obj[2], obj[3])
    if req.encode() != bytes(data):
        raise MalformedMessage("request is not in canonical encoding")
    return req


def encode_commits(commits: list[Commit]) -> bytes:
    """The response body for ``commits`` (already in increasing height)."""
    return cbor2.dumps([1, "commits", [[c.height, c.value, c.certificate.encode()]
                                       for c in commits]], canonical=True)


def decode_commits(data: bytes, request: GetCommits) -> list[Commit]:
    """Decode a response to ``request``: consecutive heights from ``request.from_height``.

    Raises:
        MalformedMessage: bad shape, too many entries, heights not consecutive from the
            requested one, or a certificate height that disagrees with its entry.
    """
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    if not isinstance(obj, list) or len(obj) != 3 or obj[:2] != [1, "commits"] \
            or not isinstance(obj[2], list) or len(obj[2]) > request.limit:
        raise MalformedMessage("not a version-1 commits response within the request's limit")
    out = []
    for i, entry in enumerate(obj[2]):
        if (not isinstance(entry, list) or len(entry) != 3 or entry[0] != request.from_height + i
                or type(entry[1]) is not bytes or type(entry[2]) is not bytes):
            raise MalformedMessage("commit entries must be consecutive [height, value, cert]")
        cert = decode_certificate(entry[2])
        if cert.height != entry[0]:
            raise MalformedMessage("certificate height differs from its entry")
        out.append(Commit(entry[0], entry[1], cert))
    return out


def verify_commit(commit: Commit, chain_id: str, validators: ValidatorSet) -> None:
    """Check that ``commit.certificate`` finalizes ``commit.value`` under ``validators``.

    Raises:
        InvalidCertificate: the certificate names another value or lacks 2/3+ valid votes.
    """
    if commit.certificate.value_id != value_id(commit.value):
        raise InvalidCertificate("certificate is for another value")
    commit.certificate.verify(chain_id, validators)
