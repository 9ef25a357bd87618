"""The libp2p host of one storaged process: identity, listening, dialing, handlers, shutdown.

:class:`Node` is the only owner of a libp2p host.  It configures what py-libp2p 0.8.1 would
otherwise get wrong for us (each point measured on this code base, see docs/architecture.md):

- security is **Noise only** and multiplexing **Yamux only** (the defaults also accept
  plaintext and secio, and Mplex runs ~8x slower);
- ``max_connections_per_peer=1``: the default of 3 adds ~250 ms to every connect;
- Yamux is :class:`storaged.net.muxer.Muxer`: py-libp2p's, with its hot path tuned (fewer
  scheduler passes, socket reads and Noise messages per frame);
- every stream handler is wrapped (:func:`_guard`): an exception escaping a libp2p handler
  kills the whole host, so a bad peer's stream is reset and logged instead;
- every dial, stream open, read and write has a deadline (libp2p's never time out);
- glibc keeps frame-sized buffers mapped (:mod:`storaged.net.allocator`): a transfer's
  buffers otherwise cost a page fault per 4 KiB each time they are allocated;
- shutdown closes the host in a shielded scope (leaving ``host.run()`` alone leaks sockets
  and keeps listening).

Lifecycle::

    node = Node(NodeConfig(home=path))
    addrs = await nursery.start(node.run)     # listening; returns full /p2p/ multiaddrs
    peer = await node.connect(addr)           # -> peer id (str)
    stream = await node.open_stream(peer, "/storaged/deal/1.0.0")
    ...
    nursery.cancel_scope.cancel()             # node.run closes the host on the way out
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID

from storaged.errors import ConfigError, LocalBugError, RemoteError, ResourceError
from storaged.net.allocator import tune_allocator
from storaged.net.errors import DeadlineExceeded, StreamBroken, first_error
from storaged.net.identity import HomeLock, load_or_create_key
from storaged.net.muxer import Muxer, install
from storaged.net.stream import Stream

log = logging.getLogger(__name__)

StreamHandler = Callable[[Stream], Awaitable[None]]


class _NoStreamOpenDump(logging.Filter):
    """Drops py-libp2p's ERROR dump for a stream that could not be opened.

    0.8.1 logs every failed ``new_stream`` at ERROR (nine lines: protocols, timeouts,
    connection state) before raising.  :meth:`Node.open_stream` turns the exception into a
    :class:`StreamBroken` carrying the reason, and the caller decides whether it is an error:
    a light client connected to a provider does not serve ``/storaged/sync``, so each chain
    catch-up logged one dump per connected light client.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to open stream to peer")


logging.getLogger("libp2p.host.basic_host").addFilter(_NoStreamOpenDump())

PING_PROTOCOL = "/ipfs/ping/1.0.0"
IDENTIFY_PROTOCOL = "/ipfs/id/1.0.0"


@dataclass(frozen=True)
class NodeConfig:
    """How a node listens and whom it dials first.

    ``home=None`` gives an ephemeral identity and no lock (tests, one-shot light clients).
    """

    home: Path | None = None
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: Sequence[str] = ()
    connect_timeout: float = 10.0
    stream_open_timeout: float = 10.0
    # Seconds libp2p may spend negotiating a protocol on an inbound stream before dropping it.
    negotiate_timeout: float = 10.0


def parse_multiaddr(addr: str) -> tuple[str, multiaddr.Multiaddr]:
    """Split ``/ip4/.../tcp/.../p2p/<id>`` into (peer id, multiaddr).

    Raises:
        ConfigError: the text is not a multiaddr or lacks the ``/p2p/<peer id>`` part.
    """
    try:
        ma = multiaddr.Multiaddr(addr)
        info = info_from_p2p_addr(ma)
    except Exception as exc:
        raise ConfigError(f"bad peer multiaddr {addr!r}: {exc}") from exc
    return str(info.peer_id), ma


def _check_port_free(ma: multiaddr.Multiaddr) -> None:
    """Fail if a fixed TCP port in ``ma`` is taken.

    py-libp2p listens with SO_REUSEPORT, so a second daemon on the same port would *share*
    it (the kernel splits incoming connections between them) instead of failing.  A probe
    bind without SO_REUSEPORT fails on a port held by anyone, so we try one first.

    Raises:
        ResourceError: the port is in use.
    """
    try:
        port = int(ma.value_for_protocol("tcp"))
        ip = ma.value_for_protocol("ip4") or ma.value_for_protocol("ip6")
    except Exception:
        return  # not a TCP/IP multiaddr: libp2p will judge it
    if not port or not ip:
        return
    family = socket.AF_INET6 if ":" in str(ip) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((str(ip), port))
        except OSError as exc:
            raise ResourceError(f"cannot listen on {ma}: port {port} is in use ({exc})") from exc


def _guard(protocol: str, handler: StreamHandler) -> Callable[[Any], Awaitable[None]]:
    """Wrap a handler so nothing it raises reaches libp2p (which would kill the host)."""

    async def guarded(raw: Any) -> None:
        peer = str(raw.muxed_conn.peer_id)
        stream = Stream(raw, peer, protocol)
        try:
            with first_error():
                await handler(stream)
        except RemoteError as exc:
            # The peer misbehaved or vanished: expected in an open network, log briefly.
            log.info("%s from %s: %s: %s", protocol, peer, type(exc).__name__, exc)
            await stream.reset()
        except Exception:
            log.exception("%s handler failed on a stream from %s", protocol, peer)
            await stream.reset()

    return guarded


class Node:
    """One libp2p host: Noise + Yamux over TCP, persisted identity, guarded handlers."""

    def __init__(self, config: NodeConfig, *, key_pair: KeyPair | None = None) -> None:
        """Build the host (does not listen yet; see :meth:`run`).

        Raises:
            UserError / ResourceError: from loading the identity key in ``config.home``.
        """
        self.config = config
        tune_allocator()  # once per process: frame-sized buffers stay mapped (see allocator)
        if key_pair is None:
            key_pair = load_or_create_key(config.home) if config.home else create_new_key_pair()
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self._host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Muxer},
            connection_config=ConnectionConfig(
                max_connections_per_peer=1,
                # Dialing is ours (bootstrap + chain registry); libp2p's auto-connector would
                # otherwise dial up to 200 peerstore entries whenever we hold few connections.
                min_connections=0,
                low_watermark=0,
                dial_timeout=config.connect_timeout,
                inbound_stream_protocol_negotiation_timeout=config.negotiate_timeout,
                outbound_stream_protocol_negotiation_timeout=config.negotiate_timeout,
            ),
        )
        install(self._host)  # py-libp2p would build its stock Yamux regardless of muxer_opt
        self.peer_id = str(self._host.get_id())
        self._running = False
        self._on_peer_hooks: list[Callable[[str], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the listen addrs via ``task_status.started``, serve until cancelled.

        Bootstrap peers are dialed in the background; failures are logged, not raised.

        Raises:
            ResourceError: the home is locked by another process, or a listen address
                cannot be bound (port in use, bad interface).
            ConfigError: a listen address is not a valid multiaddr.
        """
        lock = HomeLock(self.config.home) if self.config.home else None
        try:
            try:
                listen = [multiaddr.Multiaddr(a) for a in self.config.listen]
            except Exception as exc:
                raise ConfigError(f"bad listen address in {self.config.listen!r}: {exc}") from exc
            for ma in listen:
                _check_port_free(ma)
            async with self._host.run(listen):
                try:
                    if not self._host.get_addrs():
                        raise ResourceError(f"could not listen on {list(self.config.listen)}")
                    self._running = True
                    async with trio.open_nursery() as nursery:
                        for addr in self.config.bootstrap:
                            nursery.start_soon(self._dial_bootstrap, addr)
                        task_status.started(self.addrs)
                        await trio.sleep_forever()
                finally:
                    self._running = False
                    # Shielded: a cancelled run must still release sockets and the port.
                    with trio.CancelScope(shield=True), trio.move_on_after(10):
                        await self._host.close()
        except OSError as exc:
            raise ResourceError(f"cannot listen on {list(self.config.listen)}: {exc}") from exc
        finally:
            if lock:
                lock.release()

    async def _dial_bootstrap(self, addr: str) -> None:
        try:
            await self.connect(addr)
        except Exception as exc:
            log.warning("bootstrap peer %s unreachable: %s", addr, exc)

    @property
    def addrs(self) -> list[str]:
        """Our dialable multiaddrs, each ending in ``/p2p/<our peer id>``."""
        out = []
        for a in self._host.get_addrs():
            s = str(a)
            out.append(s if "/p2p/" in s else f"{s}/p2p/{self.peer_id}")
        return out

    # -- peers -------------------------------------------------------------------------------

    def add_peer_addrs(self, peer: str, addrs: Sequence[str], *, ttl: float = 3600.0) -> None:
        """Remember where ``peer`` listens (discovery hook: bootstrap, chain provider registry).

        ``addrs`` are transport multiaddrs without the ``/p2p/`` suffix, or with it.

        Raises:
            ConfigError: the peer id or an address does not parse.
        """
        try:
            pid = ID.from_base58(peer)
            mas = [multiaddr.Multiaddr(a.split("/p2p/")[0]) for a in addrs]
        except Exception as exc:
            raise ConfigError(f"bad peer record {peer!r} {list(addrs)!r}: {exc}") from exc
        self._host.get_peerstore().add_addrs(pid, mas, int(ttl))

    def connected_peers(self) -> list[str]:
        """Peer ids we hold an open connection to."""
        return [str(p) for p in self._host.get_connected_peers()]

    def on_peer_connected(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(peer_id)`` after each successful :meth:`connect`."""
        self._on_peer_hooks.append(hook)

    async def connect(self, addr_or_peer: str, *, timeout: float | None = None) -> str:
        """Dial a ``/.../p2p/<id>`` multiaddr, or a known peer id; return the peer id.

        Raises:
            ConfigError: the address does not parse.
            DeadlineExceeded: no connection within the timeout.
            StreamBroken: the dial or the Noise/Yamux upgrade failed (including a peer that
                only speaks plaintext).
        """
        timeout = self.config.connect_timeout if timeout is None else timeout
        if addr_or_peer.startswith("/"):
            peer, ma = parse_multiaddr(addr_or_peer)
            info = PeerInfo(ID.from_base58(peer), [multiaddr.Multiaddr(str(ma).split("/p2p/")[0])])
        else:
            peer = addr_or_peer
            pid = ID.from_base58(peer)
            info = PeerInfo(pid, self._host.get_peerstore().addrs(pid))
        if peer == self.peer_id:
            raise LocalBugError("a node cannot dial itself")
        try:
            with trio.fail_after(timeout):
                await self._host.connect(info)
        except trio.TooSlowError:
            raise DeadlineExceeded(f"connect to {peer}: no answer in {timeout:g}s") from None
        except Exception as exc:
            raise StreamBroken(f"connect to {peer} failed: {exc!r}") from exc
        for hook in self._on_peer_hooks:
            hook(peer)
        return peer

    async def disconnect(self, peer: str) -> None:
        """Close every connection to ``peer``; never raises."""
        try:
            with trio.move_on_after(5):
                await self._host.disconnect(ID.from_base58(peer))
        except Exception as exc:
            log.debug("disconnect %s: %r", peer, exc)

    # -- streams -----------------------------------------------------------------------------

    def set_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol``: ``handler(stream)`` runs per inbound stream, guarded.

        Whatever the handler raises resets that stream only and is logged; the host and its
        other streams carry on.  The handler should close the stream when done.
        """
        self._host.set_stream_handler(TProtocol(protocol), _guard(protocol, handler))

    async def open_stream(
        self, peer: str, protocol: str, *, timeout: float | None = None
    ) -> Stream:
        """Open a stream to ``peer`` speaking ``protocol`` (dialing it first if needed).

        Raises:
            DeadlineExceeded: the dial or the protocol negotiation took longer than ``timeout``.
            StreamBroken: the peer is unreachable or does not speak ``protocol``.
        """
        timeout = self.config.stream_open_timeout if timeout is None else timeout
        pid = ID.from_base58(peer)
        try:
            with trio.fail_after(timeout):
                try:
                    raw = await self._host.new_stream(pid, [TProtocol(protocol)])
                except Exception as exc:
                    if "No valid connections" not in str(exc):
                        raise
                    # py-libp2p keeps a dead connection in its table after the peer vanished
                    # and will not redial; drop it and dial afresh, once.
                    await self._host.disconnect(pid)
                    raw = await self._host.new_stream(pid, [TProtocol(protocol)])
        except trio.TooSlowError:
            raise DeadlineExceeded(
                f"open {protocol} to {peer}: no answer in {timeout:g}s"
            ) from None
        except Exception as exc:
            raise StreamBroken(f"open {protocol} to {peer} failed: {exc!r}") from exc
        return Stream(raw, peer, protocol)

    async def ping(self, peer: str, *, timeout: float = 5.0) -> float:
        """Round-trip time in seconds of one standard ``/ipfs/ping/1.0.0`` exchange.

        Raises:
            DeadlineExceeded / StreamBroken: no valid pong in time.
        """
        stream = await self.open_stream(peer, PING_PROTOCOL, timeout=timeout)
        payload = os.urandom(32)
        start = time.perf_counter()
        await stream.write(payload, timeout=timeout)
        got = b""
        while len(got) < len(payload):
            chunk = await stream.read(len(payload) - len(got), timeout=timeout)
            if not chunk:
                raise StreamBroken(f"ping {peer}: stream ended")
            got += chunk
        rtt = time.perf_counter() - start
        await stream.close()
        if got != payload:
            raise StreamBroken(f"ping {peer}: pong does not echo the ping")
        return rtt

    def _set_raw_handler(self, protocol: str, handler: Callable[[Any], Awaitable[None]]) -> None:
        """Serve ``protocol`` with a handler taking libp2p's own stream (storaged.net only,
        for libp2p services like pubsub), guarded like :meth:`set_handler`."""

        async def guarded(raw: Any) -> None:
            try:
                await handler(raw)
            except Exception as exc:
                log.info("%s handler failed: %r", protocol, exc)
                with trio.move_on_after(2), contextlib.suppress(Exception):
                    await raw.reset()

        self._host.set_stream_handler(TProtocol(protocol), guarded)

    def _libp2p_host(self) -> Any:
        """The wrapped libp2p host, for other storaged.net modules only (gossip)."""
        return self._host
