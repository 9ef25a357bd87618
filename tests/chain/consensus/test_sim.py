"""Seeded simulations: agreement, validity, progress after healing, byzantine and crash safety."""

from __future__ import annotations

import pytest

from storaged.chain.consensus.messages import Message, Proposal, Vote
from storaged.store.kv import LevelKV
from tests.chain.consensus.sim import CHAIN, Sim


def assert_safe(sim: Sim, honest: list[int]) -> None:
    """No two honest nodes committed different values at one height; all were validated."""
    decided: dict[int, bytes] = {}
    for i in honest:
        app = sim.nodes[i].app
        for h, v in app.committed.items():
            assert decided.setdefault(h, v) == v, f"fork at height {h}"
            assert v in app.validated or not v.startswith(b"bad")
            assert not v.startswith(b"bad")
            app.certs[h].verify(CHAIN, sim.valset)


def assert_no_double_sign(msgs: list[Message]) -> None:
    seen: dict[tuple[int, int, int], Message] = {}
    for m in msgs:
        step = 0 if isinstance(m, Proposal) else m.kind
        prev = seen.setdefault((m.height, m.round, step), m)
        assert prev.body() == m.body(), f"double sign at {m.height}/{m.round}/{step}"


@pytest.mark.parametrize("n,seed", [(4, 1), (4, 2), (5, 3)])
def test_agreement_over_many_heights(n: int, seed: int) -> None:
    sim = Sim(n, seed)
    sim.start()
    assert sim.run_until(lambda: sim.min_height() >= 10, 120_000)
    assert_safe(sim, list(range(n)))
    for node in sim.nodes:
        assert_no_double_sign(node.emitted)


@pytest.mark.parametrize("seed", [4, 5])
def test_lossy_network_and_healed_partition(seed: int) -> None:
    sim = Sim(5, seed, drop=0.2, dup=0.2, max_delay=200)
    # {0,1} cut from {2,3,4} for the first 5 s: no side has 2/3+, so nothing commits.
    sim.partition = lambda t, a, b: t < 5_000 and (a < 2) != (b < 2)
    sim.start()
    assert not sim.run_until(lambda: sim.min_height() >= 1 and sim.now >= 5_000, 4_999)
    assert sim.min_height([0, 1]) == 0
    assert sim.run_until(lambda: sim.min_height() >= 6, 300_000)
    assert_safe(sim, list(range(5)))


def test_invalid_proposals_are_never_committed() -> None:
    sim = Sim(4, 6)
    sim.nodes[0].app.bad_proposals = True
    sim.start()
    assert sim.run_until(lambda: sim.min_height() >= 6, 200_000)
    assert_safe(sim, [1, 2, 3])


@pytest.mark.parametrize("behaviour", ["silent", "double_vote", "equivocate"])
def test_one_byzantine_validator_cannot_break_safety(behaviour: str) -> None:
    sim = Sim(4, 7, drop=0.05, behaviours={3: behaviour})
    sim.start()
    assert sim.run_until(lambda: sim.min_height([0, 1, 2]) >= 6, 300_000)
    assert_safe(sim, [0, 1, 2])
    if behaviour == "double_vote":
        evidence = [e for i in (0, 1, 2) for e in sim.nodes[i].evidence]
        assert evidence, "double votes went undetected"
        for e in evidence:
            e.verify(CHAIN, sim.valset)
            assert e.vote_a.validator == bytes(sim.keys[3].verify_key)


@pytest.mark.parametrize("crash_after", range(1, 10))
def test_crash_and_restart_at_every_step_never_double_signs(crash_after: int) -> None:
    sim = Sim(4, 100 + crash_after, drop=0.05)
    victim = sim.nodes[1]
    emitted_before = len(victim.emitted)
    sim.start()
    # Crash right after the victim's k-th signed message, before the network saw it.
    assert sim.run_until(lambda: len(sim.nodes[1].emitted) >= emitted_before + crash_after,
                         60_000)
    sim.crash(1)
    crash_time = sim.now
    sim.at(crash_time + 700, lambda: sim.restart(1))
    assert sim.run_until(lambda: sim.min_height() >= 5, 300_000)
    assert_safe(sim, [0, 1, 2, 3])
    assert_no_double_sign(sim.nodes[1].emitted)


def test_restart_from_leveldb_wal(tmp_path: object) -> None:
    import pathlib
    assert isinstance(tmp_path, pathlib.Path)
    sim = Sim(4, 11)
    kv = LevelKV(tmp_path / "wal", sync=True)
    sim.nodes[2] = sim._make_node(2, kv, "honest")
    sim.start()
    assert sim.run_until(lambda: sum(isinstance(m, Vote) for m in sim.nodes[2].emitted) >= 5,
                         60_000)
    sim.crash(2)
    kv.close()
    kv2 = LevelKV(tmp_path / "wal", sync=True)
    old = sim.nodes[2]
    old.kv = kv2
    sim.at(sim.now + 500, lambda: sim.restart(2))
    assert sim.run_until(lambda: sim.min_height() >= 4, 300_000)
    assert_safe(sim, [0, 1, 2, 3])
    assert_no_double_sign(sim.nodes[2].emitted)
    kv2.close()


def test_node_down_for_many_heights_catches_up_with_certificates() -> None:
    sim = Sim(4, 12)
    sim.start()
    sim.crash(3)
    assert sim.run_until(lambda: sim.min_height([0, 1, 2]) >= 8, 200_000)
    assert sim.min_height([3]) == 0
    sim.restart(3)
    assert sim.run_until(lambda: sim.min_height([3]) >= 8, 200_000)
    assert_safe(sim, [0, 1, 2, 3])
    assert_no_double_sign(sim.nodes[3].emitted)
    # Its heights 1..8 came from certificates: it never saw most of those rounds' votes.
    assert all(sim.nodes[3].app.certs[h].height == h for h in range(1, 9))


@pytest.mark.parametrize("seed", range(200, 230))
def test_random_faults_sweep(seed: int) -> None:
    """Many seeds, each with its own loss, duplication, delay and a partition that heals."""
    import random

    rng = random.Random(seed)
    n = rng.choice([4, 5])
    sim = Sim(n, seed, drop=rng.uniform(0, 0.3), dup=rng.uniform(0, 0.3),
              max_delay=rng.randint(20, 400), powers=[rng.randint(1, 5) for _ in range(n)])
    cut = set(rng.sample(range(n), rng.randint(1, n - 1)))
    heal = rng.randint(0, 8_000)
    sim.partition = lambda t, a, b: t < heal and ((a in cut) != (b in cut))
    sim.start()
    assert sim.run_until(lambda: sim.min_height() >= 4, 400_000)
    assert_safe(sim, list(range(n)))
    for node in sim.nodes:
        assert_no_double_sign(node.emitted)
