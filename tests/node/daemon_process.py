"""A provider Daemon (LocalChain) in its own OS process, for the kill tests.

Usage: python -m tests.node.daemon_process HOME CLIENT_SEED_HEX
Runs ``Daemon(HOME, config from HOME, chain_mode="local")``; once it serves, makes sure the
client account (seed given) has escrow for deals, then prints the provider's first listen
multiaddr on stdout and runs until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nacl.signing
import trio

from storaged import config
from storaged.chain.access import TxSender
from storaged.chain.accounts import load_account
from storaged.chain.state import StateOverlay
from storaged.node.daemon import Daemon


async def main(home: Path, client_seed: bytes) -> None:
    daemon = Daemon(home, config.load(home, env={}), chain_mode="local", block_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.chain is not None and daemon.node is not None and daemon.kv is not None
        client = nacl.signing.SigningKey(client_seed)
        if load_account(StateOverlay(daemon.kv), bytes(client.verify_key)).escrow == 0:
            await TxSender(daemon.chain, client).send_and_wait(
                "escrow_deposit", {"amount": 10**9}, timeout=30)
        print(daemon.node.addrs[0], flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
