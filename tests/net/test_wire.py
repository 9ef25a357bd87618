"""Framing and request/response sessions, sans-IO (no sockets): vectors, limits, properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storaged.errors import LocalBugError, ProtocolViolation
from storaged.net.errors import RemoteNotFound
from storaged.net.rpc import QUERY, ClientSession, ServerSession
from storaged.net.wire import Codec, FrameDecoder, MessageTable, MessageType

VECTORS = Path(__file__).parent.parent / "vectors" / "net_frames.json"

TABLE = MessageTable(
    "/test/1",
    [
        MessageType(0x01, "hello", Codec.CBOR, 64),
        MessageType(0x02, "blob", Codec.RAW, 16),
    ],
)


def test_golden_vectors() -> None:
    """The v1 frame bytes of fixed messages (a change here breaks every deployed peer)."""
    vectors = json.loads(VECTORS.read_text())
    assert len(vectors) >= 4
    for v in vectors:
        body: Any = bytes.fromhex(v["raw"]) if "raw" in v else v["cbor"]
        table = TABLE if v["protocol"] == "test" else QUERY.table()
        assert table.encode(v["name"], body).hex() == v["frame"], v
        dec = FrameDecoder(table)
        dec.feed(bytes.fromhex(v["frame"]))
        frame = dec.next_frame()
        assert frame is not None and frame.name == v["name"] and frame.body == body


def test_oversized_frame_rejected_from_header_alone() -> None:
    dec = FrameDecoder(TABLE)
    dec.feed(bytes.fromhex("000000120102"))  # length 18: a 16-byte body, at the limit
    assert dec.next_frame() is None  # waiting for body
    dec = FrameDecoder(TABLE)
    dec.feed(bytes.fromhex("000000130102"))  # body 17 > 16: rejected before the body arrives
    with pytest.raises(ProtocolViolation, match="exceeds limit 16"):
        dec.next_frame()
    with pytest.raises(ProtocolViolation):  # poisoned
        dec.next_frame()


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ("000000020201", "unsupported wire version 2"),
        ("000000020107", "unknown message type 0x07"),
        ("000000010101", "shorter than its header"),
        ("000000030101ff", "not valid CBOR"),
        ("00000003010101", "CBOR map"),
        # {"a": 1} encoded with a non-canonical 2-byte integer
        ("000000070101a161611801", "not canonical"),
    ],
)
def test_bad_frames_rejected_specifically(frame: str, match: str) -> None:
    dec = FrameDecoder(TABLE)
    dec.feed(bytes.fromhex(frame))
    with pytest.raises(ProtocolViolation, match=match):
        dec.next_frame()


def test_encoder_refuses_to_send_oversized() -> None:
    with pytest.raises(LocalBugError):
        TABLE.encode("blob", b"x" * 17)


@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=10))
@settings(max_examples=300, deadline=None)
def test_decoder_on_random_bytes_only_raises_protocol_violation(
    data: bytes, cuts: list[int]
) -> None:
    dec = FrameDecoder(TABLE)
    try:
        pos = 0
        for cut in [*cuts, len(data)]:
            dec.feed(data[pos : pos + cut])
            pos += cut
            while dec.next_frame() is not None:
                pass
    except ProtocolViolation:
        pass


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(cbor_values, st.integers(1, 7))
@settings(max_examples=200, deadline=None)
def test_sessions_round_trip_any_body_in_any_split(body: Any, step: int) -> None:
    client, server = ClientSession(QUERY), ServerSession(QUERY)
    wire = client.send_request(body)
    got = None
    for i in range(0, len(wire), step):
        got = server.receive_data(wire[i : i + step]) or got
    assert got is not None and got.body == body
    answer = server.respond({"echo": body})
    resp = None
    for i in range(0, len(answer), step):
        resp = client.receive_data(answer[i : i + step]) or resp
    assert resp is not None and resp.body == {"echo": body}
    assert client.idle


BULK = MessageTable(
    "/test/bulk/1",
    [MessageType(0x01, "meta", Codec.CBOR, 256), MessageType(0x02, "data", Codec.RAW, 1 << 16)],
)


@given(
    st.lists(st.one_of(st.binary(max_size=5000), st.dictionaries(st.text(max_size=4),
                                                                 st.integers(), max_size=3)),
             min_size=1, max_size=8),
    st.lists(st.integers(1, 9000), min_size=1, max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_decoder_yields_every_frame_of_a_stream_cut_anywhere(
    bodies: list[Any], cuts: list[int]
) -> None:
    wire = b"".join(BULK.encode("data" if isinstance(b, bytes) else "meta", b) for b in bodies)
    dec = FrameDecoder(BULK)
    got: list[Any] = []
    pos = 0
    for cut in cuts * (len(wire) // max(sum(cuts), 1) + 1):
        piece, pos = wire[pos : pos + cut], pos + cut
        dec.feed(piece)
        while (frame := dec.next_frame()) is not None:
            got.append(frame.body)
        if pos >= len(wire):
            break
    assert got == bodies
    assert all(isinstance(b, bytes) for b in got if not isinstance(b, dict))
    assert dec.buffered == 0


def test_error_code_becomes_exception_and_session_stays_usable() -> None:
    client, server = ClientSession(QUERY), ServerSession(QUERY)
    server.receive_data(client.send_request({"k": 1}))
    with pytest.raises(RemoteNotFound, match="no such block"):
        client.receive_data(server.refuse("not_found", "no such block"))
    assert client.idle
    assert server.receive_data(client.send_request({"k": 2})) is not None


def test_client_rejects_answer_with_wrong_id() -> None:
    client, server = ClientSession(QUERY), ServerSession(QUERY)
    server.receive_data(client.send_request({}))
    forged = QUERY.table().encode("response", {"id": 99, "body": None})
    with pytest.raises(ProtocolViolation, match="unexpected"):
        client.receive_data(forged)


def test_server_rejects_responses_from_client() -> None:
    server = ServerSession(QUERY)
    with pytest.raises(ProtocolViolation, match="may only send requests"):
        server.receive_data(QUERY.table().encode("response", {"id": 1, "body": 1}))


def _vectors() -> list[dict[str, Any]]:
    """Regenerate the vector file's content (run by hand after a deliberate format change)."""
    out: list[dict[str, Any]] = []
    for name, body in [("hello", {"a": 1, "b": [1, 2]}), ("hello", {})]:
        out.append(
            {
                "protocol": "test",
                "name": name,
                "cbor": body,
                "frame": TABLE.encode(name, body).hex(),
            }
        )
    out.append(
        {
            "protocol": "test",
            "name": "blob",
            "raw": "00ff",
            "frame": TABLE.encode("blob", b"\x00\xff").hex(),
        }
    )
    body2 = {"id": 7, "body": {"height": 12}}
    out.append(
        {
            "protocol": "query",
            "name": "request",
            "cbor": body2,
            "frame": QUERY.table().encode("request", body2).hex(),
        }
    )
    body3 = {"id": 7, "code": "not_found", "message": "no block 12"}
    out.append(
        {
            "protocol": "query",
            "name": "error",
            "cbor": body3,
            "frame": QUERY.table().encode("error", body3).hex(),
        }
    )
    assert cbor2.loads(bytes.fromhex(out[0]["frame"])[6:]) == {"a": 1, "b": [1, 2]}
    return out


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(_vectors(), indent=1) + "\n")
