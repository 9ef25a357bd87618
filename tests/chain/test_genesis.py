"""Genesis file: round trip, idempotent apply, a different genesis refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storaged.chain.app import ChainApp
from storaged.chain.genesis import GENESIS_FILE, apply_genesis, load_genesis, write_genesis
from storaged.errors import ConfigError
from storaged.store.kv import LevelKV
from tests.chain.consensus.net_fixture import genesis
from tests.chain.helpers import pk


def test_write_load_round_trip(tmp_path: Path) -> None:
    g = genesis(2)
    write_genesis(tmp_path / GENESIS_FILE, g)
    assert load_genesis(tmp_path / GENESIS_FILE) == g


def test_apply_twice_is_idempotent_and_other_genesis_refused(tmp_path: Path) -> None:
    g = genesis(2)
    kv = LevelKV(tmp_path / "db", sync=False)
    try:
        first = apply_genesis(kv, g)
        again = apply_genesis(kv, g)
        assert first == again and first.height == 0
        assert ChainApp(kv, g.chain_id).account(pk(0)).balance == 1_000
        other = genesis(3)  # one more provider: another network
        with pytest.raises(ConfigError, match="different genesis"):
            apply_genesis(kv, other)
        assert ChainApp(kv, g.chain_id).head() == first  # nothing was changed
    finally:
        kv.close()


@pytest.mark.parametrize(("edit", "named"), [
    (lambda d: d.update(chain_idd="x"), "chain_idd"),
    (lambda d: d["params"].update(min_fe=1), "min_fe"),
    (lambda d: d["allocations"].update({"zz": 1}), "allocations"),
    (lambda d: d.update(time=-1), "time"),
])
def test_bad_field_is_a_config_error_naming_it(tmp_path: Path, edit, named) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / GENESIS_FILE
    write_genesis(path, genesis(1))
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=named):
        load_genesis(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_genesis(tmp_path / GENESIS_FILE)
