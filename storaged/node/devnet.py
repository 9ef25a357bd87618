"""A local network of provider daemons on one machine: homes, genesis, processes.

:func:`setup` lays out ``D/p1..pN`` (key, ``config.toml`` with free ports and every other
provider as a bootstrap peer, API token) and ``D/client`` (key and config for ``storage``),
and writes one ``genesis.json`` (into every home) where the providers are the validators
(bonded, with collateral and an ask) and the client and providers are funded.  An existing
devnet directory is reused as it is (its chain and deals survive a restart).

:func:`start` launches one ``storaged start`` process per provider; :func:`wait_ready` polls
their APIs (deadline) until every one answers and the chain height grows; :func:`stop` sends
SIGTERM to each child by PID, waits, and SIGKILLs the ones that do not exit in time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from storaged import config as cfgmod
from storaged.api import client as api
from storaged.api.token import ensure_token
from storaged.chain.genesis import GENESIS_FILE, Genesis, write_genesis
from storaged.chain.providers import Provider
from storaged.config import ApiConfig, ClientConfig, Config, MarketConfig, NodeConfig
from storaged.errors import ResourceError, StoragedError, UserError
from storaged.net.identity import load_signing_key, peer_id_of

log = logging.getLogger(__name__)

CHAIN_ID = "storaged-devnet"
FUNDS = 10**15
BOND = 1_000
COLLATERAL = 1_000_000
# Provider collateral per GiB of deal size: large enough that even a 32 KiB deal carries
# collateral whose fault fee (fault_fee_bps of it) is not rounded down to nothing.
COLLATERAL_PER_GIB = 10**9
LOG_FILE = "storaged.log"
STDERR_FILE = "stderr.log"
MAX_PROVIDERS = 64


@dataclass
class Devnet:
    """A laid-out devnet: its directory, provider homes and client home."""

    root: Path
    providers: list[Path]
    client: Path
    procs: dict[Path, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client_env(self) -> dict[str, str]:
        """Environment for ``storage`` commands against this devnet."""
        return {**os.environ, "STORAGE_HOME": str(self.client)}


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _homes(root: Path, providers: int) -> tuple[list[Path], Path]:
    return [root / f"p{i + 1}" for i in range(providers)], root / "client"


def setup(root: Path, providers: int = 6, *, base_port: int | None = None,
          market: MarketConfig | None = None, client: ClientConfig | None = None,
          chain_id: str = CHAIN_ID) -> Devnet:
    """Create (or reuse) the devnet in ``root``.

    ``base_port`` P gives provider i (0-based) libp2p port P+2i and API port P+2i+1; without
    it the OS picks free ports.  ``market``/``client`` override the devnet defaults.

    Raises:
        UserError: ``providers`` out of range, or ``root`` holds a devnet of another size.
        ResourceError: the directory cannot be written.
    """
    if not 1 <= providers <= MAX_PROVIDERS:
        raise UserError(f"--providers must be 1..{MAX_PROVIDERS}, got {providers}")
    homes, client_home = _homes(root, providers)
    if (root / GENESIS_FILE).exists():
        existing = sorted(p.name for p in root.glob("p*") if (p / GENESIS_FILE).exists())
        if len(existing) != providers:
            raise UserError(f"{root} holds a devnet of {len(existing)} providers, not "
                            f"{providers}; remove it or use another --dir")
        return Devnet(root, homes, client_home)
    try:
        root.mkdir(parents=True, exist_ok=True)
        keys = [bytes(load_signing_key(h).verify_key) for h in homes]
        client_key = bytes(load_signing_key(client_home).verify_key)
        if base_port is None:
            ports = free_ports(2 * providers)
        else:
            if not 1024 <= base_port <= 65535 - 2 * providers:
                raise UserError(f"--base-port {base_port} leaves no room for "
                                f"{2 * providers} ports")
            ports = list(range(base_port, base_port + 2 * providers))
        p2p = [f"/ip4/127.0.0.1/tcp/{ports[2 * i]}/p2p/{peer_id_of(k)}"
               for i, k in enumerate(keys)]
        mk = market or MarketConfig(price_per_gib_epoch=1, capacity_bytes=4 << 30,
                                    min_duration=10, max_deal_bytes=1 << 30,
                                    min_start_delay=15, publish_timeout=25,
                                    collateral=COLLATERAL_PER_GIB)
        for i, home in enumerate(homes):
            listen = f"/ip4/127.0.0.1/tcp/{ports[2 * i]}"
            cfg = Config(node=NodeConfig(listen=(listen,), chain_id=chain_id,
                                         bootstrap=tuple(a for j, a in enumerate(p2p) if j != i)),
                         api=ApiConfig(host="127.0.0.1", port=ports[2 * i + 1]), market=mk)
            if not (home / cfgmod.CONFIG_FILE).exists():
                cfgmod.write(home, cfg)
            ensure_token(home)
        if not (client_home / cfgmod.CONFIG_FILE).exists():
            cfgmod.write(client_home, Config(node=NodeConfig(bootstrap=tuple(p2p),
                                                             chain_id=chain_id),
                                             client=client or ClientConfig(
                                                 k=min(4, providers), n=providers)))
        genesis = Genesis(
            chain_id, int(time.time()),
            allocations={k: FUNDS for k in [*keys, client_key]},
            providers={k: Provider(peer_id=peer_id_of(k), addrs=[p2p[i]],
                                   price=mk.price_per_gib_epoch, capacity=mk.capacity_bytes,
                                   collateral=COLLATERAL, bond=BOND)
                       for i, k in enumerate(keys)})
        for home in [*homes, client_home, root]:  # root's copy marks the devnet as set up
            write_genesis(home / GENESIS_FILE, genesis)
    except OSError as exc:
        raise ResourceError(f"cannot set up the devnet in {root}: {exc}") from exc
    return Devnet(root, homes, client_home)


def start_provider(net: Devnet, home: Path) -> subprocess.Popen[bytes]:
    """Launch ``storaged start`` for ``home`` (stderr to ``home/stderr.log``).

    Raises:
        ResourceError: the process cannot be started.
    """
    try:
        with open(home / STDERR_FILE, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.storaged_cmd", "--home", str(home), "start"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    except OSError as exc:
        raise ResourceError(f"cannot start storaged for {home}: {exc}") from exc
    net.procs[home] = proc
    return proc


def start(net: Devnet) -> None:
    """Start every provider that is not running (see :func:`start_provider`)."""
    for home in net.providers:
        proc = net.procs.get(home)
        if proc is None or proc.poll() is not None:
            start_provider(net, home)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def status_of(home: Path) -> dict[str, object] | None:
    """The provider's ``/v1/status``, or None while it does not answer."""
    try:
        out = api.request(home, "GET", "/v1/status", timeout=5)
    except StoragedError:
        return None
    return out if isinstance(out, dict) else None


def height_of(home: Path) -> int | None:
    """The provider's committed chain height, or None while its API does not answer."""
    st = status_of(home)
    h = None if st is None else st.get("height")
    return h if isinstance(h, int) else None


def wait_ready(net: Devnet, timeout: float = 120.0, homes: list[Path] | None = None,
               blocks: int = 2) -> int:
    """Wait until every API in ``homes`` (default: all) answers and each node's height grew
    by ``blocks`` since it first answered; returns the lowest height seen.

    Raises:
        ResourceError: a provider process exited, or the deadline passed (with log tails).
    """
    deadline = time.monotonic() + timeout
    wanted = homes or net.providers
    first: dict[Path, int] = {}
    last: dict[Path, int] = {}
    while True:
        for home in wanted:
            proc = net.procs.get(home)
            if proc is not None and proc.poll() is not None:
                raise ResourceError(f"storaged for {home} exited with {proc.returncode}:\n"
                                    f"{_tail(home / STDERR_FILE)}")
            h = height_of(home)
            if h is not None:
                first.setdefault(home, h)
                last[home] = h
        if all(home in last and last[home] >= first[home] + blocks for home in wanted):
            return min(last[h] for h in wanted)
        if time.monotonic() > deadline:
            slow = [h.name for h in wanted if h not in last or last[h] < first[h] + blocks]
            detail = "\n".join(f"--- {net.root / n}: {_tail(net.root / n / STDERR_FILE, 5)}"
                               for n in slow)
            raise ResourceError(f"devnet not ready after {timeout:.0f} s: {', '.join(slow)} "
                                f"not committing blocks\n{detail}")
        time.sleep(0.25)  # polling interval of the API; the deadline above bounds the wait


def kill(net: Devnet, home: Path, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
    """Send ``sig`` to the provider of ``home`` (by PID) and wait for it; returns its exit code.

    Raises:
        UserError: no process of this devnet runs for ``home``.
        ResourceError: it did not exit within ``timeout``.
    """
    proc = net.procs.get(home)
    if proc is None:
        raise UserError(f"no provider process for {home}")
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        raise ResourceError(f"storaged for {home} did not exit {timeout:.0f} s after "
                            f"signal {sig}") from exc


def stop(net: Devnet, timeout: float = 20.0) -> None:
    """SIGTERM every child by PID, wait up to ``timeout``, SIGKILL the rest; never raises."""
    running = [p for p in net.procs.values() if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait()


def ready_text(net: Devnet, height: int) -> str:
    """The ready line and the commands to use the devnet."""
    env = f"STORAGE_HOME={net.client}"
    return (f"devnet ready: {len(net.providers)} providers at height {height} in {net.root} "
            f"(Ctrl-C stops them)\n"
            f"  {env} storage put FILE\n"
            f"  {env} storage get CAP -o OUT\n")


