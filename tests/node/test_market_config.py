"""The [market] and [storage] keys the provider node adds: defaults, overrides, ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from storaged import config
from storaged.errors import ConfigError


def test_market_and_storage_defaults(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, env={})
    assert cfg.market.max_deal_bytes == 1 << 30
    assert cfg.market.min_start_delay == 30
    assert cfg.market.publish_timeout == 20
    assert cfg.storage.min_free_bytes == 64 << 20


def test_market_keys_from_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[market]\nmax_deal_bytes = 8192\nmin_start_delay = 7\n[storage]\nmin_free_bytes = 0\n")
    cfg = config.load(tmp_path, env={"STORAGED_MARKET_PUBLISH_TIMEOUT": "25"})
    assert (cfg.market.max_deal_bytes, cfg.market.min_start_delay) == (8192, 7)
    assert cfg.market.publish_timeout == 25
    assert cfg.storage.min_free_bytes == 0
    again = tmp_path / "again"
    config.write(again, cfg)
    assert config.load(again, env={}) == cfg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[market]\nmax_deal_bytes = 100\n", r"\[market\] max_deal_bytes: 100 is out of range"),
        ("[market]\nmin_start_delay = 0\n", r"\[market\] min_start_delay: 0 is out of range"),
        ("[market]\npublish_timeout = 26\n", r"\[market\] publish_timeout: 26 is out of range"),
        ("[storage]\nmin_free_bytes = -1\n", r"\[storage\] min_free_bytes: -1 is out of range"),
        ("[market]\nmin_start_dely = 3\n", "did you mean 'min_start_delay'"),
    ],
)
def test_bad_market_values(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        config.load(tmp_path, env={})
