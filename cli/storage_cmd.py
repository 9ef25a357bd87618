"""``storage``: the client CLI (put, get, ls, status, deals, wallet) as an in-process light node.

Home: ``--home``, else ``$STORAGE_HOME``, else ``~/.storage`` (``node.key`` = the client's chain
account, ``config.toml``, ``genesis.json`` of the network, ``db/`` = files put).  Peers:
``$STORAGE_PEERS`` (comma-separated multiaddrs) or ``[node] bootstrap``.

Every storaged error is printed as one line ``error: ...`` on stderr and exits with the code of
its branch (user 2, remote 3, integrity 4, resource 5, bug 70); never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import trio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storaged.client import account
from storaged.client.get import get_file
from storaged.client.light import LightNode, client_home, open_light_node
from storaged.client.progress import Quiet, Reporter, RichReporter
from storaged.client.put import PutOptions, put_file, wait_active
from storaged.client.records import FileRecords
from storaged.config import Config, load
from storaged.data.capability import parse_capability
from storaged.errors import PeerUnavailable, StoragedError, UserError

T = TypeVar("T")
err = Console(stderr=True)
out = Console()


@dataclass
class Ctx:
    home: Path
    config: Config


def _fail(exc: StoragedError) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False,
              soft_wrap=True)
    sys.exit(exc.exit_code)


def _run(ctx: Ctx, body: Callable[[LightNode], Awaitable[T]]) -> T:
    """Run ``body`` on a fresh light node; storaged errors end the process with their code."""

    async def main() -> T:
        async with open_light_node(ctx.home, ctx.config) as light:
            return await body(light)

    try:
        return trio.run(main, strict_exception_groups=True)
    except StoragedError as exc:
        _fail(exc)
    except trio.TooSlowError:
        _fail(PeerUnavailable("the network did not answer in time"))
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        first = next((e for e in leaves if isinstance(e, StoragedError)), None)
        if first is not None:
            _fail(first)
        if any(isinstance(e, trio.TooSlowError) for e in leaves):
            _fail(PeerUnavailable("the network did not answer in time"))
        raise
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj, sort_keys=True))


@click.group()
@click.option("--home", type=click.Path(path_type=Path), default=None,
              help="client home (default $STORAGE_HOME or ~/.storage)")
@click.option("-v", "--verbose", is_flag=True, help="log what happens")
@click.pass_context
def main(ctx: click.Context, home: Path | None, verbose: bool) -> None:
    """Store files on the storaged network and get them back."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # py-libp2p logs a dead peer's broken streams (with tracebacks) as errors; the client
        # reports each failure itself, in one line, with what to do.
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    root = client_home(home)
    try:
        config = load(root)
    except StoragedError as exc:
        _fail(exc)
    ctx.obj = Ctx(root, config)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-k", type=int, default=None, help="shares needed to rebuild (default [client] k)")
@click.option("-n", type=int, default=None, help="shares/providers (default [client] n)")
@click.option("--duration", type=int, default=None, help="deal length in epochs (blocks)")
@click.option("--price-max", type=int, default=None,
              help="highest ask accepted, per GiB per epoch")
@click.option("--public", is_flag=True, help="do not encrypt (the capability has no key)")
@click.option("--wait", "wait_s", type=float, default=None, is_flag=False, flag_value=600.0,
              metavar="[SECONDS]",
              help="wait until every deal is ACTIVE on chain (default 600 s)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object, no progress bar")
@click.pass_obj
def put(obj: Ctx, file: Path, k: int | None, n: int | None, duration: int | None,
        price_max: int | None, public: bool, wait_s: float | None, as_json: bool) -> None:
    """Encrypt, erasure-code and store FILE on n providers; print its capability."""
    c = obj.config.client
    opts = PutOptions(k=c.k if k is None else k, n=c.n if n is None else n,
                      segment_size=c.segment_size,
                      duration=c.duration if duration is None else duration,
                      price_max=c.price_max if price_max is None else price_max,
                      start_margin=c.start_margin, candidates_extra=c.candidates_extra,
                      public=public)
    if not 1 <= opts.k <= opts.n <= 256:
        _fail(UserError(f"need 1 <= k <= n <= 256, got k={opts.k} n={opts.n}"))
    if opts.duration < 1 or opts.price_max < 0:
        _fail(UserError("duration must be >= 1 and price-max >= 0"))

    async def body(light: LightNode) -> dict[str, Any]:
        reporter: Reporter = Quiet() if as_json else RichReporter(err)
        if isinstance(reporter, RichReporter):
            with reporter:
                result = await put_file(light, file, opts, reporter=reporter)
        else:
            result = await put_file(light, file, opts, reporter=reporter)
        with FileRecords(obj.home) as records:
            records.add(result.cid, result.capability, file.name, result.size,
                        [p.deal for p in result.placements],
                        [p.peer_id for p in result.placements])
        answer = result.to_json()
        answer["active"] = False
        if wait_s is not None:
            if not as_json:
                err.print(f"waiting up to {wait_s:g} s for {opts.n} deals to become ACTIVE")
            await wait_active(light, [p.deal for p in result.placements], timeout=wait_s)
            answer["active"] = True
        return answer

    answer = _run(obj, body)
    if as_json:
        _emit(answer)
        return
    table = Table("slot", "deal", "provider", "price/epoch")
    for d in answer["deals"]:
        table.add_row(str(d["slot"]), str(d["deal"]), d["provider"], str(d["price"]))
    err.print(table)
    if answer["active"]:
        err.print("all deals are ACTIVE on chain")
    click.echo(answer["capability"])


@main.command()
@click.argument("cap")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="output file (default: the CID in the current directory)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object, no progress bar")
@click.pass_obj
def get(obj: Ctx, cap: str, output: Path | None, as_json: bool) -> None:
    """Fetch the file of capability CAP, verify and decrypt it."""
    try:
        capability = parse_capability(cap)
    except StoragedError as exc:
        _fail(exc)
    dest = output or Path(capability.cid)

    async def body(light: LightNode) -> dict[str, Any]:
        if as_json:
            manifest = await get_file(light, capability, dest)
        else:
            with RichReporter(err) as reporter:
                manifest = await get_file(light, capability, dest, reporter=reporter)
        return {"cid": capability.cid, "size": manifest.size, "output": str(dest)}

    answer = _run(obj, body)
    if as_json:
        _emit(answer)
    else:
        err.print(f"wrote {answer['size']} bytes to {answer['output']}")


@main.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ls(obj: Ctx, as_json: bool) -> None:
    """Files put from this home."""
    try:
        with FileRecords(obj.home) as records:
            files = [r.to_json() for r in records.all()]
    except StoragedError as exc:
        _fail(exc)
    if as_json:
        _emit(files)
        return
    table = Table("name", "size", "deals", "capability")
    for f in files:
        table.add_row(f["name"], str(f["size"]), ",".join(map(str, f["deals"])),
                      f["capability"])
    out.print(table)


@main.command()
@click.argument("cap")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: Ctx, cap: str, as_json: bool) -> None:
    """Each deal of a file: state and reason on chain, the provider's own view."""
    try:
        capability = parse_capability(cap)
    except StoragedError as exc:
        _fail(exc)
    answer = _run(obj, lambda light: account.file_status(light, capability))
    if as_json:
        _emit(answer)
        return
    table = Table("slot", "deal", "provider", "state", "reason", "provider says", "received")
    for d in answer["deals"]:
        table.add_row(str(d["slot"]), str(d["deal"]), d["provider"], d["state"], d["reason"],
                      str(d.get("provider_state") or d.get("error", "")),
                      str(d.get("received", "")))
    out.print(f"{answer['cid']}: {answer['size']} bytes, k={answer['k']} n={answer['n']}, "
              f"height {answer['height']}")
    out.print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def deals(obj: Ctx, as_json: bool) -> None:
    """Every deal of this client's account on chain."""
    rows = _run(obj, account.my_deals)
    if as_json:
        _emit(rows)
        return
    table = Table("deal", "state", "reason", "provider", "size", "price", "start", "end")
    for d in rows:
        table.add_row(str(d["deal"]), d["state"], d["reason"], d["provider"], str(d["size"]),
                      str(d["price"]), str(d["start"]), str(d["end"]))
    out.print(table)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wallet(ctx: click.Context, as_json: bool) -> None:
    """Balance, escrow and locked funds (subcommands: deposit N, withdraw N)."""
    if ctx.invoked_subcommand is None:
        _show_wallet(_run(ctx.obj, account.wallet), as_json)


def _show_wallet(w: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(w)
        return
    table = Table("account", "balance", "escrow (free)", "locked")
    table.add_row(w["account"][:16] + "…", str(w["balance"]), str(w["escrow"]), str(w["locked"]))
    out.print(table)


@wallet.command()
@click.argument("amount", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def deposit(obj: Ctx, amount: int, as_json: bool) -> None:
    """Move AMOUNT from balance to escrow (deals are paid from escrow)."""
    _show_wallet(_run(obj, lambda light: account.move_escrow(light, "escrow_deposit", amount)),
                 as_json)


@wallet.command()
@click.argument("amount", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def withdraw(obj: Ctx, amount: int, as_json: bool) -> None:
    """Move AMOUNT of free escrow back to the balance."""
    _show_wallet(_run(obj, lambda light: account.move_escrow(light, "escrow_withdraw", amount)),
                 as_json)


if __name__ == "__main__":
    main()
