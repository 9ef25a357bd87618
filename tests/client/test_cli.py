"""The ``storage`` CLI: clear errors and exit codes, never a traceback.

The network test runs the in-process providers in a second thread (its own trio run) and the
CLI in this one, talking over real libp2p, as two processes would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from cli.storage_cmd import main
from storaged.client.put import put_file
from storaged.client.records import FileRecords
from storaged.data.manifest import Manifest, SegmentEntry
from tests.client.env import OPTIONS, storage_net


def _cid() -> str:
    """The CID of a small, valid manifest (held by nobody)."""
    return Manifest(1, 1, 1, 1, "none", None, (SegmentEntry(bytes(32), (bytes(32),)),)).cid()


def _run(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("cap", "message"), [
    ("http://x", "must start with 'storage://'"),
    ("storage://not-a-cid", "bad CID"),
    ("storage://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "bad CID"),
])
def test_malformed_capability_is_a_user_error(tmp_path: Path, cap: str, message: str) -> None:
    code, out = _run(tmp_path / "home", "get", cap)
    assert code == 2
    assert "error:" in out and message in out


def test_bad_key_encoding_in_capability(tmp_path: Path) -> None:
    cid = _cid()  # a valid manifest CID, with a key that is not 32 bytes
    code, out = _run(tmp_path / "home", "get", f"storage://{cid}#AAAA")
    assert code == 2 and "key is 3 bytes, expected 32" in out
    code, out = _run(tmp_path / "home", "status", f"storage://{cid}#!!")
    assert code == 2 and "not valid base64url" in out


def test_get_without_peers_says_so(tmp_path: Path) -> None:
    cid = _cid()
    code, out = _run(tmp_path / "home", "get", f"storage://{cid}", env={"STORAGE_PEERS": ""})
    assert code == 2 and "no peers to ask" in out
    code, out = _run(tmp_path / "home", "wallet", env={"STORAGE_PEERS": ""})
    assert code == 2 and "needs the chain" in out and "[node] bootstrap" in out
    code, out = _run(tmp_path / "home", "get", f"storage://{cid}",
                     env={"STORAGE_PEERS": "/ip4/127.0.0.1/tcp/1"})
    assert code == 2 and "bad peer multiaddr" in out


def test_ls_lists_recorded_files_as_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with FileRecords(home) as records:
        records.add(_cid(), "storage://x#y", "a.txt", 12, [1, 2], ["p1", "p2"],
                    time_ms=5)
    code, out = _run(home, "ls", "--json")
    assert code == 0
    files = json.loads(out)
    assert [(f["name"], f["size"], f["deals"]) for f in files] == [("a.txt", 12, [1, 2])]


@dataclass
class Background:
    """The provider network in a thread: put a file, then kill providers on request."""

    tmp: Path
    ready: threading.Event = field(default_factory=threading.Event)
    kill_now: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    info: dict[str, object] = field(default_factory=dict)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()
            self.killed.set()

    async def _main(self) -> None:
        src = self.tmp / "file.bin"
        src.write_bytes(os.urandom(200_000))
        async with storage_net(self.tmp) as net:
            with trio.fail_after(60):
                result = await put_file(net.light, src, OPTIONS, workdir=self.tmp)
            self.info.update(cap=result.capability, data=src.read_bytes(),
                             peers=[a for p in net.providers for a in p.node.addrs[:1]],
                             placed=[p.peer_id for p in result.placements])
            self.ready.set()
            await trio.to_thread.run_sync(self.kill_now.wait)
            for peer in [p.peer_id for p in result.placements[:3]]:
                await net.kill(peer)
            self.killed.set()
            await trio.to_thread.run_sync(self.stop.wait)


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Background]:
    bg = Background(tmp_path)
    thread = threading.Thread(target=bg.run, daemon=True)
    thread.start()
    try:
        yield bg
    finally:
        bg.kill_now.set()
        bg.stop.set()
        thread.join(30)


def test_cli_get_round_trip_wrong_key_and_fewer_than_k(tmp_path: Path,
                                                       background: Background) -> None:
    assert background.ready.wait(90) and background.error is None, background.error
    cap = str(background.info["cap"])
    peers = background.info["peers"]
    assert isinstance(peers, list)
    env = {"STORAGE_PEERS": ",".join(peers)}
    home = tmp_path / "cli-home"
    out = tmp_path / "got.bin"
    code, text = _run(home, "get", cap, "-o", str(out), "--json", env=env)
    assert code == 0, text
    assert json.loads(text)["size"] == 200_000
    assert out.read_bytes() == background.info["data"]

    wrong = cap.split("#")[0] + "#" + "A" * 43
    code, text = _run(home, "get", wrong, "-o", str(tmp_path / "wrong.bin"), env=env)
    assert code == 2 and "does not decrypt" in text, text
    assert not (tmp_path / "wrong.bin").exists()

    # The same from a separate OS process, as a user runs it.
    proc = _subprocess(home, env, "get", cap, "-o", str(tmp_path / "proc.bin"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "proc.bin").read_bytes() == background.info["data"]

    background.kill_now.set()
    assert background.killed.wait(60) and background.error is None, background.error
    code, text = _run(home, "get", cap, "-o", str(tmp_path / "late.bin"), env=env)
    assert code == 3, text
    assert "only 1 of the k=2 providers needed answered for segment 0" in " ".join(text.split())
    assert not (tmp_path / "late.bin").exists()
    proc = _subprocess(home, env, "get", cap, "-o", str(tmp_path / "late2.bin"))
    assert proc.returncode == 3
    assert "only 1 of the k=2 providers needed answered" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "late2.bin").exists()


def _subprocess(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", "cli.storage_cmd", "--home", str(home), *args],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, **env, "PYTHONPATH": str(root), "COLUMNS": "200"})
