"""A storaged.net peer in its own OS process, for the two-process and kill tests.

Usage: python -m tests.net.peer_process DIR [MAKE_OBJECT_MIB]
Serves push + fetch from a FileStore in DIR and QUERY (echo) over rpc; prints its first listen
multiaddr on stdout, then runs until killed.  With MAKE_OBJECT_MIB it first writes an object
with key b"big" of that many MiB (byte i = i % 251).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio

from storaged.net.files import FileStore
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import QUERY, Rpc
from storaged.net.transfer import Transfers

PATTERN = bytes(i % 251 for i in range(251 * 4096))


def pattern_bytes(offset: int, length: int) -> bytes:
    """The deterministic object content at [offset, offset+length)."""
    start = offset % 251
    reps = (start + length) // len(PATTERN) + 1
    return (PATTERN * reps)[start : start + length]


async def main(directory: Path, mib: int) -> None:
    store = FileStore(directory)
    if mib:
        store.path(b"big").write_bytes(
            b"".join(pattern_bytes(i << 20, 1 << 20) for i in range(mib))
        )
    node = Node(NodeConfig(home=directory / "home"))
    rpc = Rpc(node)

    async def echo(peer: str, body: Any) -> Any:
        return {"echo": body}

    rpc.serve(QUERY, echo)
    transfers = Transfers(node)
    transfers.serve_push(store)
    transfers.serve_fetch(store)
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(node.run)
        print(addrs[0], flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
