"""The host wrapper: listening, identity, lock, guarded handlers, security configuration."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from storaged.errors import ResourceError, UserError
from storaged.net.errors import StreamBroken
from storaged.net.host import Node, NodeConfig
from storaged.net.stream import Stream
from storaged.net.testing import cluster


async def test_identity_persists_with_private_mode(tmp_path: Path) -> None:
    first = Node(NodeConfig(home=tmp_path))
    second = Node(NodeConfig(home=tmp_path))
    assert first.peer_id == second.peer_id
    mode = stat.S_IMODE((tmp_path / "node.key").stat().st_mode)
    assert mode == 0o600


async def test_group_readable_key_refused(tmp_path: Path) -> None:
    Node(NodeConfig(home=tmp_path))
    os.chmod(tmp_path / "node.key", 0o644)
    with pytest.raises(UserError, match="accessible by others"):
        Node(NodeConfig(home=tmp_path))


async def test_two_nodes_cannot_share_a_home(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(Node(NodeConfig(home=tmp_path)).run)
            with pytest.raises(ResourceError, match=f"pid {os.getpid()}"):
                await Node(NodeConfig(home=tmp_path)).run()
        nursery.cancel_scope.cancel()
    # Released on shutdown: a new node may take the home now.
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(Node(NodeConfig(home=tmp_path)).run)
        nursery.cancel_scope.cancel()


async def test_ping_and_identify_answered() -> None:
    async with cluster(2) as (a, b):
        with trio.fail_after(10):
            rtt = await a.ping(b.peer_id)
            assert 0 < rtt < 5
            stream = await a.open_stream(b.peer_id, "/ipfs/id/1.0.0")
            data = await stream.read(65536, timeout=5)
            # identify answers a protobuf that carries our listen address bytes
            assert len(data) > 10
            await stream.close()


async def test_raising_handler_does_not_hurt_other_streams() -> None:
    served = trio.Event()

    async def broken(stream: Stream) -> None:
        raise RuntimeError("handler bug")

    async def echo(stream: Stream) -> None:
        data = await stream.read(100, timeout=5)
        await stream.write(data, timeout=5)
        await stream.close()
        served.set()

    def setup(node: Node) -> None:
        node.set_handler("/test/broken/1", broken)
        node.set_handler("/test/echo/1", echo)

    async with cluster(2, setup=setup) as (a, b):
        with trio.fail_after(15):
            echo_stream = await a.open_stream(b.peer_id, "/test/echo/1")
            for _ in range(3):
                # The reset may land during negotiation or on the first read.
                with pytest.raises(StreamBroken):
                    bad = await a.open_stream(b.peer_id, "/test/broken/1")
                    await bad.write(b"x", timeout=5)
                    while await bad.read(10, timeout=5):
                        pass
                    raise StreamBroken("eof")  # a reset or an EOF both mean "refused"
            await echo_stream.write(b"hello", timeout=5)
            assert await echo_stream.read(100, timeout=5) == b"hello"
            await served.wait()
            assert b.peer_id in a.connected_peers()


async def test_plaintext_only_dialer_is_refused() -> None:
    async with cluster(1) as (node,):
        kp = create_new_key_pair()
        rogue = new_host(
            key_pair=kp,
            sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)},  # type: ignore[dict-item]
        )
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with rogue.run(listen):
            try:
                target = PeerInfo(
                    ID.from_base58(node.peer_id),
                    [multiaddr.Multiaddr(node.addrs[0].split("/p2p/")[0])],
                )
                with trio.fail_after(15), pytest.raises(Exception) as info:
                    await rogue.connect(target)
                assert not isinstance(info.value, trio.TooSlowError)
                assert rogue.get_connected_peers() == []
                assert node.connected_peers() == []
            finally:
                with trio.CancelScope(shield=True):
                    await rogue.close()
        # and the node still serves a proper peer
        async with cluster(1) as (good,):
            with trio.fail_after(10):
                await good.connect(node.addrs[0])
                assert await good.ping(node.peer_id) > 0


async def test_two_nodes_cannot_share_a_port() -> None:
    # libp2p sets SO_REUSEPORT; without our probe the second node would share the port.
    async with cluster(1) as (first,):
        port = first.addrs[0].split("/tcp/")[1].split("/")[0]
        second = Node(NodeConfig(listen=(f"/ip4/127.0.0.1/tcp/{port}",)))
        with trio.fail_after(10), pytest.raises(ResourceError, match=f"port {port} is in use"):
            await second.run()


async def test_unsupported_protocol_is_a_specific_error_without_libp2ps_error_dump(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(2) as (a, b):
        with trio.fail_after(20), pytest.raises(StreamBroken, match="not-served"):
            await a.open_stream(b.peer_id, "/storaged-test/not-served/1.0.0")
    dumps = [r for r in caplog.records if r.name == "libp2p.host.basic_host"
             and r.levelname == "ERROR"]
    assert dumps == []
