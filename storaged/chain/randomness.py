"""The chain's randomness beacon and ``randomness(tag, height, entropy)``.

Each block at height h carries ``beacon_proof`` = ECVRF proof by the block's proposer over
``alpha = b"storaged-beacon-v1" || u64be(h) || beacon(h-1)``, and ``beacon = VRF output (beta,
64 bytes)``.  The proposer cannot choose the beacon (the VRF output is unique for its key and
input); it can only withhold its block, which BFT turns into another proposer's round.
Genesis beacon = ``blake3(b"storaged-genesis-beacon-v1" || chain_id_utf8)`` padded to 64 bytes
by blake3's XOF.  Beacons are state entries (``0x33 || u64 height``) so the pure core can read
them.

``randomness(state, tag, height, entropy)`` = ``blake3(keyed by "storaged randomness v1")(
u16be(len(tag)) || tag || u64be(height) || beacon(height) || entropy)``; callers pass the
height after their lookback (e.g. PoRep seed: precommit height + wait; PoSt: window open -
lookback), so the value is fixed before the provider must respond.
"""

from __future__ import annotations

import blake3

from storaged.chain import vrf
from storaged.chain.errors import InvalidBlock, StateCorrupt, ensure
from storaged.chain.state import StateOverlay
from storaged.store import schema

_RANDOMNESS_KEY = blake3.blake3(b"storaged randomness v1").digest()


def genesis_beacon(chain_id: str) -> bytes:
    """The beacon of height 0."""
    return blake3.blake3(b"storaged-genesis-beacon-v1" + chain_id.encode()).digest(length=64)


def beacon_input(height: int, previous: bytes) -> bytes:
    """VRF input (alpha) for the beacon at ``height``."""
    return b"storaged-beacon-v1" + schema.u64(height) + previous


def load_beacon(state: StateOverlay, height: int) -> bytes:
    """The beacon recorded at ``height``.

    Raises:
        StateCorrupt: no beacon stored for that height (callers check the height first).
    """
    raw = state.get(schema.state_beacon_key(height))
    if raw is None:
        raise StateCorrupt(f"no beacon at height {height}")
    return raw


def store_beacon(state: StateOverlay, height: int, beacon: bytes) -> None:
    """Record the beacon of ``height``."""
    state.put(schema.state_beacon_key(height), beacon)


def check_beacon(
    state: StateOverlay, height: int, proposer: bytes, beacon: bytes, proof: bytes
) -> None:
    """Verify the block's beacon against the proposer's VRF over the previous beacon.

    Raises:
        InvalidBlock: the beacon is not the VRF output of that proof.
        InvalidVrfProof: the proof does not verify for the proposer's key.
    """
    beta = vrf.verify(proposer, proof, beacon_input(height, load_beacon(state, height - 1)))
    ensure(beta == beacon, InvalidBlock, "beacon is not the proposer's VRF output")


def randomness(state: StateOverlay, tag: bytes, height: int, entropy: bytes) -> bytes:
    """32 bytes of chain randomness for ``tag`` drawn from the beacon at ``height``.

    Raises:
        StateCorrupt: no beacon at ``height`` (it must be a committed or current height).
    """
    data = len(tag).to_bytes(2, "big") + tag + schema.u64(height)
    return blake3.blake3(data + load_beacon(state, height) + entropy, key=_RANDOMNESS_KEY).digest()
