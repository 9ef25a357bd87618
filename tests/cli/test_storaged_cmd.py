"""The ``storaged`` command as a user runs it (real processes for start/devnet)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from cli.storaged_cmd import main
from storaged import config
from storaged.api.token import ADDR_FILE, TOKEN_FILE
from storaged.chain.genesis import GENESIS_FILE, load_genesis
from storaged.net.identity import load_signing_key, peer_id_of
from storaged.node import devnet as dn

ROOT = Path(__file__).resolve().parents[2]


def test_init_creates_home_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "h"
    first = CliRunner().invoke(main, ["--home", str(home), "init"])
    assert first.exit_code == 0, first.output
    pk = bytes(load_signing_key(home).verify_key)
    assert peer_id_of(pk) in first.output and pk.hex() in first.output
    assert (home / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    assert config.load(home, env={}) == config.Config()
    again = CliRunner().invoke(main, ["--home", str(home), "init"])
    assert again.exit_code == 0 and peer_id_of(pk) in again.output  # same key, nothing lost


def test_read_commands_without_daemon(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert CliRunner().invoke(main, ["--home", str(home), "init"]).exit_code == 0
    for args in (["status"], ["deals", "--json"], ["sectors"], ["proving"], ["wallet"],
                 ["wallet", "withdraw", "5"], ["ask", "set", "--price", "3"]):
        res = CliRunner().invoke(main, ["--home", str(home), *args])
        assert res.exit_code == 5, (args, res.output)
        assert f"storaged is not running at {home}" in res.output
        assert "storaged start" in res.output and "Traceback" not in res.output
    # A stale api.addr (the daemon was killed) is no different.
    (home / ADDR_FILE).write_text("127.0.0.1:1\n")
    res = CliRunner().invoke(main, ["--home", str(home), "status"])
    assert res.exit_code == 5 and "is not running" in res.output


def test_bad_usage(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["--home", str(tmp_path), "ask", "set"])
    assert res.exit_code == 2 and "--price and/or --collateral" in res.output
    res = CliRunner().invoke(main, ["--home", str(tmp_path), "wallet", "withdraw", "0"])
    assert res.exit_code == 2
    res = subprocess.run([sys.executable, "-m", "cli.storaged_cmd", "--home",
                          str(tmp_path / "none"), "start"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 2 and "not initialised" in res.stderr
    assert "Traceback" not in res.stderr
    assert CliRunner().invoke(main, ["--home", str(tmp_path / "g"), "init"]).exit_code == 0
    res = subprocess.run([sys.executable, "-m", "cli.storaged_cmd", "--home",
                          str(tmp_path / "g"), "start"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 2 and "genesis" in res.stderr and "Traceback" not in res.stderr


def test_devnet_layout(tmp_path: Path) -> None:
    net = dn.setup(tmp_path / "d", 3, base_port=41000)
    g = load_genesis(net.root / GENESIS_FILE)
    keys = [bytes(load_signing_key(h).verify_key) for h in net.providers]
    client_key = bytes(load_signing_key(net.client).verify_key)
    assert set(g.providers) == set(keys)
    assert set(g.allocations) == {*keys, client_key}
    for i, home in enumerate(net.providers):
        assert load_genesis(home / GENESIS_FILE) == g
        cfg = config.load(home, env={})
        assert cfg.node.listen == (f"/ip4/127.0.0.1/tcp/{41000 + 2 * i}",)
        assert cfg.api.port == 41001 + 2 * i
        others = {f"/p2p/{peer_id_of(k)}" for j, k in enumerate(keys) if j != i}
        assert {a[a.index("/p2p/"):] for a in cfg.node.bootstrap} == others
        assert (home / TOKEN_FILE).exists()
    client = config.load(net.client, env={})
    assert len(client.node.bootstrap) == 3 and client.client.n == 3
    assert load_genesis(net.client / GENESIS_FILE) == g
    # Reused as it is on a second run; another size is refused.
    assert dn.setup(tmp_path / "d", 3).providers == net.providers
    assert load_genesis(net.root / GENESIS_FILE) == g
    res = CliRunner().invoke(main, ["devnet", "--providers", "4", "--dir", str(net.root)])
    assert res.exit_code == 2 and "holds a devnet of 3 providers" in res.output


def test_devnet_command_runs_and_stops_cleanly(tmp_path: Path) -> None:
    """`storaged devnet --providers 1`: one ready line, the read commands work against the
    running provider, SIGTERM stops the provider process (by PID) and the devnet exits 0."""
    root = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "cli.storaged_cmd", "devnet", "--providers",
                             "1", "--dir", str(root), "--timeout", "90"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready (the devnet's own 90 s deadline)
        assert line.startswith("devnet ready: 1 providers at height"), (line, proc.poll())
        assert f"STORAGE_HOME={root / 'client'} storage put FILE" in proc.stdout.readline()
        home = root / "p1"
        res = subprocess.run([sys.executable, "-m", "cli.storaged_cmd", "--home", str(home),
                              "status", "--json"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        assert status["chain_id"] == dn.CHAIN_ID and status["height"] >= 2
        assert status["parts"]["api"] == "running"
        res = subprocess.run([sys.executable, "-m", "cli.storaged_cmd", "--home", str(home),
                              "wallet", "--json"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=False)
        assert json.loads(res.stdout)["balance"] > 0
        child = int(home.joinpath("node.lock").read_text().strip() or 0) \
            if home.joinpath("node.lock").read_text().strip().isdigit() else None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not (home / ADDR_FILE).exists()  # the provider shut down cleanly
        if child is not None:
            deadline = time.monotonic() + 5
            while _alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)  # the pid may linger as a zombie for an instant
            assert not _alive(child)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
