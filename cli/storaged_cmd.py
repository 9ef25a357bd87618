"""``storaged``: run and inspect a storage provider, or a local devnet of them.

Home: ``--home``, else ``$STORAGED_HOME``, else ``~/.storaged``.  ``init`` creates it (node key,
``config.toml``, API token); ``start`` runs the provider until SIGTERM/SIGINT; the read
commands (``status deals sectors proving wallet``) and ``ask set`` / ``wallet withdraw`` call
the running daemon's local API with the token in ``home/api.token`` (``--json`` prints the raw
answer).  ``devnet`` sets up and runs N providers on this machine.  Errors print one line and
exit with the code of their class in :mod:`storaged.errors`; never a traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
import trio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storaged import config as cfgmod
from storaged.api import client as api
from storaged.api.token import ADDR_FILE, ensure_token
from storaged.errors import ConfigError, ResourceError, StoragedError
from storaged.net.identity import load_signing_key, peer_id_of
from storaged.node import devnet as devnet_mod

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
LOG_FILE = "storaged.log"


def _fail(exc: StoragedError) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    sys.exit(exc.exit_code)


@click.group()
@click.option("--home", type=click.Path(path_type=Path), default=None,
              help="provider home (default $STORAGED_HOME or ~/.storaged)")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.pass_context
def main(ctx: click.Context, home: Path | None, verbose: bool) -> None:
    """Run and inspect a storaged storage provider."""
    ctx.obj = cfgmod.home_dir(home)
    ctx.meta["verbose"] = verbose


# -- init / start ----------------------------------------------------------------------------


@main.command()
@click.pass_obj
def init(home: Path) -> None:
    """Create the home: node key, config.toml (defaults), API token."""
    try:
        key = load_signing_key(home)
        if not (home / cfgmod.CONFIG_FILE).exists():
            cfgmod.write(home)
        cfgmod.load(home)  # an existing config must still parse
        ensure_token(home)
    except StoragedError as exc:
        _fail(exc)
    pk = bytes(key.verify_key)
    out.print(f"home           {home}")
    out.print(f"peer id        {peer_id_of(pk)}")
    out.print(f"chain address  {pk.hex()}")
    out.print(f"next: put the network's genesis.json into {home}, then `storaged start`")


def _setup_logging(home: Path, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    to_file = logging.FileHandler(home / LOG_FILE)
    to_file.setFormatter(fmt)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(fmt)
    to_stderr.setLevel(logging.INFO if verbose else logging.WARNING)
    root.addHandler(to_file)
    root.addHandler(to_stderr)


async def _run_daemon(home: Path, config: cfgmod.Config) -> None:
    from storaged.node.daemon import Daemon  # heavy import, only for `start`

    daemon = Daemon(home, config)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            err.print(f"storaged running: home {home}, API {daemon.api_addr}")
            async for signum in signals:
                logging.getLogger("storaged").info("signal %d: shutting down", signum)
                nursery.cancel_scope.cancel()
                break


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


@main.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Run the provider until SIGTERM or Ctrl-C, then shut down cleanly."""
    home: Path = ctx.obj
    try:
        if not (home / cfgmod.CONFIG_FILE).exists():
            raise ConfigError(f"{home} is not initialised (run `storaged init`)")
        config = cfgmod.load(home)
    except StoragedError as exc:
        _fail(exc)
    _setup_logging(home, bool(ctx.meta.get("verbose")))
    (home / ADDR_FILE).unlink(missing_ok=True)  # a stale address must not look alive
    try:
        trio.run(_run_daemon, home, config, strict_exception_groups=True)
    except StoragedError as exc:
        _fail(exc)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        first = next((e for e in leaves if isinstance(e, StoragedError)), None)
        if first is not None:
            _fail(first)
        raise
    finally:
        (home / ADDR_FILE).unlink(missing_ok=True)
    err.print("storaged stopped")


# -- read commands over the local API ------------------------------------------------------------


def _call(home: Path, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        return api.request(home, method, path, body)
    except StoragedError as exc:
        _fail(exc)


_HEX = set("0123456789abcdef")


def _cell(value: Any, short: bool = False) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    text = "" if value is None else str(value)
    if short and len(text) > 16 and set(text) <= _HEX:
        return text[:12] + "…"  # hashes and keys: a prefix is enough to tell rows apart
    return text


def _print_mapping(title: str, obj: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in obj.items():
        table.add_row(escape(key), escape(_cell(value)))
    out.print(table)


def _print_rows(title: str, rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> None:
    if not rows:
        out.print(f"no {title}")
        return
    columns: list[str] = [c for c in first if any(c in row for row in rows)]
    if not columns:
        for row in rows:
            columns += [k for k in row if k not in columns]
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(escape(_cell(row.get(c), short=True)) for c in columns))
    out.print(table)


def _show(title: str, answer: Any, as_json: bool, rows_key: str | None = None,
          columns: tuple[str, ...] = ()) -> None:
    if as_json:
        click.echo(json.dumps(answer, sort_keys=True))
        return
    if rows_key is not None and isinstance(answer, dict) and isinstance(answer.get(rows_key),
                                                                        list):
        _print_rows(title, answer[rows_key], columns)
        rest = {k: v for k, v in answer.items() if k != rows_key}
        if rest:
            _print_mapping(f"{title} (summary)", rest)
    elif isinstance(answer, dict):
        _print_mapping(title, answer)
    else:
        out.print(escape(_cell(answer)))


_json_option = click.option("--json", "as_json", is_flag=True, help="print the raw JSON answer")


@main.command()
@_json_option
@click.pass_obj
def status(home: Path, as_json: bool) -> None:
    """Identity, chain height, peers, capacity and the state of every part."""
    _show("status", _call(home, "GET", "/v1/status"), as_json)


@main.command()
@_json_option
@click.pass_obj
def deals(home: Path, as_json: bool) -> None:
    """This provider's deals (local and on-chain state)."""
    _show("deals", _call(home, "GET", "/v1/deals"), as_json, "deals",
          ("deal", "state", "chain_state", "size", "received", "start", "end", "price",
           "client", "reason"))


@main.command()
@_json_option
@click.pass_obj
def sectors(home: Path, as_json: bool) -> None:
    """Sectors and their sealing state."""
    _show("sectors", _call(home, "GET", "/v1/sectors"), as_json, "sectors",
          ("sector", "deal", "state", "size", "precommit_height", "active_height", "error",
           "events"))


@main.command()
@_json_option
@click.pass_obj
def proving(home: Path, as_json: bool) -> None:
    """The proving schedule and recent PoSt results."""
    _show("proving", _call(home, "GET", "/v1/proving"), as_json, "sectors",
          ("sector", "deal", "state", "last_post", "next_window", "faults"))


@main.group(invoke_without_command=True)
@_json_option
@click.pass_context
def wallet(ctx: click.Context, as_json: bool) -> None:
    """Balance, free and locked escrow, nonce, listing."""
    if ctx.invoked_subcommand is None:
        _show("wallet", _call(ctx.obj, "GET", "/v1/wallet"), as_json)


@wallet.command()
@click.argument("amount", type=click.IntRange(min=1))
@_json_option
@click.pass_obj
def withdraw(home: Path, amount: int, as_json: bool) -> None:
    """Move AMOUNT of free escrow back to the balance."""
    _show("withdraw", _call(home, "POST", "/v1/withdraw", {"amount": amount}), as_json)


@main.group()
def ask() -> None:
    """The provider's ask for new deals."""


@ask.command("set")
@click.option("--price", type=click.IntRange(min=0), default=None,
              help="base units per GiB per epoch")
@click.option("--collateral", type=click.IntRange(min=0), default=None,
              help="provider collateral per GiB of deal size")
@_json_option
@click.pass_obj
def ask_set(home: Path, price: int | None, collateral: int | None, as_json: bool) -> None:
    """Change the ask (and the on-chain listing if the price changed)."""
    if price is None and collateral is None:
        raise click.UsageError("give --price and/or --collateral")
    body = {k: v for k, v in (("price", price), ("collateral", collateral)) if v is not None}
    _show("ask", _call(home, "POST", "/v1/ask", body), as_json)


# -- devnet ----------------------------------------------------------------------------------------


@main.command()
@click.option("--providers", type=click.IntRange(1, devnet_mod.MAX_PROVIDERS), default=6,
              show_default=True)
@click.option("--dir", "root", type=click.Path(path_type=Path), default=Path(".devnet"),
              show_default=True, help="devnet directory (reused if it exists)")
@click.option("--base-port", type=int, default=None,
              help="first port (default: free ports chosen by the OS)")
@click.option("--timeout", type=float, default=180.0, show_default=True,
              help="seconds to wait for the network to commit blocks")
def devnet(providers: int, root: Path, base_port: int | None, timeout: float) -> None:
    """Run PROVIDERS provider daemons on this machine until Ctrl-C."""
    root = root.resolve()
    net = None
    interrupted = False

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        net = devnet_mod.setup(root, providers, base_port=base_port)
        devnet_mod.start(net)
        err.print(f"starting {providers} providers in {root} ...")
        height = devnet_mod.wait_ready(net, timeout)
        out.print(devnet_mod.ready_text(net, height), end="", soft_wrap=True)
        while True:  # supervise: a provider that dies is reported, the others keep running
            for home, proc in net.procs.items():
                if proc.poll() is not None:
                    raise ResourceError(
                        f"provider {home.name} exited with {proc.returncode}; see "
                        f"{home / LOG_FILE}")
            time.sleep(1.0)  # supervision interval (Ctrl-C/SIGTERM interrupt it at once)
    except KeyboardInterrupt:
        interrupted = True
    except StoragedError as exc:
        if net is not None:
            devnet_mod.stop(net)
        _fail(exc)
    finally:
        if net is not None:
            devnet_mod.stop(net)
    if interrupted:
        err.print("devnet stopped")


if __name__ == "__main__":
    main()
