"""Block sync over ``/storaged/sync/1.0.0``: serve committed blocks with their certificates,
and fetch, verify and commit them when this node is behind.

The byte formats are :mod:`storaged.chain.consensus.sync`'s (``get_commits`` / ``commits``,
canonical CBOR), carried as the CBOR byte-string body of an rpc request and response.  A
response holds at most ``MAX_COMMITS_PER_RESPONSE`` consecutive heights and at most
``MAX_RESPONSE_BYTES`` of blocks (always at least one block), so a peer asks again from where
the answer stopped; an empty list means the peer has nothing above ``from_height - 1``.

Nothing a peer sends is trusted: each certificate is verified against the validator set the
node's own committed state gives for that height (sets take effect two heights after the
block that changes them, so the set of h+1 is known once h is committed), it must name
``blake3(block)``, and the block itself is re-applied by :meth:`ChainApp.commit`, which checks
every chain rule and the state root.  A peer that fails any check is dropped for this round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from storaged.chain.app import ChainApp
from storaged.chain.consensus.certificate import decode_certificate
from storaged.chain.consensus.errors import ConsensusError, MalformedMessage
from storaged.chain.consensus.sync import (
    MAX_COMMITS_PER_RESPONSE,
    Commit,
    GetCommits,
    decode_commits,
    decode_get_commits,
    encode_commits,
    verify_commit,
)
from storaged.chain.consensus.validators import ValidatorSet
from storaged.errors import PeerUnavailable, ProtocolViolation, RemoteError
from storaged.net.rpc import SYNC, Rpc
from storaged.store import schema

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 8 << 20  # half of SYNC's 16 MiB response limit: room for CBOR framing


class SyncService:
    """Serves and fetches commits of one chain."""

    def __init__(self, app: ChainApp, rpc: Rpc, *, timeout: float = 10.0) -> None:
        self.app = app
        self.rpc = rpc
        self.timeout = timeout

    # -- server ---------------------------------------------------------------------------

    def commits_from(self, from_height: int, limit: int) -> list[Commit]:
        """Committed heights ``from_height..`` (at most ``limit``, bounded in bytes).

        Genesis (height 0) has no certificate and is never served: every node has it.
        """
        out: list[Commit] = []
        size = 0
        head = self.app.head().height
        for h in range(max(1, from_height), min(head, from_height + limit - 1) + 1):
            block = self.app.block_at(h)
            cert = self.app.kv.get(schema.chain_commit_key(h))
            if block is None or not cert:
                break
            if out and size + len(block) + len(cert) > MAX_RESPONSE_BYTES:
                break
            size += len(block) + len(cert)
            out.append(Commit(h, block, decode_certificate(cert)))
        return out

    async def handle(self, peer: str, body: Any) -> bytes:
        """The SYNC request handler.

        Raises:
            ProtocolViolation: the body is not a canonical ``get_commits`` request.
        """
        if not isinstance(body, bytes):
            raise ProtocolViolation("sync request body must be a byte string")
        try:
            req = decode_get_commits(body)
        except MalformedMessage as exc:
            raise ProtocolViolation(f"bad sync request: {exc}") from exc
        if req.from_height == 0:
            raise ProtocolViolation("sync starts at height 1 (genesis is local)")
        return encode_commits(self.commits_from(req.from_height, req.limit))

    # -- client ---------------------------------------------------------------------------

    async def fetch(self, peer: str, from_height: int,
                    limit: int = MAX_COMMITS_PER_RESPONSE) -> list[Commit]:
        """Ask ``peer`` for commits from ``from_height`` (decoded, not yet verified).

        Raises:
            PeerUnavailable: no answer in time.
            RemoteError: the peer refused, or its answer is malformed (``ProtocolViolation``).
        """
        req = GetCommits(from_height, limit)
        data = await self.rpc.request(peer, SYNC, req.encode(), timeout=self.timeout, attempts=1)
        if not isinstance(data, bytes):
            raise ProtocolViolation(f"sync answer from {peer} is not a byte string")
        try:
            return decode_commits(data, req)
        except MalformedMessage as exc:
            raise ProtocolViolation(f"sync answer from {peer}: {exc}") from exc

    def apply(self, commit: Commit) -> None:
        """Verify one fetched commit against our state and commit it.

        Raises:
            ConsensusError: the certificate is not 2/3+ of the height's validators for it.
            ChainError: the block breaks a chain rule (nothing is written).
        """
        head = self.app.head().height
        if commit.height != head + 1:
            raise ConsensusError(f"commit for height {commit.height}, next is {head + 1}")
        valset = ValidatorSet.of(self.app.validators(commit.height))
        verify_commit(commit, self.app.chain_id, valset)
        self.app.commit(commit.value, commit.certificate.encode())

    async def catch_up(self, peers: Iterable[str], on_commit: Callable[[bytes], None]) -> int:
        """Fetch, verify and commit blocks from ``peers`` until none has more; return how
        many heights were committed.  ``on_commit(block)`` runs after each one.

        A peer that is unreachable, refuses, or sends a commit that fails verification is
        skipped (logged) for the rest of this call; the others are asked in turn.
        """
        live = list(peers)
        committed = 0
        while live:
            peer = live[0]
            try:
                got = await self.fetch(peer, self.app.head().height + 1)
                for commit in got:
                    self.apply(commit)
                    on_commit(commit.value)
                    committed += 1
            except (PeerUnavailable, RemoteError) as exc:
                # ConsensusError and ChainError are RemoteError leaves: the peer's fault.
                level = logging.INFO if isinstance(exc, PeerUnavailable) else logging.WARNING
                log.log(level, "sync from %s stopped: %s: %s", peer, type(exc).__name__, exc)
                live.pop(0)
                continue
            if not got:
                live.pop(0)  # this peer has nothing more; another may be further ahead
        return committed


__all__ = ["MAX_RESPONSE_BYTES", "SyncService"]
