"""The client's in-process light node: an ephemeral libp2p host, Rpc, Transfers and a chain.

The host has a fresh identity per run (the client is not a peer others dial); the client's
*chain account* is the key in ``<home>/node.key``.  Bootstrap peers come from ``[node]
bootstrap`` or ``STORAGE_PEERS``; their addresses are added to the peerstore, and so are the
addresses of registered providers once the chain's registry is read (:meth:`LightNode.learn`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nacl.signing
import trio

from storaged.chain.client import ChainClient, trusted_from_genesis
from storaged.chain.genesis import GENESIS_FILE, load_genesis
from storaged.client.chain import ClientChain, NetworkChain
from storaged.config import Config
from storaged.errors import ConfigError
from storaged.net.host import Node, NodeConfig, parse_multiaddr
from storaged.net.identity import load_signing_key
from storaged.net.rpc import Rpc
from storaged.net.transfer import Transfers

PEERS_ENV = "STORAGE_PEERS"
HOME_ENV = "STORAGE_HOME"


def client_home(explicit: Path | str | None = None) -> Path:
    """``explicit``, else ``$STORAGE_HOME``, else ``~/.storage``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".storage"


def bootstrap_peers(config: Config) -> list[str]:
    """Bootstrap multiaddrs: ``$STORAGE_PEERS`` (comma-separated) or ``[node] bootstrap``."""
    env = os.environ.get(PEERS_ENV)
    if env is not None:
        return [a.strip() for a in env.split(",") if a.strip()]
    return list(config.node.bootstrap)


@dataclass
class LightNode:
    """What the client commands use: host, request/response, bulk transfer, chain, account key.

    ``chain`` is None when no chain is reachable (``get`` does not need one when the
    manifest's providers are among the bootstrap peers)."""

    node: Node
    rpc: Rpc
    transfers: Transfers
    key: nacl.signing.SigningKey
    chain: ClientChain | None
    bootstrap: list[str] = field(default_factory=list)

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    def need_chain(self) -> ClientChain:
        """The chain, or a clear error.

        Raises:
            ConfigError: no chain (no bootstrap peers, or no ``genesis.json`` in the home).
        """
        if self.chain is None:
            raise ConfigError("this command needs the chain: give bootstrap peers ([node] "
                              f"bootstrap or {PEERS_ENV}) and put the network's genesis.json "
                              "in the client home")
        return self.chain

    async def learn(self) -> dict[str, bytes]:
        """Read the provider registry from the chain and remember each provider's addresses;
        return peer id -> provider public key.

        Raises:
            ConfigError: no chain.  RemoteError: the chain peers failed.
        """
        found: dict[str, bytes] = {}
        for pk, p in (await self.need_chain().providers()).items():
            if p.addrs:
                try:
                    self.node.add_peer_addrs(p.peer_id, p.addrs)
                except ConfigError:
                    continue  # one bad registry entry must not stop the client
            found[p.peer_id] = pk
        return found


def _trusted_chain(home: Path, config: Config, rpc: Rpc, peers: list[str]) -> ClientChain | None:
    genesis_path = home / GENESIS_FILE
    if not peers or not genesis_path.exists():
        return None
    genesis = load_genesis(genesis_path)
    if genesis.chain_id != config.node.chain_id:
        raise ConfigError(f"{genesis_path} is for chain {genesis.chain_id!r}, config says "
                          f"{config.node.chain_id!r}")
    client = ChainClient(rpc, peers, genesis.chain_id, trusted=trusted_from_genesis(genesis))
    return NetworkChain(client)


@asynccontextmanager
async def open_light_node(
    home: Path, config: Config, *, peers: list[str] | None = None,
    chain: ClientChain | None = None, stall_timeout: float = 30.0,
) -> AsyncIterator[LightNode]:
    """Start the light node; yield it; close the host on exit.

    ``peers`` (multiaddrs with ``/p2p/``) default to :func:`bootstrap_peers`; ``chain``
    defaults to a verifying :class:`NetworkChain` through those peers.

    Raises:
        ConfigError: a bad multiaddr, a missing key, or a genesis of another chain.
    """
    addrs = bootstrap_peers(config) if peers is None else peers
    peer_ids = [parse_multiaddr(a)[0] for a in addrs]
    key = load_signing_key(home)
    node = Node(NodeConfig(home=None, listen=("/ip4/127.0.0.1/tcp/0",)))
    for pid, addr in zip(peer_ids, addrs, strict=True):
        node.add_peer_addrs(pid, [addr])
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        rpc = Rpc(node)
        if chain is None:
            chain = _trusted_chain(home, config, rpc, peer_ids)
        light = LightNode(node, rpc, Transfers(node, stall_timeout=stall_timeout), key, chain,
                          peer_ids)
        try:
            yield light
        finally:
            nursery.cancel_scope.cancel()
