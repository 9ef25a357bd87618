"""Config: home dir, TOML load/write round trip, env overrides, and specific errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storaged import config
from storaged.errors import ConfigError


def test_home_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGED_HOME", raising=False)
    assert config.home_dir() == Path.home() / ".storaged"
    monkeypatch.setenv("STORAGED_HOME", str(tmp_path / "env"))
    assert config.home_dir() == tmp_path / "env"
    assert config.home_dir(tmp_path / "x") == tmp_path / "x"


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert config.load(tmp_path, env={}) == config.Config()


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    cfg = config.Config(
        node=config.NodeConfig(
            listen=("/ip4/0.0.0.0/tcp/4001",),
            bootstrap=('/dns/"q"\\x', "/ip4/1.2.3.4"),
            chain_id="c\n1",
        ),
        storage=config.StorageConfig(keep_unsealed=False, scrub_interval=60),
    )
    path = config.write(tmp_path, cfg)
    assert path == tmp_path / "config.toml"
    assert config.load(tmp_path, env={}) == cfg
    with pytest.raises(ConfigError, match="already exists"):
        config.write(tmp_path)


@given(
    chain_id=st.text(max_size=20),
    peers=st.lists(st.text(max_size=10), max_size=3),
    port=st.integers(0, 65535),
    keep=st.booleans(),
)
def test_dumps_is_valid_toml_for_any_values(
    chain_id: str, peers: list[str], port: int, keep: bool
) -> None:
    import tomllib

    cfg = config.Config(
        node=config.NodeConfig(bootstrap=tuple(peers), chain_id=chain_id),
        api=config.ApiConfig(port=port),
        storage=config.StorageConfig(keep_unsealed=keep),
    )
    assert config.from_mapping(tomllib.loads(config.dumps(cfg))) == cfg


def test_env_overrides_are_typed(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[api]\nport = 9000\n")
    env = {
        "STORAGED_API_PORT": "9100",
        "STORAGED_STORAGE_KEEP_UNSEALED": "no",
        "STORAGED_NODE_BOOTSTRAP": "/ip4/1.1.1.1/tcp/1, /ip4/2.2.2.2/tcp/2",
        "STORAGED_CLIENT_SEGMENT_SIZE": "1_048_576",
        "STORAGED_PROOFS_PROFILE": "small",
    }
    cfg = config.load(tmp_path, env=env)
    assert cfg.api.port == 9100
    assert cfg.storage.keep_unsealed is False
    assert cfg.node.bootstrap == ("/ip4/1.1.1.1/tcp/1", "/ip4/2.2.2.2/tcp/2")
    assert cfg.client.segment_size == 1 << 20
    assert cfg.proofs.profile == "small"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STORAGED_API_PORT": "eighty"}, "STORAGED_API_PORT: expected an integer"),
        ({"STORAGED_STORAGE_KEEP_UNSEALED": "maybe"}, "expected a boolean"),
        ({"STORAGED_API_PORT": "70000"}, r"\[api\] port: 70000 is out of range"),
    ],
)
def test_bad_env_values(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        config.load(tmp_path, env=env)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[nod]\n", r"unknown config section \[nod\] \(did you mean 'node'\?\)"),
        ("[api]\nprot = 1\n", r"unknown config key \[api\] prot \(did you mean 'port'\?\)"),
        ('[api]\nport = "80"\n', r"\[api\] port: expected an integer"),
        ("[api]\nport = true\n", r"\[api\] port: expected an integer"),
        ("[storage]\nkeep_unsealed = 1\n", r"\[storage\] keep_unsealed: expected a boolean"),
        ('[node]\nbootstrap = "x"\n', r"\[node\] bootstrap: expected a list of strings"),
        ("[client]\nk = 0\n", r"\[client\] k: 0 is out of range"),
        ("[client]\nk = 7\nn = 6\n", r"k \(7\) must not exceed n \(6\)"),
        ('[proofs]\nprofile = "huge"\n', "expected one of devnet, small, default"),
        ("api = 3\n", r"\[api\] must be a table"),
        ("[api\n", "invalid TOML"),
    ],
)
def test_bad_file_values(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        config.load(tmp_path, env={})
