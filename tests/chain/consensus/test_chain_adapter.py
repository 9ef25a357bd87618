"""Four real ChainApps, each behind consensus, commit identical blocks carrying a transfer."""

from __future__ import annotations

from storaged.chain.accounts import Params
from storaged.chain.app import ChainApp, init_genesis
from storaged.chain.consensus.certificate import Certificate, decode_certificate
from storaged.chain.consensus.chain_adapter import ChainConsensusApp
from storaged.chain.consensus.validators import ValidatorSet
from storaged.chain.providers import Provider
from storaged.store import schema
from storaged.store.kv import MemoryKV
from tests.chain.consensus.sim import Sim, SimApp
from tests.chain.helpers import CHAIN, GENESIS_TIME, key, pk, transfer

PROVIDERS = {pk(i): Provider(peer_id=f"p{i}", bond=10) for i in range(4)}
MEMPOOL = [transfer(0, 1, 5, 0)]


class ChainSimApp(SimApp):
    """The simulation's bookkeeping around a real chain behind :class:`ChainConsensusApp`."""

    def __init__(self, index: int, valset: ValidatorSet) -> None:
        super().__init__(index, valset)
        kv = MemoryKV()
        init_genesis(kv, CHAIN, {pk(0): 1_000}, Params(), GENESIS_TIME, PROVIDERS)
        self.chain = ChainApp(kv, CHAIN)
        self.inner = ChainConsensusApp(self.chain, key(index), lambda: GENESIS_TIME + 5,
                                       lambda: list(MEMPOOL))

    def validators(self, height: int) -> ValidatorSet:
        return self.inner.validators(height)

    def propose(self, height: int, round_: int) -> bytes:
        return self.inner.propose(height, round_)

    def validate(self, height: int, value: bytes) -> None:
        self.inner.validate(height, value)
        self.validated.add(value)

    def commit(self, height: int, value: bytes, certificate: Certificate) -> None:
        self.inner.commit(height, value, certificate)
        super().commit(height, value, certificate)


def test_chain_blocks_commit_through_consensus() -> None:
    valset = ValidatorSet.of((pk(i), 10) for i in range(4))
    sim = Sim(4, 31, keys=[key(i) for i in range(4)], chain_id=CHAIN, make_app=ChainSimApp)
    assert sim.valset == valset
    sim.start()
    assert sim.run_until(lambda: sim.min_height() >= 3, 100_000)
    chains = [n.app.chain for n in sim.nodes if isinstance(n.app, ChainSimApp)]
    assert len(chains) == 4
    assert len({c.head().hash for c in chains}) == 1 and chains[0].head().height >= 3
    assert all(c.account(pk(1)).balance == 5 for c in chains)  # the transfer went in once
    cert = decode_certificate(chains[0].kv.get(schema.chain_commit_key(1)) or b"")
    cert.verify(CHAIN, valset)
