"""Proofs of replication and spacetime, with a C hot path and a pure-Python twin.

``BACKEND`` says which implementation is live: ``"c"`` (the compiled ``proofs._native``) or
``"python"`` (``proofs.reference``).  The twin is used only when asked for explicitly with
``STORAGED_PROOFS_BACKEND=python``; a missing or broken C build is an error, never a silent
fallback to the slow path.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from proofs import reference
from proofs.errors import ProofError, ProofInvalid

__all__ = ["BACKEND", "ProofError", "ProofInvalid", "impl", "native", "reference", "xor_bytes"]


def _load_native() -> ModuleType:
    try:
        # importlib, not `from proofs import _native`: the extension has no stub, and mypy
        # (strict) would see an unknown attribute and an Any-typed module.
        mod: ModuleType = importlib.import_module("proofs._native")
    except ImportError as exc:  # pragma: no cover - exercised only on a broken build
        raise ImportError(
            "proofs C extension is not built: run `make test` (or `pip install -e .`) to "
            "compile it, or set STORAGED_PROOFS_BACKEND=python to use the slow twin"
        ) from exc
    mod.set_error_class(ProofError)
    return mod


_requested = os.environ.get("STORAGED_PROOFS_BACKEND", "c")
if _requested not in ("c", "python"):
    raise ImportError(f"STORAGED_PROOFS_BACKEND must be 'c' or 'python', not {_requested!r}")

native: ModuleType | None = _load_native() if _requested == "c" else None
impl: ModuleType = native if native is not None else reference
BACKEND: str = _requested

xor_bytes = impl.xor_bytes
