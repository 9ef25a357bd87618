"""The light client over real libp2p: verified reads, fail-over, tampered answers refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from storaged.chain.access import ChainAccess, TxSender
from storaged.chain.client import ChainClient, trusted_from_genesis
from storaged.chain.consensus.errors import InvalidCertificate
from storaged.chain.errors import BadNonce, StateProofInvalid
from storaged.chain.node import ChainNode
from storaged.net.host import Node, NodeConfig
from storaged.net.rpc import QUERY, Rpc
from storaged.store import schema
from tests.chain.consensus.net_fixture import CLIENT, genesis, start_stack
from tests.chain.helpers import CHAIN, key, pk, transfer

Tamper = Callable[[dict[str, Any]], dict[str, Any]]


async def liar(nursery: trio.Nursery, honest: ChainNode, tamper: Tamper) -> Node:
    """A node answering QUERY with the honest node's answers, altered by ``tamper``."""
    node = Node(NodeConfig())
    rpc = Rpc(node)

    async def handle(peer: str, body: Any) -> Any:
        return tamper(await honest.query.handle(peer, body))

    rpc.serve(QUERY, handle)
    await nursery.start(node.run)
    return node


def flip_value(answer: dict[str, Any]) -> dict[str, Any]:
    if answer.get("value"):
        answer["value"] = answer["value"][:-1] + bytes([answer["value"][-1] ^ 1])
    return answer


def forge_signature(answer: dict[str, Any]) -> dict[str, Any]:
    """Corrupt the last vote's signature (keeps the canonical certificate shape)."""
    if "certificate" in answer:
        cert = answer["certificate"]
        answer["certificate"] = cert[:-1] + bytes([cert[-1] ^ 1])
    return answer


async def test_light_client_reads_verified_and_refuses_tampering(tmp_path: Path) -> None:
    g = genesis(1)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            stack = await start_stack(nursery, 0, tmp_path / "v0", g, validator=True, peers=[])
            honest = stack.chain
            assert honest is not None
            await honest.wait_height(2, timeout=20)
            light = Node(NodeConfig())
            await nursery.start(light.run)
            rpc = Rpc(light)
            await light.connect(stack.node.addrs[0])
            client = ChainClient(rpc, [stack.node.peer_id], CHAIN,
                                 trusted=trusted_from_genesis(g))
            head = await client.head()
            assert head.height >= 2
            acct = await client.account(pk(CLIENT))
            assert acct.balance == 1_000_000
            assert (await client.provider(pk(0))) is not None
            assert set(await client.providers()) == {pk(0)}
            # Send through the client with TxSender; the receipt proves inclusion.
            await client.load_nonce(pk(CLIENT))
            # TxSender is typed for ChainAccess but uses only chain_id, next_nonce, submit
            # and wait_receipt, which the light client provides.
            sender = TxSender(cast(ChainAccess, client), key(CLIENT))
            receipt = await sender.send_and_wait(
                "transfer", {"to": pk(5), "amount": 42}, timeout=20)
            assert receipt["height"] >= 1
            assert (await client.account(pk(5))).balance == 42
            with pytest.raises(BadNonce):
                await client.submit(transfer(CLIENT, 5, 1, 0))  # nonce 0 already used

            # A lying peer alone: its answers are refused with a specific error.
            bad_value = await liar(nursery, honest, flip_value)
            bad_cert = await liar(nursery, honest, forge_signature)
            for n in (bad_value, bad_cert):
                await light.connect(n.addrs[0])
            fooled = ChainClient(rpc, [bad_value.peer_id], CHAIN, trusted=client.trusted)
            with pytest.raises(StateProofInvalid):
                await fooled.account(pk(CLIENT))
            forged = ChainClient(rpc, [bad_cert.peer_id], CHAIN, trusted=client.trusted)
            with pytest.raises(InvalidCertificate):
                await forged.head()
            # With an honest peer after the liars, the client fails over and gets the truth.
            mixed = ChainClient(rpc, [bad_value.peer_id, bad_cert.peer_id,
                                      stack.node.peer_id], CHAIN, trusted=client.trusted)
            assert (await mixed.account(pk(5))).balance == 42
            raw = await mixed.get(schema.state_account_key(pk(CLIENT)))
            assert raw is not None
        nursery.cancel_scope.cancel()
