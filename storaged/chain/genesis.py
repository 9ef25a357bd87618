"""The genesis file: what every node of a network must agree on before block 1.

``genesis.json`` (JSON so people can read and diff it; keys are hex ed25519 public keys)::

    {"chain_id": text, "time": unix seconds,
     "params": {<Params field>: int, ...},          # missing fields take Params' defaults
     "allocations": {<hex pk>: balance, ...},
     "providers": {<hex pk>: {"peer_id": text, "addrs": [multiaddr], "price": int,
                              "capacity": int, "collateral": int, "bond": int}, ...}}

Genesis providers are registered with their collateral and bond minted, and their bonds are the
validator set from height 0.  Every node applies the same file to an empty store
(:func:`apply_genesis`); a node whose store already holds a chain checks that it is this one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storaged.chain.accounts import Params
from storaged.chain.app import ChainApp, Head, init_genesis
from storaged.chain.providers import Provider
from storaged.errors import ConfigError, ResourceError
from storaged.store.kv import KV, MemoryKV

GENESIS_FILE = "genesis.json"
_PROVIDER_KEYS = {f.name for f in dataclasses.fields(Provider)}


@dataclass
class Genesis:
    """The parsed genesis file."""

    chain_id: str
    time: int
    params: Params = field(default_factory=Params)
    allocations: dict[bytes, int] = field(default_factory=dict)
    providers: dict[bytes, Provider] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object this genesis is written as."""
        return {
            "chain_id": self.chain_id,
            "time": self.time,
            "params": dataclasses.asdict(self.params),
            "allocations": {k.hex(): v for k, v in sorted(self.allocations.items())},
            "providers": {k.hex(): dataclasses.asdict(p)
                          for k, p in sorted(self.providers.items())},
        }


def _key(text: str, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"genesis {where}: {text!r} is not a 64-hex-digit public key")
    return raw


def _uint(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise ConfigError(f"genesis {where}: expected an unsigned integer, got {value!r}")
    return value


def parse_genesis(data: Any) -> Genesis:
    """Validate a decoded genesis JSON object.

    Raises:
        ConfigError: a field is missing, unknown or of the wrong type (the message names it).
    """
    if not isinstance(data, dict):
        raise ConfigError("genesis must be a JSON object")
    unknown = set(data) - {"chain_id", "time", "params", "allocations", "providers"}
    if unknown:
        raise ConfigError(f"genesis: unknown field(s) {sorted(unknown)}")
    chain_id = data.get("chain_id")
    if not isinstance(chain_id, str) or not chain_id:
        raise ConfigError("genesis chain_id must be a non-empty string")
    param_fields = {f.name for f in dataclasses.fields(Params)}
    raw_params = data.get("params", {})
    if not isinstance(raw_params, dict) or set(raw_params) - param_fields:
        extra = sorted(set(raw_params) - param_fields)
        raise ConfigError(f"genesis params: unknown field(s) {extra}; "
                          f"known: {sorted(param_fields)}")
    params = Params(**{k: _uint(v, f"params.{k}") for k, v in raw_params.items()})
    allocations = {_key(k, "allocations"): _uint(v, f"allocations.{k}")
                   for k, v in dict(data.get("allocations", {})).items()}
    providers: dict[bytes, Provider] = {}
    for k, rec in dict(data.get("providers", {})).items():
        if not isinstance(rec, dict) or set(rec) - _PROVIDER_KEYS or "peer_id" not in rec:
            raise ConfigError(f"genesis providers.{k}: needs peer_id, and only the fields "
                              f"{sorted(_PROVIDER_KEYS)}")
        addrs = rec.get("addrs", [])
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise ConfigError(f"genesis providers.{k}.addrs must be a list of multiaddrs")
        ints = {n: _uint(rec.get(n, 0), f"providers.{k}.{n}")
                for n in ("price", "capacity", "collateral", "bond")}
        providers[_key(k, "providers")] = Provider(peer_id=str(rec["peer_id"]), addrs=addrs, **ints)
    return Genesis(chain_id, _uint(data.get("time", 0), "time"), params, allocations, providers)


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file.

    Raises:
        ConfigError: the file is missing, not JSON, or invalid (the message says which field).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no genesis file at {path} (run `storaged devnet` or copy the "
                          f"network's genesis.json there)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read genesis file {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"genesis file {path} is not JSON: {exc}") from exc
    return parse_genesis(data)


def write_genesis(path: Path, genesis: Genesis) -> None:
    """Write ``genesis`` as JSON (sorted keys, so every copy is byte-identical).

    Raises:
        ResourceError: the file cannot be written.
    """
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(genesis.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise ResourceError(f"cannot write genesis file {path}: {exc}") from exc


def apply_genesis(kv: KV, genesis: Genesis) -> Head:
    """Initialise an empty chain store from ``genesis``, or check an existing one matches.

    The check rebuilds block 0 from the file in memory and compares it byte for byte with the
    stored one, so no extra record is needed (and a crash during initialisation leaves either
    nothing or the whole genesis: :func:`init_genesis` writes one batch).

    Raises:
        ConfigError: the store holds a chain with another id or another genesis.
    """
    app = ChainApp(kv, genesis.chain_id)
    stored = app.block_at(0)
    if stored is None:
        return init_genesis(kv, genesis.chain_id, genesis.allocations, genesis.params,
                            genesis.time, genesis.providers)
    fresh = MemoryKV()
    init_genesis(fresh, genesis.chain_id, genesis.allocations, genesis.params, genesis.time,
                 genesis.providers)
    if ChainApp(fresh, genesis.chain_id).block_at(0) != stored:
        raise ConfigError("this node's chain store was made from a different genesis; "
                          "use a fresh home directory for this network")
    return app.head()
