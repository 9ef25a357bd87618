"""Node home directory and ``config.toml``: documented keys, defaults, env overrides.

The home directory is ``~/.storaged`` unless ``STORAGED_HOME`` or an explicit path says otherwise.
``config.toml`` holds the sections below; every key is optional and defaults as documented in
:data:`SECTIONS`.  ``STORAGED_<SECTION>_<KEY>`` environment variables override the file (lists
are comma-separated, booleans are true/false/1/0/yes/no).  An unknown section or key, a wrong
type or an out-of-range value is a :class:`~storaged.errors.ConfigError` that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from storaged.errors import ConfigError

CONFIG_FILE = "config.toml"
PROFILES = ("devnet", "small", "default")


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """[node]: listen multiaddrs, bootstrap peer multiaddrs, chain id."""

    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()
    chain_id: str = "storaged-devnet"


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """[api]: the local HTTP API (loopback only by default)."""

    host: str = "127.0.0.1"
    port: int = 7070


@dataclasses.dataclass(frozen=True)
class MarketConfig:
    """[market]: the provider's ask (price in base units per GiB per epoch), capacity, terms.

    ``collateral`` is the provider collateral per GiB of deal size that every deal must carry
    (rounded up; the provider keeps that much free escrow, topped up from its balance at
    start); ``max_deal_bytes`` is the largest deal (padded piece size) accepted;
    ``min_start_delay`` is how many blocks ahead of the head a deal must start, so the piece
    can arrive and be sealed before the deal's activation deadline; ``publish_timeout`` is
    how many seconds a proposal waits for its ``publish_deal`` to commit (at most 25, under the
    deal protocol's 30 s answer limit; a later commit is still recorded, and the client's retry
    of the same proposal gets the deal id).
    """

    price_per_gib_epoch: int = 1
    capacity_bytes: int = 1 << 30
    min_duration: int = 100
    max_duration: int = 1_000_000
    collateral: int = 0
    max_deal_bytes: int = 1 << 30
    min_start_delay: int = 30
    publish_timeout: int = 20


@dataclasses.dataclass(frozen=True)
class ProofsConfig:
    """[proofs]: the proof profile: devnet, small or default; ``seal_workers`` labellings
    (seal, PoRep proof, re-seal) at once, each busy on one core (0: one per core of this
    machine); ``post_margin`` blocks before
    a sector's PoSt window opens at which the scrubber re-checks its replica, so a bad one is
    declared faulty before the window instead of being caught missing the proof."""

    profile: str = "devnet"
    seal_workers: int = 0
    post_margin: int = 5


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """[storage]: keep an unsealed copy of pieces (required for now: retrieval serves it, and
    the provider daemon refuses false); seconds between share-store scrubs;
    ``min_free_bytes`` of disk the piece store always leaves free (a push that would eat
    into it is refused before a byte is written)."""

    keep_unsealed: bool = True
    scrub_interval: int = 86_400
    min_free_bytes: int = 64 << 20


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """[client]: erasure coding k of n and the segment size in bytes; deal terms of ``storage
    put``: ``duration`` in epochs (blocks), ``price_max`` the highest ask accepted (base units
    per GiB per epoch), ``start_margin`` blocks added to a provider's ``min_start_delay`` so the
    proposal still starts late enough when it reaches the provider; ``candidates_extra``
    providers asked beyond n, to replace refusals and dead ones."""

    k: int = 4
    n: int = 6
    segment_size: int = 4 << 20
    duration: int = 1000
    price_max: int = 1 << 40
    start_margin: int = 10
    candidates_extra: int = 4


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole node configuration, one frozen dataclass per section."""

    node: NodeConfig = NodeConfig()
    api: ApiConfig = ApiConfig()
    market: MarketConfig = MarketConfig()
    proofs: ProofsConfig = ProofsConfig()
    storage: StorageConfig = StorageConfig()
    client: ClientConfig = ClientConfig()


SECTIONS: dict[str, type[Any]] = {
    "node": NodeConfig,
    "api": ApiConfig,
    "market": MarketConfig,
    "proofs": ProofsConfig,
    "storage": StorageConfig,
    "client": ClientConfig,
}

# Inclusive ranges for integer keys; a value outside is a ConfigError.
_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("api", "port"): (0, 65535),
    ("market", "price_per_gib_epoch"): (0, 2**63 - 1),
    ("market", "capacity_bytes"): (0, 2**63 - 1),
    ("market", "min_duration"): (1, 2**63 - 1),
    ("market", "max_duration"): (1, 2**63 - 1),
    ("market", "collateral"): (0, 2**63 - 1),
    ("market", "max_deal_bytes"): (4096, 2**63 - 1),
    ("market", "min_start_delay"): (1, 2**32),
    ("market", "publish_timeout"): (1, 25),  # below the deal protocol's 30 s handler limit
    ("proofs", "seal_workers"): (0, 256),
    ("proofs", "post_margin"): (0, 2**32),
    ("storage", "min_free_bytes"): (0, 2**63 - 1),
    ("storage", "scrub_interval"): (1, 2**63 - 1),
    ("client", "k"): (1, 256),
    ("client", "n"): (1, 256),
    ("client", "segment_size"): (1, 1 << 30),
    ("client", "duration"): (1, 2**63 - 1),
    ("client", "price_max"): (0, 2**63 - 1),
    ("client", "start_margin"): (0, 2**32),
    ("client", "candidates_extra"): (0, 256),
}


def home_dir(explicit: Path | str | None = None) -> Path:
    """The node home: ``explicit`` if given, else ``$STORAGED_HOME``, else ``~/.storaged``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("STORAGED_HOME")
    return Path(env) if env else Path.home() / ".storaged"


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"


def _field_type(cls: type[Any], key: str) -> str:
    return str({f.name: f.type for f in dataclasses.fields(cls)}[key])


def _check(section: str, key: str, value: Any, kind: str) -> Any:
    """Return ``value`` converted to the field's type; raise ConfigError if it is not one."""
    where = f"[{section}] {key}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected a boolean, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        lo, hi = _RANGES.get((section, key), (-(2**63), 2**63 - 1))
        if not lo <= value <= hi:
            raise ConfigError(f"{where}: {value} is out of range [{lo}, {hi}]")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _kind(type_text: str) -> str:
    return {"bool": "bool", "int": "int", "str": "str"}.get(type_text, "list")


def _parse_env(section: str, key: str, text: str, kind: str) -> Any:
    """Parse an environment override into the TOML-level value for ``kind``."""
    var = f"STORAGED_{section.upper()}_{key.upper()}"
    if kind == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}: expected a boolean (true/false), got {text!r}")
    if kind == "int":
        try:
            return int(text.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"{var}: expected an integer, got {text!r}") from None
    if kind == "str":
        return text
    return [part.strip() for part in text.split(",") if part.strip()]


def from_mapping(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML ``data`` plus ``STORAGED_*`` overrides in ``env``.

    Raises:
        ConfigError: unknown section or key, wrong type, out-of-range value, or k > n.
    """
    sections: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section [{name}]" + _suggest(name, list(SECTIONS)))
        if not isinstance(raw, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {raw!r}")
    for name, cls in SECTIONS.items():
        raw = dict(data.get(name, {}))
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key not in fields:
                raise ConfigError(f"unknown config key [{name}] {key}" + _suggest(key, fields))
        for key in fields:
            var = f"STORAGED_{name.upper()}_{key.upper()}"
            if env is not None and var in env:
                raw[key] = _parse_env(name, key, env[var], _kind(_field_type(cls, key)))
        values = {k: _check(name, k, v, _kind(_field_type(cls, k))) for k, v in raw.items()}
        sections[name] = cls(**values)
    cfg = Config(**sections)
    if cfg.client.k > cfg.client.n:
        raise ConfigError(f"[client] k ({cfg.client.k}) must not exceed n ({cfg.client.n})")
    if cfg.market.min_duration > cfg.market.max_duration:
        raise ConfigError("[market] min_duration must not exceed max_duration")
    if cfg.proofs.profile not in PROFILES:
        raise ConfigError(
            f"[proofs] profile: expected one of {', '.join(PROFILES)}, got {cfg.proofs.profile!r}"
        )
    return cfg


def load(home: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load ``config.toml`` from the home dir (defaults if absent) with env overrides.

    ``env`` defaults to ``os.environ``.

    Raises:
        ConfigError: the file is not valid TOML or a key is unknown, mistyped or out of range.
        ResourceError: never; an unreadable file is reported as ConfigError naming the path.
    """
    path = home_dir(home) / CONFIG_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return from_mapping(data, os.environ if env is None else env)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    return "[" + ", ".join(_toml_string(v) for v in value) + "]"


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dumps(cfg: Config) -> str:
    """Render ``cfg`` as TOML text that :func:`load` reads back to an equal Config."""
    lines: list[str] = []
    for name in SECTIONS:
        section = getattr(cfg, name)
        lines.append(f"[{name}]")
        for f in dataclasses.fields(section):
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def write(home: Path | str, cfg: Config | None = None) -> Path:
    """Write ``config.toml`` (defaults if ``cfg`` is None) into ``home``; return its path.

    Raises:
        ConfigError: a config file already exists there (never overwritten).
    """
    root = Path(home)
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_FILE
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it")
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(dumps(cfg or Config()), encoding="utf-8")
    os.replace(tmp, path)
    return path
