"""A bounded cache of decoded, signature-checked transactions, keyed by their exact bytes.

Within one node a transaction is decoded and its ed25519 signature checked at admission
(mempool CheckTx), again when a proposal holding it is validated, and again when that block
is committed; each check costs ~0.1 ms, the decode a tenth of that.  :func:`decode_tx` is a
pure function of ``(raw, chain_id)``, so its result for the same bytes never changes: this
cache returns it without re-verifying.  The key is the raw bytes themselves (not a hash of
them), so a hit can only be the very transaction that was verified.  Failures are not cached
(a bad transaction costs a full check each time, as before).

One cache belongs to one :class:`storaged.chain.app.ChainApp` (one node): nodes sharing a
process never share verification work, so an in-process benchmark measures what each
node would do on its own machine.
"""

from __future__ import annotations

from collections import OrderedDict

from storaged.chain.tx import Tx, decode_tx

DEFAULT_CAPACITY = 50_000  # a few full mempools' worth; ~1 KiB per entry


class VerifiedTxs:
    """LRU of :class:`Tx` objects that :func:`decode_tx` accepted for one chain id."""

    def __init__(self, chain_id: str, capacity: int = DEFAULT_CAPACITY) -> None:
        self.chain_id = chain_id
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txs)

    def decode(self, raw: bytes, chain_id: str) -> Tx:
        """:func:`decode_tx` with the result remembered for the same ``raw``.

        Raises:
            MalformedEncoding: not canonical CBOR, wrong shape, version, kind or field range.
            WrongChain: signed for another chain (``chain_id`` differs from the tx's).
            InvalidSignature: the signature does not verify for ``from``.
        """
        if chain_id != self.chain_id:  # a cached Tx was only checked against our chain id
            return decode_tx(raw, chain_id)
        tx = self._txs.get(raw)
        if tx is not None:
            self.hits += 1
            self._txs.move_to_end(raw)
            return tx
        self.misses += 1
        tx = decode_tx(raw, chain_id)
        self._txs[tx.raw] = tx
        if len(self._txs) > self.capacity:
            self._txs.popitem(last=False)
        return tx
