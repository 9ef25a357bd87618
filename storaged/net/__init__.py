"""storaged's network layer: the only package that imports libp2p.

What the rest of storaged uses (see docs/architecture.md, section 6)::

    from storaged.net import Node, NodeConfig, Rpc, DEAL, QUERY, SYNC, Transfers, Gossip

    node = Node(NodeConfig(home=home, listen=["/ip4/0.0.0.0/tcp/4001"], bootstrap=[...]))
    rpc = Rpc(node); rpc.serve(QUERY, handler)            # handler(peer_id, body) -> body
    transfers = Transfers(node); transfers.serve_push(sink); transfers.serve_fetch(source)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        gossip = Gossip(node); await nursery.start(gossip.run)
        answer = await rpc.request(peer_id, QUERY, {"op": "height"}, timeout=5)
"""

from storaged.net.discovery import Directory, PeerRecord
from storaged.net.errors import (
    DeadlineExceeded,
    RemoteBadRequest,
    RemoteBusy,
    RemoteIntegrityFailure,
    RemoteInternalError,
    RemoteNotFound,
    RemoteRejected,
    StreamBroken,
)
from storaged.net.flow import ChunkSink, ChunkSource
from storaged.net.gossip import BLOCKS, TXS, VOTES, Gossip, Message, Subscription, Topic
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import DEAL, QUERY, SYNC, Rpc, RpcProtocol
from storaged.net.stream import Stream
from storaged.net.transfer import FetchResult, PushResult, Transfers

__all__ = [
    "BLOCKS",
    "DEAL",
    "QUERY",
    "SYNC",
    "TXS",
    "VOTES",
    "ChunkSink",
    "ChunkSource",
    "DeadlineExceeded",
    "Directory",
    "FetchResult",
    "Gossip",
    "Message",
    "Node",
    "NodeConfig",
    "PeerRecord",
    "PushResult",
    "RemoteBadRequest",
    "RemoteBusy",
    "RemoteIntegrityFailure",
    "RemoteInternalError",
    "RemoteNotFound",
    "RemoteRejected",
    "Rpc",
    "RpcProtocol",
    "Stream",
    "StreamBroken",
    "Subscription",
    "Topic",
    "Transfers",
]
