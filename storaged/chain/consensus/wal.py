"""The write-ahead log and the only signer: no message leaves unless it is durably logged.

Every proposal and vote this validator signs is written, together with its lock state, in one
KV batch (fsynced when the KV is a ``LevelKV(sync=True)``) BEFORE the signed message is
returned to be sent.  Before signing, the log is consulted: if a message was already signed at
the same (height, round, step), the logged one is returned when identical in content and the
request is refused (:class:`DoubleSignRefused`) when it conflicts.  So a validator restarted at
any point never double-signs.

Records (keys in :mod:`storaged.store.schema`):

- ``WAL_SIGNED + u64 height + u32 round + u8 step`` -> encoded message (step 0 proposal,
  1 prevote, 2 precommit).
- ``WAL_LOCK`` -> canonical CBOR ``[1, height, locked_round, locked_value, valid_round,
  valid_value]`` (-1 / null when unset).

:meth:`Signer.prune` deletes records below a height once that height is committed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2
from nacl.signing import SigningKey

from storaged.chain.consensus.errors import DoubleSignRefused
from storaged.chain.consensus.messages import (
    Message,
    Proposal,
    Vote,
    decode_message,
    sign_proposal,
    sign_vote,
)
from storaged.errors import LocalBugError
from storaged.store import schema
from storaged.store.kv import KV

STEP_PROPOSAL = 0


@dataclass(frozen=True, slots=True)
class LockState:
    """Tendermint's locked and valid value/round at one height (-1/None when unset)."""

    height: int
    locked_round: int = -1
    locked_value: bytes | None = None
    valid_round: int = -1
    valid_value: bytes | None = None

    def encode(self) -> bytes:
        return cbor2.dumps([1, self.height, self.locked_round, self.locked_value,
                            self.valid_round, self.valid_value], canonical=True)


class Signer:
    """This validator's key, guarded by its WAL in ``kv``."""

    def __init__(self, key: SigningKey, chain_id: str, kv: KV) -> None:
        self.key = key
        self.public_key = bytes(key.verify_key)
        self.chain_id = chain_id
        self._kv = kv

    def _log(self, height: int, round_: int, step: int, msg: Message, lock: LockState) -> Message:
        k = schema.wal_signed_key(height, round_, step)
        old = self._kv.get(k)
        if old is not None:
            prev = decode_message(old)
            if prev.body() != msg.body():
                raise DoubleSignRefused(f"already signed another message at {height}/{round_}"
                                        f"/{step}")
            return prev
        with self._kv.batch() as b:
            b.put(k, msg.encode())
            b.put(schema.WAL_LOCK, lock.encode())
        return msg

    def propose(self, height: int, round_: int, value: bytes, valid_round: int,
                lock: LockState) -> Proposal:
        """Sign and log a proposal.  Raises: DoubleSignRefused: another is logged."""
        p = sign_proposal(self.key, self.chain_id, height, round_, value, valid_round)
        out = self._log(height, round_, STEP_PROPOSAL, p, lock)
        if not isinstance(out, Proposal):
            raise LocalBugError("WAL holds a vote under a proposal key")
        return out

    def vote(self, kind: int, height: int, round_: int, vid: bytes | None,
             lock: LockState) -> Vote:
        """Sign and log a vote.  Raises: DoubleSignRefused: a conflicting vote is logged."""
        v = sign_vote(self.key, self.chain_id, kind, height, round_, vid)
        out = self._log(height, round_, kind, v, lock)
        if not isinstance(out, Vote):
            raise LocalBugError("WAL holds a proposal under a vote key")
        return out

    def signed_at(self, height: int) -> list[Message]:
        """Every message logged at ``height``, in (round, step) order."""
        prefix = schema.WAL_SIGNED + schema.u64(height)
        return [decode_message(v) for _, v in self._kv.scan(prefix)]

    def lock_state(self, height: int) -> LockState:
        """The logged lock state if it belongs to ``height``, else an empty one."""
        raw = self._kv.get(schema.WAL_LOCK)
        if raw is None:
            return LockState(height)
        obj = cbor2.loads(raw)
        if obj[1] != height:
            return LockState(height)
        return LockState(obj[1], obj[2], obj[3], obj[4], obj[5])

    def prune(self, below_height: int) -> None:
        """Delete signed records of heights below ``below_height`` (already committed)."""
        keys = [k for k, _ in self._kv.scan(schema.WAL_SIGNED)
                if int.from_bytes(k[1:9], "big") < below_height]
        with self._kv.batch() as b:
            for k in keys:
                b.delete(k)
