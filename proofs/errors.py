"""Errors raised by the proofs package (C core and Python twin alike)."""

from __future__ import annotations

from storaged.errors import IntegrityError, UserError


class ProofError(UserError):
    """A proofs function was called with invalid arguments (sizes, indices, parameters)."""


class ProofInvalid(IntegrityError):
    """A proof or commitment failed verification."""
