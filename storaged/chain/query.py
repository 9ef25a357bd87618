"""Light-client reads over ``/storaged/query/1.0.0``, answered from committed state.

Every request is a CBOR map with ``"op"``; every read answer carries the *anchor* it is proven
against: the committed head's ``"block"`` (full block bytes: the certificate names
``blake3(block)``, so the header alone could not be checked), its encoded ``"header"`` map
(redundant, for readers that only want header fields), ``"height"`` and its commit
``"certificate"`` (canonical bytes, see :mod:`storaged.chain.consensus.certificate`).

======== ============================================ =========================================
op       request fields                               answer (besides the anchor)
======== ============================================ =========================================
head     —                                            —
get      ``key: bytes`` (a state key, 0x30-0x3F)      ``value: bytes|null``, ``proof: P|null``
scan     ``prefix: bytes``, ``limit: uint`` (1..256), ``entries: [[key, value, P], ...]``,
         optional ``after: bytes`` (exclusive)        ``more: bool``
submit   ``tx: bytes``                                ``hash: bytes`` (no anchor); refusal is
                                                      an rpc ``rejected`` error whose message
                                                      starts with the ChainError class name,
                                                      ``busy`` when the mempool is full
receipt  ``hash: bytes``, optional ``wait``          ``receipt: map``, ``height``, and the
                                                      ``block`` + ``certificate`` *of that
                                                      height* (not the head) proving the tx is
                                                      in a final block; ``not_found`` if not
                                                      committed (after waiting up to
                                                      ``wait`` <= 20 s for the commit)
nonce    ``account: bytes``                           ``nonce: uint`` (committed + pending in
                                                      this node's mempool; not proven)
======== ============================================ =========================================

``P`` = ``{"index": uint, "count": uint, "siblings": [bytes(32), ...]}`` (a
:class:`storaged.chain.state.EntryProof`).  Absent keys answer ``value: null`` without proof:
non-membership proofs are not supported by the state tree yet, so a light client cannot tell
"absent" from "hidden by this peer" (it may ask another).  Genesis (height 0) has no
certificate: a node whose head is genesis answers ``not_found`` to reads.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable
from typing import Any

import blake3

from storaged.chain import encoding
from storaged.chain.app import ChainApp
from storaged.chain.block import decode_block
from storaged.chain.errors import ChainError
from storaged.chain.state import EntryProof, StateOverlay, leaf_hash
from storaged.errors import NotFound, ProtocolViolation
from storaged.net.errors import RemoteRejected
from storaged.store import schema

MAX_SCAN = 256

SubmitFn = Callable[[bytes], Awaitable[bytes]]
ReceiptFn = Callable[[bytes], "tuple[int, dict[str, Any]] | None"]
NonceFn = Callable[[bytes], int]
WaitFn = Callable[[bytes, float], Awaitable[None]]
MAX_WAIT = 20.0  # below the QUERY handler timeout (30 s)


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def prove_many(entries: list[tuple[bytes, bytes]], positions: list[int]) -> list[EntryProof]:
    """Proofs for several entries of one sorted entry list, building the tree once
    (:func:`storaged.chain.state.prove_entry` rebuilds it per key)."""
    levels = [[leaf_hash(k, v) for k, v in entries]]
    while len(levels[-1]) > 1:
        lv = levels[-1]
        nxt = [_node(lv[i], lv[i + 1]) for i in range(0, len(lv) - 1, 2)]
        if len(lv) % 2:
            nxt.append(lv[-1])
        levels.append(nxt)
    proofs = []
    for pos in positions:
        index, siblings = pos, []
        for lv in levels[:-1]:
            if index ^ 1 < len(lv):
                siblings.append(lv[index ^ 1])
            index //= 2
        proofs.append(EntryProof(pos, len(entries), tuple(siblings)))
    return proofs


def proof_to_wire(p: EntryProof) -> dict[str, Any]:
    """The CBOR map of a proof."""
    return {"index": p.index, "count": p.count, "siblings": list(p.siblings)}


def proof_from_wire(obj: Any) -> EntryProof:
    """Raises: ProtocolViolation: not a proof map."""
    if (not isinstance(obj, dict) or type(obj.get("index")) is not int
            or type(obj.get("count")) is not int or not isinstance(obj.get("siblings"), list)
            or not all(type(s) is bytes and len(s) == 32 for s in obj["siblings"])
            or len(obj["siblings"]) > 64):
        raise ProtocolViolation("malformed state proof")
    return EntryProof(obj["index"], obj["count"], tuple(obj["siblings"]))


def _state_key(obj: Any, what: str) -> bytes:
    if type(obj) is not bytes or not obj or len(obj) > 256:
        raise ProtocolViolation(f"{what} must be 1..256 bytes")
    if not schema.CHAIN_STATE_FIRST <= obj[0] <= schema.CHAIN_STATE_LAST:
        raise ProtocolViolation(f"{what} is outside chain state (0x30-0x3F)")
    return obj


class QueryService:
    """Answers QUERY requests from a node's committed state."""

    def __init__(self, app: ChainApp, submit: SubmitFn, receipt: ReceiptFn,
                 nonce: NonceFn, wait_receipt: WaitFn) -> None:
        """``wait_receipt(hash, timeout)`` returns once the tx is committed or the timeout
        passes (it raises nothing): a ``receipt`` request with ``wait`` blocks on it."""
        self.app = app
        self._wait = wait_receipt
        self._submit = submit
        self._receipt = receipt
        self._nonce = nonce

    def anchor(self, height: int | None = None) -> dict[str, Any]:
        """Block, header and certificate of ``height`` (default: the head).

        Raises:
            NotFound: no certified block there (only genesis committed, or pruned).
        """
        h = self.app.head().height if height is None else height
        block = self.app.block_at(h)
        cert = self.app.kv.get(schema.chain_commit_key(h))
        if block is None or not cert:
            raise NotFound(f"no certified block at height {h} yet")
        header = decode_block(block).header
        return {"height": h, "block": block, "header": encoding.encode(header.to_map()),
                "certificate": cert}

    def _entries(self) -> list[tuple[bytes, bytes]]:
        return list(StateOverlay(self.app.kv).scan_entries())

    def get(self, key: bytes) -> dict[str, Any]:
        """Raises: NotFound: no certified head yet."""
        out = self.anchor()  # read before any await: head, state and proof agree
        entries = self._entries()
        keys = [k for k, _ in entries]
        pos = bisect.bisect_left(keys, key)
        if pos < len(keys) and keys[pos] == key:
            out["value"] = entries[pos][1]
            out["proof"] = proof_to_wire(prove_many(entries, [pos])[0])
        else:
            out["value"] = None
            out["proof"] = None
        return out

    def scan(self, prefix: bytes, limit: int, after: bytes | None) -> dict[str, Any]:
        """Raises: NotFound: no certified head yet."""
        out = self.anchor()
        entries = self._entries()
        keys = [k for k, _ in entries]
        lo = bisect.bisect_left(keys, prefix)
        if after is not None:
            lo = max(lo, bisect.bisect_right(keys, after))
        positions: list[int] = []
        pos = lo
        while pos < len(keys) and keys[pos].startswith(prefix) and len(positions) < limit:
            positions.append(pos)
            pos += 1
        proofs = prove_many(entries, positions)
        out["entries"] = [[entries[p][0], entries[p][1], proof_to_wire(pr)]
                          for p, pr in zip(positions, proofs, strict=True)]
        out["more"] = pos < len(keys) and keys[pos].startswith(prefix)
        return out

    async def handle(self, peer: str, body: Any) -> dict[str, Any]:
        """The QUERY request handler.

        Raises:
            ProtocolViolation: unknown op or bad fields (answered ``bad_request``).
            NotFound: nothing certified yet, or the receipt is unknown (``not_found``).
            RemoteRejected: ``submit`` refused by a chain rule (``rejected``).
            MempoolFull: ``submit`` with a full mempool (``busy``).
        """
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            raise ProtocolViolation("query body must be a map with an 'op'")
        op = body["op"]
        if op == "head":
            return self.anchor()
        if op == "get":
            return self.get(_state_key(body.get("key"), "key"))
        if op == "scan":
            limit = body.get("limit")
            if type(limit) is not int or not 1 <= limit <= MAX_SCAN:
                raise ProtocolViolation(f"scan limit must be 1..{MAX_SCAN}")
            after = body.get("after")
            if after is not None and type(after) is not bytes:
                raise ProtocolViolation("scan 'after' must be bytes")
            return self.scan(_state_key(body.get("prefix"), "prefix"), limit, after)
        if op == "submit":
            tx = body.get("tx")
            if type(tx) is not bytes:
                raise ProtocolViolation("submit needs 'tx' bytes")
            try:
                return {"hash": await self._submit(tx)}
            except ChainError as exc:
                raise RemoteRejected(f"{type(exc).__name__}: {exc}") from exc
        if op == "receipt":
            tx_hash = body.get("hash")
            if type(tx_hash) is not bytes or len(tx_hash) != 32:
                raise ProtocolViolation("receipt needs a 32-byte 'hash'")
            wait = body.get("wait", 0)
            if type(wait) not in (int, float) or not 0 <= wait <= MAX_WAIT:
                raise ProtocolViolation(f"receipt 'wait' must be 0..{MAX_WAIT:g} seconds")
            if wait and self._receipt(tx_hash) is None:
                await self._wait(tx_hash, float(wait))  # wakes on commit, no polling
            found = self._receipt(tx_hash)
            if found is None:
                raise NotFound(f"tx {tx_hash.hex()[:16]} is not committed here")
            height, receipt = found
            out = self.anchor(height)
            out["receipt"] = receipt
            return out
        if op == "nonce":
            account = body.get("account")
            if type(account) is not bytes or len(account) != 32:
                raise ProtocolViolation("nonce needs a 32-byte 'account'")
            return {"nonce": self._nonce(account)}
        raise ProtocolViolation(f"unknown query op {op!r}")
