"""A light client of the chain: reads over ``/storaged/query/1.0.0`` and verifies them.

Every read answer carries an anchor (a block, its header and commit certificate; see
:mod:`storaged.chain.query`).  The client accepts it only if:

1. the certificate decodes, is for the block's height and names ``blake3(block)``, the block is
   for this chain and its header is the one sent;
2. the certificate's precommits carry more than 2/3 of the power of the validator set the
   client trusts; or, when the set has changed since, the set recorded in the anchor's own
   state (read with membership proofs against the anchor's state root: the newest
   ``STATE_VALIDATORS`` record at or below the height) has 2/3+ signing *and* validators
   holding more than 1/3 of the trusted set's power signed too (Tendermint's skipping rule
   with trust level 1/3); the new set then becomes the trusted one;
3. every returned state entry has a Merkle proof to the header's state root.

**Trust assumption.**  The client starts from a validator set given by its caller (the
genesis validators: :func:`trusted_from_genesis`).  Rule 2 is safe while fewer than 1/3 of the
trusted power is faulty *and still able to sign*; after long offline periods (validators of
the trusted set unbonded), a client must be given a fresh trusted set.  Absent keys are
answered without proof (the state tree has no non-membership proofs yet), so ``None`` means
"this peer says absent".  ``nonce`` answers are not proven (they include the peer's mempool).

Each call tries the peers in turn, starting with the one that answered last; an unreachable,
refusing-with-a-fault, or lying peer is skipped and the next one asked.  If every peer fails,
the last error is raised (so a tampered answer surfaces as ``StateProofInvalid`` or
``InvalidCertificate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from storaged.chain import accounts, deals, encoding, providers
from storaged.chain import errors as chain_errors
from storaged.chain.access import NotCommitted
from storaged.chain.accounts import Account
from storaged.chain.app import Head
from storaged.chain.block import Header, decode_block
from storaged.chain.consensus.certificate import decode_certificate
from storaged.chain.consensus.errors import ConsensusError, InvalidCertificate
from storaged.chain.consensus.messages import value_id
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.genesis import Genesis
from storaged.chain.providers import Provider
from storaged.chain.query import MAX_SCAN, proof_from_wire
from storaged.chain.state import StateOverlay, verify_entry
from storaged.chain.tx import decode_tx
from storaged.errors import (
    IntegrityError,
    LocalBugError,
    PeerUnavailable,
    ProtocolViolation,
    RemoteError,
)
from storaged.net.errors import RemoteBusy, RemoteInternalError, RemoteNotFound, RemoteRejected
from storaged.net.rpc import QUERY, Rpc
from storaged.store import schema
from storaged.store.kv import MemoryKV

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_WAIT_PER_REQUEST = 20.0  # the server's handler timeout is 30 s


def trusted_from_genesis(g: Genesis) -> ValidatorSet:
    """The validator set of height 0: genesis providers with a positive bond."""
    return ValidatorSet.of((k, p.bond) for k, p in g.providers.items() if p.bond > 0)


def _field(obj: Any, name: str, kind: type[T]) -> T:
    if not isinstance(obj, dict) or type(obj.get(name)) is not kind:
        raise ProtocolViolation(f"query answer lacks {name!r} of type {kind.__name__}")
    value: T = obj[name]
    return value


class ChainClient:
    """Verified reads and tx submission through full nodes (``peers``: peer ids)."""

    def __init__(self, rpc: Rpc, peers: list[str], chain_id: str, *,
                 trusted: ValidatorSet, timeout: float = 10.0) -> None:
        if not peers:
            raise LocalBugError("a chain client needs at least one peer")
        self.rpc = rpc
        self.peers = list(peers)
        self.chain_id = chain_id
        self.trusted = trusted
        self.trusted_height = 0
        self.timeout = timeout
        self._nonces: dict[bytes, int] = {}

    # -- transport with fail-over -----------------------------------------------------------

    async def _each_peer(self, body: dict[str, Any],
                         check: Callable[[Any], T], *, timeout: float | None = None) -> T:
        last: Exception | None = None
        for _ in range(len(self.peers)):
            peer = self.peers[0]
            try:
                answer = await self.rpc.request(peer, QUERY, body,
                                                timeout=timeout or self.timeout, attempts=1)
                return check(answer)
            except (RemoteNotFound, chain_errors.ChainError):
                raise  # a definite answer, not a fault: other peers would say the same
            except RemoteRejected as exc:
                if not isinstance(exc, RemoteBusy | RemoteInternalError):
                    raise
                last = exc
            except (PeerUnavailable, ProtocolViolation, IntegrityError, ConsensusError) as exc:
                log.info("chain peer %s failed %s: %s: %s", peer, body.get("op"),
                         type(exc).__name__, exc)
                last = exc
            self.peers.append(self.peers.pop(0))  # rotate: try the next one first
        if last is None:
            raise LocalBugError("no peer tried")
        raise last

    # -- verification -----------------------------------------------------------------------

    def _verify_anchor(self, answer: Any, *, entries: list[tuple[bytes, bytes]] | None = None
                       ) -> Header:
        """Check the anchor of ``answer``; returns its header.

        Raises:
            ProtocolViolation: fields missing or inconsistent.
            InvalidCertificate: not 2/3+ of the validators (see the module docstring).
            StateProofInvalid: a validator-set record's proof fails.
        """
        block_bytes = _field(answer, "block", bytes)
        cert_bytes = _field(answer, "certificate", bytes)
        height = _field(answer, "height", int)
        try:
            block = decode_block(block_bytes)
        except chain_errors.ChainError as exc:
            raise ProtocolViolation(f"anchor block does not decode: {exc}") from exc
        header = block.header
        cert = decode_certificate(cert_bytes)
        if (header.height != height or cert.height != height or header.chain != self.chain_id
                or cert.value_id != value_id(block_bytes)):
            raise InvalidCertificate("certificate is not for the anchor block of this chain")
        if _field(answer, "header", bytes) != encoding.encode(header.to_map()):
            raise ProtocolViolation("anchor header differs from its block's header")
        try:
            cert.verify(self.chain_id, self.trusted)
            return header
        except InvalidCertificate:
            if entries is None:
                raise
        # The set may have changed: take the anchor's own recorded set, proven against it.
        newest = None
        for key, value in entries:
            if int.from_bytes(key[1:9], "big") <= height:
                newest = value
        if newest is None:
            raise InvalidCertificate("no validator set recorded at or below the anchor")
        new_set = ValidatorSet.of((bytes(k), int(p)) for k, p in encoding.decode(newest))
        cert.verify(self.chain_id, new_set)
        overlap = sum(self.trusted.power(v.validator) for v in cert.votes
                      if self.trusted.contains(v.validator))
        if not self.trusted.one_third(overlap):
            raise InvalidCertificate("under 1/3 of the trusted validators signed the new set")
        self.trusted, self.trusted_height = new_set, height
        return header

    async def _anchored(self, body: dict[str, Any], check: Callable[[Any, Header], T]) -> T:
        """Run a read; if its certificate needs a validator-set update, fetch it and retry."""
        def plain(answer: Any) -> T:
            return check(answer, self._verify_anchor(answer))

        try:
            return await self._each_peer(body, plain)
        except InvalidCertificate:
            pass
        sets = await self._each_peer(
            {"op": "scan", "prefix": schema.STATE_VALIDATORS, "limit": MAX_SCAN},
            self._verified_scan_with_update)
        log.info("validator set updated at height %d (%d members)", sets, len(
            self.trusted.members))
        return await self._each_peer(body, plain)

    def _verified_scan_with_update(self, answer: Any) -> int:
        header = self._verify_anchor_entries(answer)
        return header.height

    def _verify_anchor_entries(self, answer: Any) -> Header:
        raw = _field(answer, "entries", list)
        # Proofs first (against the header, not yet trusted), then the anchor with them.
        block = decode_block(_field(answer, "block", bytes))
        entries = self._check_entries(raw, block.header.state_root)
        return self._verify_anchor(answer, entries=entries)

    @staticmethod
    def _check_entries(raw: list[Any], root: bytes) -> list[tuple[bytes, bytes]]:
        out = []
        for item in raw:
            if (not isinstance(item, list) or len(item) != 3 or type(item[0]) is not bytes
                    or type(item[1]) is not bytes):
                raise ProtocolViolation("scan entry must be [key, value, proof]")
            verify_entry(root, item[0], item[1], proof_from_wire(item[2]))
            out.append((item[0], item[1]))
        return out

    # -- reads ------------------------------------------------------------------------------

    async def head(self) -> Head:
        """The latest certified head a peer reports, verified.

        Raises:
            InvalidCertificate / ProtocolViolation / PeerUnavailable: from the last peer
                tried when none gave a verifiable answer.
        """
        def check(answer: Any, header: Header) -> Head:
            return Head(header.height, header.hash(), header.time, header.state_root)

        return await self._anchored({"op": "head"}, check)

    async def get(self, key: bytes) -> bytes | None:
        """A state entry proven against a certified head (None: the peer says absent).

        Raises:
            StateProofInvalid: the proof does not lead to the certified state root.
        """
        def check(answer: Any, header: Header) -> bytes | None:
            value = answer.get("value")
            if value is None:
                return None
            if type(value) is not bytes:
                raise ProtocolViolation("get value must be bytes or null")
            verify_entry(header.state_root, key, value, proof_from_wire(answer.get("proof")))
            return value

        return await self._anchored({"op": "get", "key": key}, check)

    async def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every state entry under ``prefix``, each proven (paged, ``MAX_SCAN`` per request).

        Pages may come from different heights if blocks commit in between.
        """
        out: list[tuple[bytes, bytes]] = []
        after: bytes | None = None
        while True:
            body: dict[str, Any] = {"op": "scan", "prefix": prefix, "limit": MAX_SCAN}
            if after is not None:
                body["after"] = after

            def check(answer: Any, header: Header) -> tuple[list[tuple[bytes, bytes]], bool]:
                got = self._check_entries(_field(answer, "entries", list), header.state_root)
                if any(not k.startswith(prefix) for k, _ in got):
                    raise ProtocolViolation("scan returned a key outside the prefix")
                return got, bool(answer.get("more"))

            page, more = await self._anchored(body, check)
            out.extend(page)
            if not more or not page:
                return out
            after = page[-1][0]

    def _state(self, entries: list[tuple[bytes, bytes]]) -> StateOverlay:
        kv = MemoryKV()
        for k, v in entries:
            kv.put(k, v)
        return StateOverlay(kv)

    async def account(self, public_key: bytes) -> Account:
        """The committed account (zero balance/nonce if absent)."""
        key = schema.state_account_key(public_key)
        value = await self.get(key)
        return accounts.load_account(self._state([(key, value)] if value else []), public_key)

    async def provider(self, public_key: bytes) -> Provider | None:
        """The registered provider, if any."""
        key = schema.state_provider_key(public_key)
        value = await self.get(key)
        return providers.load_provider(self._state([(key, value)] if value else []),
                                       public_key)

    async def providers(self) -> dict[bytes, Provider]:
        """Every registered provider."""
        entries = await self.scan(schema.STATE_PROVIDER)
        state = self._state(entries)
        out: dict[bytes, Provider] = {}
        for k, _ in entries:
            pk = k[len(schema.STATE_PROVIDER):]
            p = providers.load_provider(state, pk)
            if p is not None:
                out[pk] = p
        return out

    async def deal(self, deal_id: int) -> dict[str, Any] | None:
        """The deal record (proposal, state, history), if any."""
        key = schema.state_deal_key(deal_id)
        value = await self.get(key)
        return deals.load_deal(self._state([(key, value)] if value else []), deal_id)

    async def deals_of(self, public_key: bytes) -> dict[int, dict[str, Any]]:
        """Deals where ``public_key`` is the client or the provider (scans every deal)."""
        entries = await self.scan(schema.STATE_DEAL)
        state = self._state(entries)
        out = {}
        for k, _ in entries:
            deal_id = int.from_bytes(k[1:9], "big")
            d = deals.load_deal(state, deal_id)
            if d is not None and public_key in (d["proposal"].get("client"),
                                                d["proposal"].get("provider")):
                out[deal_id] = d
        return out

    async def sector(self, provider: bytes, number: int) -> bytes | None:
        """The raw sector record (its key comes from the chain-sectors schema).

        Raises:
            LocalBugError: the chain has no sector records yet in this build.
        """
        key_fn = getattr(schema, "state_sector_key", None)
        if key_fn is None:
            raise LocalBugError("sector records are not in the chain schema yet")
        key: bytes = key_fn(provider, number)
        return await self.get(key)

    # -- transactions (enough of ChainAccess for TxSender) ----------------------------------

    async def load_nonce(self, account: bytes) -> int:
        """Ask a peer for ``account``'s next nonce (committed + its pending) and cache it
        for :meth:`next_nonce`."""
        def check(answer: Any) -> int:
            return _field(answer, "nonce", int)

        n = await self._each_peer({"op": "nonce", "account": account}, check)
        self._nonces[account] = n
        return n

    def next_nonce(self, account: bytes) -> int:
        """The cached next nonce (synchronous, as :class:`TxSender` needs it).

        Raises:
            LocalBugError: :meth:`load_nonce` was not awaited for ``account`` first.
        """
        if account not in self._nonces:
            raise LocalBugError("await ChainClient.load_nonce(account) before next_nonce")
        return self._nonces[account]

    async def submit(self, raw_tx: bytes) -> bytes:
        """Submit through the first peer that answers; return the tx hash.

        Raises:
            ChainError: the specific rule the node's CheckTx refused it with (the class is
                rebuilt from the rpc error text; unknown names give ``RemoteRejected``).
            MalformedEncoding / WrongChain / InvalidSignature: ``raw_tx`` does not decode.
        """
        tx = decode_tx(raw_tx, self.chain_id)

        def check(answer: Any) -> bytes:
            return _field(answer, "hash", bytes)

        try:
            tx_hash = await self._each_peer({"op": "submit", "tx": raw_tx}, check)
        except RemoteRejected as exc:
            self._nonces.pop(tx.sender, None)  # reload: our nonce view may be stale
            raise _chain_error(exc) from exc
        if tx_hash != tx.hash:
            raise ProtocolViolation("peer answered another tx hash")
        self._nonces[tx.sender] = max(self._nonces.get(tx.sender, 0), tx.nonce + 1)
        return tx_hash

    async def wait_receipt(self, tx_hash: bytes, timeout: float) -> dict[str, Any]:
        """The receipt once the tx is in a certified block (inclusion is verified).

        The peer waits for the commit itself (no polling here); each request waits at most
        ``MAX_WAIT_PER_REQUEST`` and is repeated until ``timeout``.

        Raises:
            NotCommitted: not committed within ``timeout``.
        """
        def check(answer: Any, header: Header) -> dict[str, Any]:
            block = decode_block(_field(answer, "block", bytes))
            if tx_hash not in {encoding.digest(t) for t in block.txs}:
                raise ProtocolViolation("receipt's certified block does not hold the tx")
            receipt = _field(answer, "receipt", dict)
            return {**receipt, "height": header.height}

        deadline = trio.current_time() + timeout
        while (left := deadline - trio.current_time()) > 0:
            wait = min(left, MAX_WAIT_PER_REQUEST)
            try:
                return await self._anchored_wait(
                    {"op": "receipt", "hash": tx_hash, "wait": wait}, check, wait)
            except RemoteNotFound:
                continue
        raise NotCommitted(f"tx {tx_hash.hex()[:16]} not committed within {timeout:g} s")

    async def _anchored_wait(self, body: dict[str, Any], check: Callable[[Any, Header], T],
                             wait: float) -> T:
        def plain(answer: Any) -> T:
            return check(answer, self._verify_anchor(answer))

        return await self._each_peer(body, plain, timeout=wait + self.timeout)


def _chain_error(exc: RemoteRejected) -> RemoteError:
    """Rebuild the node's ChainError leaf from ``"peer refused (rejected): Leaf: text"``."""
    text = str(exc)
    _, _, rest = text.partition("): ")
    name, _, message = rest.partition(": ")
    cls = getattr(chain_errors, name, None)
    if isinstance(cls, type) and issubclass(cls, chain_errors.ChainError):
        return cls(message)
    return exc

