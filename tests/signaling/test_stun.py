"""The embedded STUN responder and the ICE servers handed out in ``welcome``."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import nacl.signing
import pytest
from aioice import stun

from peer.net.rtc import ice_servers, rtc_configuration
from peer.net.signaling import SignalingClient
from signaling.app import start_server
from signaling.config import SignalingConfig, TurnConfig
from signaling.stun import MAX_DATAGRAM, StunResponder
from signaling.turn import welcome_ice


def binding_request() -> stun.Message:
    return stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)


def test_binding_request_gets_the_source_address_back() -> None:
    responder = StunResponder()
    request = binding_request()
    raw = responder.answer(bytes(request), ("198.51.100.7", 40123))
    assert raw is not None
    response = stun.parse_message(raw)  # also checks the FINGERPRINT
    assert response.message_class == stun.Class.RESPONSE
    assert response.message_method == stun.Method.BINDING
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("198.51.100.7", 40123)
    assert set(response.attributes) == {"XOR-MAPPED-ADDRESS", "FINGERPRINT"}
    assert len(raw) <= 2 * len(bytes(request)) + 16  # no amplification worth the name
    assert responder.stats.answered == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00" * 19,
        bytes(stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)),
        bytes(stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)),
        bytes(stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION)),
        struct.pack("!HHI12s", 0x0001, 0, 0xDEADBEEF, b"x" * 12),  # no magic cookie (RFC 3489)
        struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, b"x" * 12),  # length beyond the datagram
        bytes(binding_request()) + b"\x00" * (MAX_DATAGRAM + 1),
        struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, b"x" * 12) + struct.pack("!HH", 0x8028, 4) + b"bad!",
    ],
    ids=[
        "empty",
        "http",
        "short",
        "allocate",
        "response",
        "indication",
        "no-cookie",
        "bad-length",
        "huge",
        "bad-fingerprint",
    ],
)
def test_everything_but_a_binding_request_is_dropped(data: bytes) -> None:
    responder = StunResponder()
    assert responder.answer(data, ("198.51.100.7", 1)) is None
    assert responder.stats.dropped_bad == 1
    assert responder.stats.answered == 0


def test_answers_are_rate_limited_without_per_source_state() -> None:
    now = [0.0]
    responder = StunResponder(rate_per_s=10, burst=5, clock=lambda: now[0])
    answers = [responder.answer(bytes(binding_request()), ("198.51.100.7", p)) for p in range(8)]
    assert sum(a is not None for a in answers) == 5
    assert responder.stats.dropped_rate == 3
    now[0] += 0.1  # one token back
    assert responder.answer(bytes(binding_request()), ("198.51.100.8", 9)) is not None
    assert responder.answer(bytes(binding_request()), ("198.51.100.8", 9)) is None


@pytest.fixture
async def stun_server() -> AsyncIterator[tuple[int, SignalingConfig]]:
    config = SignalingConfig(port=0, stun=True)
    runner, port = await start_server(config)
    try:
        yield port, config
    finally:
        await runner.cleanup()


async def test_server_answers_stun_on_its_http_port_number(stun_server: tuple[int, SignalingConfig]) -> None:
    port, _ = stun_server
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        mine = s.getsockname()[1]
        request = binding_request()
        await loop.sock_sendto(s, bytes(request), ("127.0.0.1", port))
        data = await asyncio.wait_for(loop.sock_recv(s, 2048), 5)
    response = stun.parse_message(data)
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("127.0.0.1", mine)


async def test_welcome_hands_out_the_embedded_stun_url(stun_server: tuple[int, SignalingConfig]) -> None:
    port, _ = stun_server
    key = nacl.signing.SigningKey.generate()
    client = await SignalingClient.connect(
        f"http://127.0.0.1:{port}", bytes(key.verify_key), lambda m: bytes(key.sign(m).signature)
    )
    try:
        assert client.ice_servers == [{"urls": [f"stun:127.0.0.1:{port}"]}]
        assert client.turn is None
    finally:
        await client.close()


def test_welcome_ice_order_and_public_host() -> None:
    turn = TurnConfig(urls=("turn:turn.example:3478?transport=tcp", "turn:turn.example:3478"), secret="s")
    cfg = SignalingConfig(host="0.0.0.0", port=8080, stun=True, turn=turn, public_url="https://chat.example")  # noqa: S104
    ice = welcome_ice(cfg, "ab" * 16, 1000.0)
    assert ice["ice_servers"][0] == {"urls": ["stun:chat.example:8080"]}
    assert ice["ice_servers"][1]["username"] == f"4600:{'ab' * 16}"
    assert ice["turn"]["ttl_s"] == 3600
    # a wildcard bind without a public URL cannot name itself: no STUN URL rather than a wrong one
    assert "ice_servers" not in welcome_ice(SignalingConfig(host="0.0.0.0", stun=True), "ab" * 16, 0)  # noqa: S104
    assert welcome_ice(SignalingConfig(stun_urls=("stun:turn.example:3478",)), "p", 0)["ice_servers"] == [
        {"urls": ["stun:turn.example:3478"]}
    ]
    # the Python peer puts STUN first and UDP TURN before TCP (aiortc takes the first of each)
    servers = ice_servers(ice["ice_servers"])
    assert [s.urls for s in servers] == [
        "stun:chat.example:8080",
        "turn:turn.example:3478",
        "turn:turn.example:3478?transport=tcp",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "nope",
        [1, "x", None],
        [{"urls": "http://evil"}],
        [{"urls": ["turn:t:3478"]}],  # TURN without credentials
        [{"urls": ["stun:" + "x" * 600]}],
        [{"urls": "turn:t:3478?transport=sctp", "username": "u", "credential": "c"}],
    ],
)
def test_malformed_ice_servers_are_dropped_not_fatal(bad: object) -> None:
    assert ice_servers(bad) == []  # type: ignore[arg-type]
    assert rtc_configuration(bad).iceServers == []  # type: ignore[arg-type]


def test_config_rejects_bad_network_options() -> None:
    with pytest.raises(ValueError, match="public_url"):
        SignalingConfig(public_url="chat.example")
    with pytest.raises(ValueError, match="STUN"):
        SignalingConfig(stun_urls=("turn:x",))
    with pytest.raises(ValueError, match="metrics"):
        SignalingConfig(metrics="everywhere")


async def test_metrics_off_or_on_their_own_listener() -> None:
    from aiohttp import ClientSession

    from tests.fixtures_services import free_port

    runner, port = await start_server(SignalingConfig(port=0, metrics="off"))
    try:
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 404
    finally:
        await runner.cleanup()
    private = free_port()
    runner, port = await start_server(SignalingConfig(port=0, stun=True, metrics=f"127.0.0.1:{private}"))
    try:
        async with ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 404  # not on the public port
            async with http.get(f"http://127.0.0.1:{private}/metrics") as r:
                assert r.status == 200
                text = await r.text()
            assert "ephemesh_signaling_connections 0" in text
            assert "ephemesh_signaling_stun_answered_total 0" in text
            async with http.get(f"http://127.0.0.1:{private}/healthz") as r:
                assert r.status == 404  # the private listener serves metrics only
    finally:
        await runner.cleanup()
