"""The chain application: what consensus drives, and the only place chain I/O happens.

Consensus treats blocks as opaque bytes and calls, for each height:

- ``propose(height, time, proposer_key, candidates) -> bytes``: build a block from mempool
  candidates (invalid ones are skipped, at most ``max_txs_per_block``), with its state root.
- ``validate(block_bytes) -> None``: raise a :class:`ChainError` leaf if the block must not be
  voted for; changes nothing.
- ``commit(block_bytes, certificate) -> bytes``: apply and persist block, certificate, receipts,
  state changes and the new head in ONE atomic KV batch; returns the block hash.

A block is executed once per node, not once per call: the write overlay and receipts of a
successful check are kept, keyed by (head hash, blake3 of the block bytes), and reused by a
later ``validate`` or ``commit`` of the same bytes on the same head (the proposer's own
check, the validation before its prevote, the commit).  An overlay only holds writes and
reads through the store, and the store does not change while the head stays the same, so a
reused result is exactly what re-applying would give.  Entries for any other head are dropped.
Transactions are authenticated through a per-node :class:`VerifiedTxs` cache, so each
signature is checked once per node, not at admission, validation and commit.

Genesis (:func:`init_genesis`) writes height 0: allocations, params, totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nacl.signing

from storaged.chain import accounts, encoding, providers, randomness, vrf
from storaged.chain.accounts import Account, Params, Totals
from storaged.chain.apply import apply_tx
from storaged.chain.block import Block, Header, Parent, apply_block, decode_block, txs_root
from storaged.chain.context import Context
from storaged.chain.cron import end_of_block
from storaged.chain.errors import ChainError, InvalidBlock, StateCorrupt, ensure
from storaged.chain.providers import Provider
from storaged.chain.state import EntryProof, StateOverlay, prove_entry
from storaged.chain.txcache import VerifiedTxs
from storaged.chain.verifier import NATIVE, ProofVerifier
from storaged.store import schema
from storaged.store.kv import KV

CHECKED_MAX = 4  # executed blocks kept per node (one height rarely sees more proposals)
HEAD_FIELDS: dict[str, type] = {"height": int, "hash": bytes, "time": int, "state_root": bytes}
GENESIS_PARENT = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block."""

    height: int
    hash: bytes
    time: int
    state_root: bytes


def init_genesis(
    kv: KV, chain_id: str, allocations: dict[bytes, int], params: Params, time: int,
    genesis_providers: dict[bytes, Provider] | None = None,
) -> Head:
    """Write the genesis block (height 0) and state into an empty store.

    ``genesis_providers`` are registered with their collateral and bond minted; their bonds
    form the validator set from height 0.

    Raises:
        StateCorrupt: the store already holds a chain.
    """
    if kv.get(schema.CHAIN_HEAD) is not None:
        raise StateCorrupt("genesis on a store that already has a head")
    state = StateOverlay(kv)
    for key in sorted(allocations):
        accounts.store_account(state, key, Account(balance=allocations[key]))
    initial = dict(sorted((genesis_providers or {}).items()))
    for key, provider in initial.items():
        providers.store_provider(state, key, provider)
    providers.init_validators(state, providers.bonded_set(state))
    minted = sum(allocations.values()) + sum(p.collateral + p.bond for p in initial.values())
    accounts.store_totals(state, Totals(minted=minted))
    accounts.store_params(state, params)
    beacon = randomness.genesis_beacon(chain_id)
    randomness.store_beacon(state, 0, beacon)
    header = Header(chain=chain_id, height=0, time=time, parent=GENESIS_PARENT,
                    proposer=GENESIS_PARENT, txs_root=txs_root([]), state_root=state.root(),
                    beacon=beacon, beacon_proof=bytes(vrf.PROOF_LEN))
    block = Block(header=header, txs=())
    _persist(kv, state, block, b"", [])
    return Head(0, header.hash(), time, header.state_root)


def _persist(
    kv: KV, state: StateOverlay, block: Block, certificate: bytes, receipts: list[dict[str, Any]]
) -> None:
    h = block.header
    block_hash = h.hash()
    with kv.batch() as batch:
        state.write_to(batch)
        batch.put(schema.chain_block_key(h.height), block.encode())
        batch.put(schema.chain_block_hash_key(block_hash), schema.u64(h.height))
        batch.put(schema.chain_commit_key(h.height), certificate)
        batch.put(schema.chain_receipts_key(h.height), encoding.encode(receipts))
        for index, receipt in enumerate(receipts):
            batch.put(schema.chain_tx_index_key(receipt["tx"]),
                      schema.u64(h.height) + schema.u32(index))
        batch.put(schema.CHAIN_HEAD, encoding.encode(
            {"height": h.height, "hash": block_hash, "time": h.time,
             "state_root": h.state_root}))


def read_receipt(kv: KV, tx_hash: bytes) -> dict[str, Any] | None:
    """The committed receipt of ``tx_hash`` with ``"height"`` and ``"index"``, or None.

    Raises:
        StateCorrupt: the tx index points at missing or short receipts.
    """
    where = kv.get(schema.chain_tx_index_key(tx_hash))
    if where is None:
        return None
    height, index = int.from_bytes(where[:8], "big"), int.from_bytes(where[8:12], "big")
    raw = kv.get(schema.chain_receipts_key(height))
    receipts = encoding.decode(raw) if raw is not None else None
    if not isinstance(receipts, list) or index >= len(receipts):
        raise StateCorrupt(f"tx index names receipt {index} at height {height}, not stored")
    out: dict[str, Any] = dict(receipts[index])
    out["height"], out["index"] = height, index
    return out


class ChainApp:
    """The application interface consensus calls; owns the chain's KV."""

    def __init__(self, kv: KV, chain_id: str, verifier: ProofVerifier = NATIVE, *,
                 max_block_bytes: int | None = None) -> None:
        """``max_block_bytes`` caps the summed size of the transactions this node proposes
        in one block (None: only the ``max_txs_per_block`` parameter).  It is a proposer's
        choice, not a validity rule: it keeps a block small enough to gossip and apply within
        a block interval, so a backlog drains over several pipelined blocks."""
        self.kv = kv
        self.chain_id = chain_id
        self.verifier = verifier
        self.max_block_bytes = max_block_bytes
        self.txs = VerifiedTxs(chain_id)
        self.executions = 0  # blocks applied by _check, valid or not (cache misses)
        self._checked: dict[tuple[bytes, bytes], tuple[StateOverlay, list[dict[str, Any]]]] = {}

    def head(self) -> Head:
        """The last committed block.

        Raises:
            StateCorrupt: no genesis, or a malformed head record.
        """
        raw = self.kv.get(schema.CHAIN_HEAD)
        if raw is None:
            raise StateCorrupt("chain store has no head (run genesis first)")
        return Head(**encoding.require_map(encoding.decode(raw), HEAD_FIELDS, "head"))

    def propose(
        self, height: int, time: int, proposer_key: nacl.signing.SigningKey,
        candidates: Iterable[bytes],
    ) -> bytes:
        """Build the block at ``height`` from candidate txs, skipping any that fail.

        The proposer's ed25519 key also makes the block's VRF beacon.

        Raises:
            InvalidBlock: ``height``/``time`` do not follow the head.
        """
        state = StateOverlay(self.kv)
        params = accounts.load_params(state)
        head = self.head()
        ensure(height == head.height + 1, InvalidBlock,
               f"cannot propose height {height} on head {head.height}")
        previous = randomness.load_beacon(state, height - 1)
        proof = vrf.prove(bytes(proposer_key), randomness.beacon_input(height, previous))
        beacon = vrf.proof_to_hash(proof)
        randomness.store_beacon(state, height, beacon)
        chosen: list[bytes] = []
        size = 0
        for raw in candidates:
            if len(chosen) >= params.max_txs_per_block:
                break
            if self.max_block_bytes is not None and size + len(raw) > self.max_block_bytes:
                break
            trial = state.child()
            try:
                apply_tx(trial, self.txs.decode(raw, self.chain_id),
                         Context(height, params, self.verifier))
            except ChainError:
                continue  # an invalid or now-stale tx is left out, never blocks the others
            trial.merge_into(state)
            chosen.append(raw)
            size += len(raw)
        end_of_block(state, height)
        header = Header(chain=self.chain_id, height=height, time=time,
                        parent=self.head().hash, proposer=bytes(proposer_key.verify_key),
                        txs_root=txs_root(chosen), state_root=state.root(),
                        beacon=beacon, beacon_proof=proof)
        block = Block(header=header, txs=tuple(chosen))
        raw_block = block.encode()
        self._check(raw_block)  # our own block passes the validators' check, or we raise
        return raw_block

    def _check(self, block_bytes: bytes) -> tuple[Block, StateOverlay, list[dict[str, Any]]]:
        """Decode and execute ``block_bytes`` on the head, or reuse that execution.

        Raises:
            ChainError: the specific rule the block breaks (nothing is cached).
        """
        head = self.head()
        key = (head.hash, encoding.digest(block_bytes))
        block = decode_block(block_bytes)
        found = self._checked.get(key)
        if found is not None:
            return block, found[0], found[1]
        state = StateOverlay(self.kv)
        self.executions += 1
        receipts = apply_block(state, block, Parent(self.chain_id, head.height, head.hash,
                                                    head.time), self.verifier, self.txs.decode)
        for old in [k for k in self._checked if k[0] != head.hash]:
            del self._checked[old]
        while len(self._checked) >= CHECKED_MAX:
            del self._checked[next(iter(self._checked))]
        self._checked[key] = (state, receipts)
        return block, state, receipts

    def validate(self, block_bytes: bytes) -> None:
        """Raise unless ``block_bytes`` is a valid next block; writes nothing.

        Raises:
            ChainError: the specific rule the block breaks.
        """
        self._check(block_bytes)

    def commit(self, block_bytes: bytes, certificate: bytes) -> bytes:
        """Apply and persist a block with its commit certificate atomically; returns its hash.

        Raises:
            ChainError: the block is invalid (nothing is written).
        """
        block, state, receipts = self._check(block_bytes)
        self._checked.clear()  # every entry was for the old head
        _persist(self.kv, state, block, certificate, receipts)
        return block.header.hash()

    def check_tx(self, raw: bytes) -> None:
        """Raise unless ``raw`` would apply on committed state as the next block's transaction.

        Decodes, then applies in a throwaway overlay at height head + 1 (nothing is written).
        The mempool calls it; a later block may still refuse the tx (state moves on).

        Raises:
            ChainError: the specific rule the transaction breaks (its leaf).
        """
        state = StateOverlay(self.kv)
        tx = self.txs.decode(raw, self.chain_id)
        apply_tx(state, tx, Context(self.head().height + 1, accounts.load_params(state),
                                    self.verifier))

    def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        """The receipt of a committed transaction plus its ``"height"`` and ``"index"``.

        None when no committed block holds ``tx_hash``.

        Raises:
            StateCorrupt: the tx index points at missing or short receipts.
        """
        return read_receipt(self.kv, tx_hash)

    def account(self, public_key: bytes) -> Account:
        """Committed account of ``public_key``."""
        return accounts.load_account(StateOverlay(self.kv), public_key)

    def block_at(self, height: int) -> bytes | None:
        """Committed block bytes at ``height``, if any."""
        return self.kv.get(schema.chain_block_key(height))

    def state_root(self) -> bytes:
        """Root over committed state (recomputed; equals the head's state_root)."""
        return StateOverlay(self.kv).root()

    def validators(self, height: int) -> list[tuple[bytes, int]]:
        """Validator set (public key, bonded power) in force at ``height``, sorted by key.

        Raises:
            StateCorrupt: no set recorded (no genesis).
        """
        return providers.validators(StateOverlay(self.kv), height)

    def query(self, key: bytes) -> tuple[Head, bytes, EntryProof] | None:
        """A committed state entry with its Merkle proof against the head's state root.

        A light client checks it with :func:`storaged.chain.state.verify_entry` against a
        header it trusts (one carrying a commit certificate).  None when ``key`` is absent.
        """
        head = self.head()
        found = prove_entry(list(StateOverlay(self.kv).scan_entries()), key)
        if found is None:
            return None
        return head, found[0], found[1]
