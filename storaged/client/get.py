"""``storage get``: manifest from any provider, then per segment the fastest k shares.

For segment j every slot i holds share i at ``piece_offset(m, j)`` in the piece
``m.pieces[i]`` of provider ``m.providers[i]``.  :class:`SegmentFetcher` starts k fetches
(plus one spare when n > k) in parallel, keeps the first k that arrive with the right blake3,
cancels the rest, and starts another slot for each one that fails.  A slot whose provider is
unreachable, lacks the piece or sent bad bytes is not asked again for later segments (a busy
one is).  Slots
are tried fastest first (mean seconds per fetch so far; untried slots in index order, which
also favours zfec's primary shares).

The output is written to a temp file beside the destination and renamed at the end, so a
failed get leaves no half file.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import trio

from storaged.client.light import LightNode
from storaged.client.progress import Quiet, Reporter
from storaged.data import crypto
from storaged.data.capability import Capability
from storaged.data.manifest import Manifest, ManifestError, decode_manifest
from storaged.data.piece import share_length
from storaged.data.pipeline import decode_file_async
from storaged.errors import (
    CapabilityError,
    IntegrityError,
    NotFound,
    PeerUnavailable,
    RemoteError,
    ResourceError,
    StoragedError,
    UserError,
)
from storaged.net.errors import RemoteBusy, RemoteNotFound, first_error
from storaged.net.rpc import DEAL

log = logging.getLogger(__name__)

MANIFEST_TIMEOUT = 15.0
PREFETCH_SEGMENTS = 2  # segments fetched ahead of the decoder


class TooFewProviders(PeerUnavailable):
    """Fewer than k providers delivered a segment's shares; names the segment and each slot."""


async def fetch_manifest(light: LightNode, cid: str) -> Manifest:
    """The manifest named ``cid`` from the first provider that has it (bootstrap peers first,
    then the chain's registered providers), verified against the CID.

    Raises:
        NotFound: every provider asked answered that it does not hold it.
        PeerUnavailable: no provider could be asked (names each failure).
    """
    peers = list(dict.fromkeys(light.bootstrap))
    if light.chain is not None:
        try:
            peers += [p for p in await light.learn() if p not in peers]
        except StoragedError as exc:
            log.info("provider registry unavailable: %s", exc)
    if not peers:
        raise UserError("no peers to ask: give bootstrap peers ([node] bootstrap or "
                        "STORAGE_PEERS)")
    errors: list[str] = []
    missing = 0
    for peer in peers:
        try:
            # A read, so safe to retry: a stream that breaks off (its connection dropped
            # under the request) costs one more attempt, not the whole `get`.
            with trio.fail_after(MANIFEST_TIMEOUT + 5):
                answer = await light.rpc.request(peer, DEAL, {"op": "manifest_get", "cid": cid},
                                                 timeout=MANIFEST_TIMEOUT, attempts=2)
            data = answer.get("manifest") if isinstance(answer, dict) else None
            if not isinstance(data, bytes):
                raise ManifestError(f"{peer}: manifest_get answer lacks bytes")
            return decode_manifest(data, cid)
        except RemoteNotFound:
            missing += 1
            errors.append(f"{peer}: not found")
        except (RemoteError, IntegrityError, trio.TooSlowError) as exc:
            errors.append(f"{peer}: {exc or type(exc).__name__}")
    if missing == len(peers):
        raise NotFound(f"no provider holds manifest {cid} (asked {len(peers)})")
    raise PeerUnavailable(f"could not get manifest {cid}: " + "; ".join(errors))


@dataclass
class _Slot:
    index: int
    peer: str
    piece: bytes
    seconds: float = 0.0
    fetches: int = 0
    dead: str | None = None

    def cost(self) -> float:
        return self.seconds / self.fetches if self.fetches else 0.0


@dataclass
class SegmentFetcher:
    """Fetches the shares of one segment at a time from the fastest k slots."""

    light: LightNode
    manifest: Manifest
    spare: int = 1
    attempts: int = 2
    slots: list[_Slot] = field(init=False)
    offsets: list[int] = field(init=False)

    def __post_init__(self) -> None:
        m = self.manifest
        if m.providers is None or m.pieces is None or len(m.providers) != m.n:
            raise ManifestError("the manifest names no providers/pieces: it cannot be fetched "
                                "over the network")
        self.slots = [_Slot(i, m.providers[i], m.pieces[i]) for i in range(m.n)]
        self.offsets = [0]
        for j in range(m.segment_count()):
            self.offsets.append(self.offsets[-1] + share_length(m, j))

    async def fetch(self, segment: int) -> dict[int, bytes]:
        """At least k verified shares of ``segment``, by share index.

        Raises:
            TooFewProviders: fewer than k slots delivered (names each slot's failure).
        """
        m = self.manifest
        offset = self.offsets[segment]
        length = self.offsets[segment + 1] - offset
        expected = m.segments[segment].share_hashes
        order = sorted((s for s in self.slots if s.dead is None), key=lambda s: (s.cost(),
                                                                                  s.index))
        queue = iter(order)
        got: dict[int, bytes] = {}
        errors: dict[int, str] = {}

        async def one(slot: _Slot, nursery: trio.Nursery) -> None:
            buf = bytearray(length)

            async def consume(at: int, data: bytes) -> None:
                buf[at - offset : at - offset + len(data)] = data

            started = trio.current_time()
            try:
                await self.light.transfers.fetch(slot.peer, slot.piece, consume, offset=offset,
                                                 length=length, attempts=self.attempts)
                if crypto.hash_share(bytes(buf)) != expected[slot.index]:
                    raise IntegrityError(f"share {slot.index} does not match the manifest")
            except (RemoteError, IntegrityError, ResourceError) as exc:
                why = str(exc) or type(exc).__name__
                errors[slot.index] = why
                if not isinstance(exc, RemoteBusy):  # busy may pass; the rest will not
                    slot.dead = why  # unreachable, lacks the piece, or lies: not asked again
                log.info("segment %d: slot %d (%s) failed: %s", segment, slot.index,
                         slot.peer, why)
                start_next(nursery)
                return
            slot.seconds += trio.current_time() - started
            slot.fetches += 1
            got[slot.index] = bytes(buf)
            if len(got) >= m.k:
                nursery.cancel_scope.cancel()  # the slow ones are not needed

        def start_next(nursery: trio.Nursery) -> None:
            slot = next(queue, None)
            if slot is not None:
                nursery.start_soon(one, slot, nursery)

        async with trio.open_nursery() as nursery:
            for _ in range(min(len(order), m.k + (self.spare if m.n > m.k else 0))):
                start_next(nursery)
        if len(got) < m.k:
            for s in self.slots:
                if s.index not in errors and s.index not in got and s.dead is not None:
                    errors[s.index] = f"failed earlier: {s.dead}"
            detail = "; ".join(f"slot {i} {self.slots[i].peer}: {why}"
                               for i, why in sorted(errors.items()))
            raise TooFewProviders(
                f"only {len(got)} of the k={m.k} providers needed answered for segment "
                f"{segment}: {detail}")
        return got


class _Prefetch:
    """Fetches up to ``ahead`` segments before the decoder asks for them, so the network
    keeps busy while a segment decodes (memory: ``ahead`` segments of shares)."""

    def __init__(self, fetcher: SegmentFetcher, count: int, ahead: int) -> None:
        self.fetcher = fetcher
        self.count = count
        self.slots = trio.Semaphore(ahead)
        self.results: dict[int, dict[int, bytes] | StoragedError] = {}
        self.ready: dict[int, trio.Event] = {}

    def _event(self, j: int) -> trio.Event:
        return self.ready.setdefault(j, trio.Event())

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for j in range(self.count):
                await self.slots.acquire()
                nursery.start_soon(self._one, j)

    async def _one(self, j: int) -> None:
        try:
            self.results[j] = await self.fetcher.fetch(j)
        except StoragedError as exc:  # handed to the decoder, which asks for j in order
            self.results[j] = exc
        self._event(j).set()

    async def take(self, j: int) -> dict[int, bytes]:
        """The shares of segment ``j`` (in order, once each).

        Raises:
            TooFewProviders (or another StoragedError): segment ``j`` could not be fetched.
        """
        await self._event(j).wait()
        result = self.results.pop(j)
        del self.ready[j]
        self.slots.release()
        if isinstance(result, StoragedError):
            raise result
        return result


class _CountingWriter:
    """A file wrapper reporting bytes written (the decoder writes in segment order)."""

    def __init__(self, f: BinaryIO, reporter: Reporter, token: trio.lowlevel.TrioToken) -> None:
        self.f = f
        self.reporter = reporter
        self.token = token

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        trio.from_thread.run_sync(self.reporter.advance, len(data), trio_token=self.token)
        return n


async def get_file(light: LightNode, cap: Capability, out: Path, *,
                   reporter: Reporter | None = None) -> Manifest:
    """Fetch, verify, decode and decrypt the file of ``cap`` into ``out``; return its manifest.

    Raises:
        CapabilityError: the key is missing or does not decrypt the file.
        TooFewProviders: a segment could not be rebuilt (fewer than k providers answered).
        NotFound / PeerUnavailable: no provider gave the manifest.
        IntegrityError: a decoded segment does not match its manifest hash.
        ResourceError: the output cannot be written.
    """
    report = reporter or Quiet()
    report.stage(f"fetching manifest {cap.cid}")
    manifest = await fetch_manifest(light, cap.cid)
    if manifest.encrypted and cap.key is None:
        raise CapabilityError("this file is encrypted and the capability carries no key")
    fetcher = SegmentFetcher(light, manifest)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    report.start("fetching", manifest.size)
    token = trio.lowlevel.current_trio_token()

    prefetch = _Prefetch(fetcher, manifest.segment_count(), PREFETCH_SEGMENTS)

    def source(segment: int) -> dict[int, bytes]:
        return trio.from_thread.run(prefetch.take, segment, trio_token=token)

    try:
        with first_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(prefetch.run)
                try:
                    with tmp.open("wb") as f:
                        writer = _CountingWriter(f, report, token)
                        await decode_file_async(manifest, cap.key, source,
                                                writer)  # type: ignore[arg-type]
                        f.flush()
                        os.fsync(f.fileno())
                finally:
                    nursery.cancel_scope.cancel()
        os.replace(tmp, out)
    except OSError as exc:
        raise ResourceError(f"cannot write {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return manifest
