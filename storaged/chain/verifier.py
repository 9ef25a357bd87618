"""The ``ProofVerifier`` interface the chain rules check PoRep and PoSt through.

The default, :data:`NATIVE`, is the C verifier of :mod:`proofs.seal`.  The interface exists so
another settlement backend (a different proof system behind the same sector rules) can plug in;
it is not a way to skip verification.
"""

from __future__ import annotations

from typing import Protocol

from proofs import seal
from proofs.errors import ProofError


class ProofVerifier(Protocol):
    """Checks the two proofs a sector's lifecycle needs; a bad proof returns False."""

    def verify_porep(self, comm_d: bytes, comm_r: bytes, rid: bytes, n_nodes: int, layers: int,
                     sector: int, seed: bytes, k: int, proof: bytes) -> bool:
        """Whether ``proof`` shows ``comm_r`` is ``comm_d`` sealed under ``rid``."""
        ...

    def verify_post(self, comm_r: bytes, sector: int, randomness: bytes, k: int, n_nodes: int,
                    proof: bytes) -> bool:
        """Whether ``proof`` opens the ``k`` leaves ``randomness`` challenges behind comm_r."""
        ...


class NativeVerifier:
    """:class:`ProofVerifier` over the C core (``proofs.seal``); malformed input is False."""

    def verify_porep(self, comm_d: bytes, comm_r: bytes, rid: bytes, n_nodes: int, layers: int,
                     sector: int, seed: bytes, k: int, proof: bytes) -> bool:
        try:
            return seal.verify_porep(comm_d, comm_r, rid, n_nodes, layers, sector, seed, k, proof)
        except ProofError:
            return False

    def verify_post(self, comm_r: bytes, sector: int, randomness: bytes, k: int, n_nodes: int,
                    proof: bytes) -> bool:
        try:
            return seal.verify_post(comm_r, sector, randomness, k, n_nodes, proof)
        except ProofError:
            return False


NATIVE: ProofVerifier = NativeVerifier()
