"""Blocks: byte format, hashing, and ``apply_block``.

Wire format, version 1 (canonical CBOR)::

    Block = {"header": Header, "txs": [SignedTx bytes, ...]}
    Header = {"v": 1, "chain": text, "height": uint, "time": uint (unix seconds, proposer's),
              "parent": bytes(32) parent block hash, "proposer": bytes(32) ed25519 key,
              "txs_root": bytes(32), "state_root": bytes(32) root AFTER applying this block,
              "beacon": bytes(64), "beacon_proof": bytes(80) proposer's VRF proof}

The beacon rules are in :mod:`storaged.chain.randomness` (genesis carries a zero proof).

``txs_root = blake3(encode([blake3(tx) for tx in txs]))``; the block hash is
``blake3(encode(Header))``.  Blocks carry no signature of their own: consensus commit
certificates (stored beside the block) are what make a block final.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storaged.chain import accounts, encoding, randomness, vrf
from storaged.chain.apply import apply_tx
from storaged.chain.context import Context
from storaged.chain.cron import end_of_block
from storaged.chain.errors import InvalidBlock, MalformedEncoding, ensure
from storaged.chain.state import StateOverlay
from storaged.chain.tx import Tx, decode_tx
from storaged.chain.verifier import NATIVE, ProofVerifier

BLOCK_VERSION = 1
HEADER_FIELDS: dict[str, type] = {
    "v": int, "chain": str, "height": int, "time": int, "parent": bytes, "proposer": bytes,
    "txs_root": bytes, "state_root": bytes, "beacon": bytes, "beacon_proof": bytes,
}


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded block header."""

    chain: str
    height: int
    time: int
    parent: bytes
    proposer: bytes
    txs_root: bytes
    state_root: bytes
    beacon: bytes
    beacon_proof: bytes

    def to_map(self) -> dict[str, Any]:
        """The header as its CBOR map."""
        return {"v": BLOCK_VERSION, "chain": self.chain, "height": self.height,
                "time": self.time, "parent": self.parent, "proposer": self.proposer,
                "txs_root": self.txs_root, "state_root": self.state_root,
                "beacon": self.beacon, "beacon_proof": self.beacon_proof}

    def hash(self) -> bytes:
        """The block hash."""
        return encoding.digest(encoding.encode(self.to_map()))


@dataclass(frozen=True, slots=True)
class Block:
    """A decoded block: header plus raw transactions."""

    header: Header
    txs: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return encoding.encode({"header": self.header.to_map(), "txs": list(self.txs)})


def txs_root(txs: tuple[bytes, ...] | list[bytes]) -> bytes:
    """Commitment to the ordered transaction list."""
    return encoding.digest(encoding.encode([encoding.digest(t) for t in txs]))


def decode_block(raw: bytes) -> Block:
    """Decode a block's structure (no state checks).

    Raises:
        MalformedEncoding: not canonical CBOR or wrong shape/version.
    """
    outer = encoding.require_map(encoding.decode(raw), {"header": dict, "txs": list}, "Block")
    h = encoding.require_map(outer["header"], HEADER_FIELDS, "Header")
    ensure(h["v"] == BLOCK_VERSION, MalformedEncoding, f"unknown block version {h['v']}")
    for name in ("parent", "proposer", "txs_root", "state_root"):
        ensure(len(h[name]) == 32, MalformedEncoding, f"header.{name} must be 32 bytes")
    ensure(len(h["beacon"]) == 64, MalformedEncoding, "header.beacon must be 64 bytes")
    ensure(len(h["beacon_proof"]) == vrf.PROOF_LEN, MalformedEncoding,
           "header.beacon_proof must be 80 bytes")
    ensure(all(isinstance(t, bytes) for t in outer["txs"]), MalformedEncoding,
           "block txs must be byte strings")
    header = Header(chain=h["chain"], height=h["height"], time=h["time"], parent=h["parent"],
                    proposer=h["proposer"], txs_root=h["txs_root"], state_root=h["state_root"],
                    beacon=h["beacon"], beacon_proof=h["beacon_proof"])
    return Block(header=header, txs=tuple(outer["txs"]))


@dataclass(frozen=True, slots=True)
class Parent:
    """What a block is checked against: the committed head."""

    chain: str
    height: int
    hash: bytes
    time: int


def apply_block(
    state: StateOverlay, block: Block, parent: Parent, verifier: ProofVerifier = NATIVE,
    decode: Callable[[bytes, str], Tx] = decode_tx,
) -> list[dict[str, Any]]:
    """Check ``block`` against ``parent`` and apply it to ``state``; returns the receipts.

    ``decode`` authenticates each transaction: :func:`decode_tx`, or a node's cache of it
    (:class:`storaged.chain.txcache.VerifiedTxs`), which must give the same answer.

    Every transaction must be valid: a block with one bad transaction is rejected whole (the
    proposer filters them out; see :func:`storaged.chain.app.ChainApp.propose`).  On any error
    the caller drops ``state``, so a rejected block changes nothing.

    Raises:
        InvalidBlock: wrong chain, height, parent, time, tx count, txs_root, beacon or
            state_root.
        InvalidVrfProof: the beacon proof does not verify for the proposer.
        ChainError: any transaction breaks a rule (its specific leaf).
        StateCorrupt: the supply invariant fails after the block (a bug, never a peer's fault).
    """
    h = block.header
    ensure(h.chain == parent.chain, InvalidBlock, f"block for chain {h.chain!r}")
    ensure(h.height == parent.height + 1, InvalidBlock,
           f"height {h.height}, expected {parent.height + 1}")
    ensure(h.parent == parent.hash, InvalidBlock, "parent hash does not match the head")
    ensure(h.time >= parent.time, InvalidBlock, f"time {h.time} before parent {parent.time}")
    params = accounts.load_params(state)
    ensure(len(block.txs) <= params.max_txs_per_block, InvalidBlock,
           f"{len(block.txs)} txs > limit {params.max_txs_per_block}")
    ensure(h.txs_root == txs_root(block.txs), InvalidBlock, "txs_root does not match the txs")
    randomness.check_beacon(state, h.height, h.proposer, h.beacon, h.beacon_proof)
    randomness.store_beacon(state, h.height, h.beacon)
    ctx = Context(h.height, params, verifier)
    receipts = [apply_tx(state, decode(raw, h.chain), ctx) for raw in block.txs]
    end_of_block(state, h.height)
    ensure(h.state_root == state.root(), InvalidBlock, "state_root does not match")
    return receipts
