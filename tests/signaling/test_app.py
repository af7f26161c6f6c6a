"""The aiohttp app on real 127.0.0.1 sockets: happy path, every bad input, abuse, timers, static."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from signaling.app import HUB_KEY, REGISTRY_KEY
from signaling.config import SignalingConfig
from signaling.protocol import auth_message, b64u_encode
from signaling.registry import CLOSE_IDLE, CLOSE_POLICY, CLOSE_REPLACED

from .conftest import Identity, RawPeer, ServerFactory, make_config, room

Client = TestClient[Any, Any]
Connector = Any  # the ``connector`` fixture


async def authed(connector: Connector, client: Client, ident: Identity | None = None) -> RawPeer:
    peer: RawPeer = await connector(client)
    await peer.auth(ident or Identity.generate())
    return peer


async def bystanders(connector: Connector, client: Client, room_id: str = room(1)) -> tuple[RawPeer, RawPeer]:
    a = await authed(connector, client)
    b = await authed(connector, client)
    await a.join(room_id)
    assert await b.join(room_id) == [a.peer_id]
    await a.expect("peer-joined", room=room_id, peer=b.peer_id)
    return a, b


async def assert_still_working(a: RawPeer, b: RawPeer, room_id: str = room(1)) -> None:
    await a.signal(room_id, b, "still here")
    await b.signal(room_id, a, "me too")
    await a.send({"type": "ping"})
    await a.expect("pong")


# ------------------------------------------------------------------------------------ happy path


async def test_two_peers_happy_path(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    await a.signal(room(1), b, '{"sdp":"offer"}')
    await b.signal(room(1), a, '{"sdp":"answer"}')
    await b.send({"type": "leave", "room": room(1)})
    await b.expect("left", room=room(1))
    await a.expect("peer-left", room=room(1), peer=b.peer_id)
    await b.ws.close()
    health = await (await client.get("/healthz")).json()
    assert health == {"ok": True, "connections": 1, "rooms": 1}


async def test_disconnect_leaves_all_rooms(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    await b.join(room(2))
    await a.join(room(2))
    await b.expect("peer-joined", room=room(2), peer=a.peer_id)
    await b.ws.close()
    left = {(await a.expect("peer-left", peer=b.peer_id))["room"] for _ in range(2)}
    assert left == {room(1), room(2)}


async def test_ping_pong_carries_server_time(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a = await authed(connector, client)
    await a.send({"type": "ping"})
    pong = await a.expect("pong")
    assert isinstance(pong["t"], int)
    assert pong["t"] > 1_600_000_000_000


async def test_healthz_and_metrics(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    await bystanders(connector, client)
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "connections": 2, "rooms": 1}
    text = await (await client.get("/metrics")).text()
    assert "ephemesh_signaling_connections 2\n" in text
    assert "ephemesh_signaling_rooms 1\n" in text
    assert "ephemesh_signaling_authenticated_total 2\n" in text


async def test_static_index_and_files(server: ServerFactory, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>ephemesh</title>")
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("export {};")
    client = await server(SignalingConfig(web_root=tmp_path))
    resp = await client.get("/")
    assert resp.status == 200
    assert "ephemesh" in await resp.text()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    resp = await client.get("/js/app.js")
    assert resp.status == 200
    assert await resp.text() == "export {};"
    assert (await client.get("/nope.html")).status == 404
    assert (await client.get("/../pyproject.toml")).status in (403, 404)
    assert (await client.get("/healthz")).status == 200


async def test_no_web_root_serves_no_files(server: ServerFactory) -> None:
    client = await server(make_config())
    assert (await client.get("/")).status == 404


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        ("{not json", "bad-json", None),
        ('"just a string"', "bad-json", None),
        ({"type": 42}, "bad-frame", None),
        ({"type": "join", "room": 12}, "bad-frame", "join"),
        ({"type": "signal", "room": room(1), "to": "b" * 32}, "bad-frame", "signal"),
        ({"type": "subscribe", "topics": ["x"]}, "unknown-type", "subscribe"),
        ({"type": "join", "room": "not-a-room"}, "bad-room", "join"),
        ({"type": "join", "room": "A" * 32}, "bad-room", "join"),
        ({"type": "leave", "room": room(9)}, "not-in-room", "leave"),
        ({"type": "signal", "room": room(1), "to": "c" * 32, "payload": "x"}, "unknown-peer", "signal"),
        ({"type": "signal", "room": room(1), "to": "c" * 32, "payload": "x" * 65537}, "too-large", "signal"),
        ({"type": "auth", "pubkey": "", "sig": ""}, "bad-frame", "auth"),
    ],
)
async def test_bad_frame_gets_error_and_room_keeps_working(
    server: ServerFactory, connector: Connector, frame: dict[str, Any] | str, code: str, ref: str | None
) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    evil = await authed(connector, client)
    await evil.join(room(1))
    await evil.send(frame)
    await evil.expect_error(code, ref)
    await evil.send({"type": "ping"})  # a bad frame is not fatal
    await evil.expect("pong")
    await a.expect("peer-joined", peer=evil.peer_id)
    await b.expect("peer-joined", peer=evil.peer_id)
    await assert_still_working(a, b)


async def test_binary_frame_is_bad_frame(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    await a.ws.send_bytes(b'{"type":"ping"}')
    await a.expect_error("bad-frame")
    await assert_still_working(a, b)


async def test_oversized_frames(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config(max_frame_bytes=4096))
    a, b = await bystanders(connector, client)
    evil = await authed(connector, client)
    await evil.send('{"type":"ping","pad":"' + "x" * 5000 + '"}')  # over the limit: refused, kept
    await evil.expect_error("too-large")
    await evil.send({"type": "ping"})
    await evil.expect("pong")
    await evil.send("x" * (2 * 4096 + 1))  # over the hard limit: the WebSocket layer closes (1009)
    await evil.expect_closed(aiohttp.WSCloseCode.MESSAGE_TOO_BIG)
    await assert_still_working(a, b)


async def test_signal_before_auth(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    anon = await connector(client)
    await anon.send({"type": "signal", "room": room(1), "to": a.peer_id, "payload": "hi"})
    await anon.expect_error("not-authenticated", "signal")
    await anon.send({"type": "join", "room": room(1)})
    await anon.expect_error("not-authenticated", "join")
    await assert_still_working(a, b)


async def test_bad_signature_closes(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    ident = Identity.generate()
    evil = await connector(client)
    await evil.send(
        {
            "type": "auth",
            "pubkey": b64u_encode(ident.public_key),
            "sig": b64u_encode(ident.sign(auth_message(b"\x00" * 32))),  # not our nonce
        }
    )
    await evil.expect_error("auth-failed", "auth")
    await evil.expect_closed(CLOSE_POLICY)
    await assert_still_working(a, b)


async def test_replayed_auth_from_another_connection_fails(
    server: ServerFactory, connector: Connector
) -> None:
    client = await server(make_config())
    ident = Identity.generate()
    first = await connector(client)
    await first.auth(ident)
    second = await connector(client)
    assert second.challenge["nonce"] != first.challenge["nonce"]
    nonce = first.challenge["nonce"]
    from signaling.protocol import b64u_decode

    sig = ident.sign(auth_message(b64u_decode(nonce)))
    await second.send({"type": "auth", "pubkey": b64u_encode(ident.public_key), "sig": b64u_encode(sig)})
    await second.expect_error("auth-failed")
    await second.expect_closed(CLOSE_POLICY)


@pytest.mark.parametrize("pubkey", [bytes(32), b"\x01" + bytes(31)])
async def test_small_order_pubkey_refused(server: ServerFactory, connector: Connector, pubkey: bytes) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    evil = await connector(client)
    forged = b"\x01" + bytes(63)  # R = identity, S = 0: "valid" under a small-order key for lax verifiers
    await evil.send({"type": "auth", "pubkey": b64u_encode(pubkey), "sig": b64u_encode(forged)})
    await evil.expect_error("auth-failed", "auth")
    await evil.expect_closed(CLOSE_POLICY)
    await assert_still_working(a, b)


async def test_signal_to_peer_in_another_room(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    outsider = await authed(connector, client)
    await outsider.join(room(2))
    await outsider.send({"type": "signal", "room": room(2), "to": a.peer_id, "payload": "psst"})
    await outsider.expect_error("unknown-peer", "signal")
    await outsider.send({"type": "signal", "room": room(1), "to": a.peer_id, "payload": "psst"})
    await outsider.expect_error("not-in-room", "signal")
    await assert_still_working(a, b)


async def test_too_many_rooms(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config(max_rooms_per_conn=3))
    a, b = await bystanders(connector, client)
    for n in (2, 3):
        await a.join(room(n))
    await a.send({"type": "join", "room": room(4)})
    err = await a.expect_error("too-many-rooms", "join")
    assert err["room"] == room(4)
    await a.send({"type": "leave", "room": room(3)})
    await a.expect("left", room=room(3))
    await a.join(room(4))
    await assert_still_working(a, b)


async def test_room_full(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config(max_peers_per_room=2))
    a, b = await bystanders(connector, client)
    c = await authed(connector, client)
    await c.send({"type": "join", "room": room(1)})
    await c.expect_error("room-full", "join")
    await assert_still_working(a, b)


async def test_flood_is_rate_limited_then_closed(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config(rate_per_s=5, rate_burst=10, max_errors=20))
    a, b = await bystanders(connector, client)
    evil = await authed(connector, client)
    await evil.join(room(1))
    for _ in range(200):
        await evil.send({"type": "ping"})
    codes: list[str] = []
    while True:
        msg = await evil.ws.receive(timeout=5)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        frame = msg.json()
        if frame["type"] == "error":
            codes.append(frame["code"])
    assert evil.ws.close_code == CLOSE_POLICY
    assert codes[0] == "rate-limited"
    assert codes[-1] == "too-many-errors"
    await a.expect("peer-joined", peer=evil.peer_id)
    await a.expect("peer-left", peer=evil.peer_id)
    await b.expect("peer-joined", peer=evil.peer_id)
    await b.expect("peer-left", peer=evil.peer_id)
    await assert_still_working(a, b)
    metrics = await (await client.get("/metrics")).text()
    assert 'ephemesh_signaling_closes_total{code="too-many-errors"} 1' in metrics


async def test_too_many_errors_closes(server: ServerFactory, connector: Connector) -> None:
    client = await server(make_config(max_errors=3))
    a, b = await bystanders(connector, client)
    evil = await authed(connector, client)
    for _ in range(4):
        await evil.send("nope")
        await evil.expect_error("bad-json")
    await evil.expect_error("too-many-errors")
    await evil.expect_closed(CLOSE_POLICY)
    await assert_still_working(a, b)


# ------------------------------------------------------------------------------------ replacement


async def test_reconnect_with_same_identity_replaces_stale_connection(
    server: ServerFactory, connector: Connector
) -> None:
    client = await server(make_config())
    ident = Identity.generate()
    bystander = await authed(connector, client)
    await bystander.join(room(1))
    stale = await authed(connector, client, ident)
    await stale.join(room(1))
    await bystander.expect("peer-joined", peer=ident.peer_id)
    fresh = await authed(connector, client, ident)
    await stale.expect_error("replaced")
    await stale.expect_closed(CLOSE_REPLACED)
    await bystander.expect("peer-left", room=room(1), peer=ident.peer_id)
    assert await fresh.join(room(1)) == [bystander.peer_id]
    await bystander.expect("peer-joined", room=room(1), peer=ident.peer_id)
    await bystander.signal(room(1), fresh, "welcome back")
    await fresh.signal(room(1), bystander, "thanks")


# ------------------------------------------------------------------------------------ timers


async def test_idle_timeout_closes(server: ServerFactory, connector: Connector) -> None:
    client = await server(SignalingConfig(idle_timeout_s=0.2, heartbeat_s=0.1))
    peer = await connector(client)
    assert peer.challenge["idle_timeout_s"] == 0.2
    await peer.auth(Identity.generate())
    await peer.expect_error("idle-timeout")
    await peer.expect_closed(CLOSE_IDLE)
    registry = client.app[REGISTRY_KEY] if client.app is not None else None
    assert registry is not None
    assert registry.connection_count == 0


async def test_auth_timeout_closes(server: ServerFactory, connector: Connector) -> None:
    client = await server(SignalingConfig(auth_timeout_s=0.2))
    peer = await connector(client)
    await peer.expect_error("auth-timeout")
    await peer.expect_closed(CLOSE_POLICY)


# ------------------------------------------------------------------------------------ slow consumers


async def _blast(sender: RawPeer, target: RawPeer, count: int) -> None:
    payload = "p" * 60_000
    for _ in range(count):
        await sender.send({"type": "signal", "room": room(1), "to": target.peer_id, "payload": payload})


async def test_stuck_reader_does_not_stall_the_room(server: ServerFactory, connector: Connector) -> None:
    client = await server(
        make_config(
            rate_per_s=1e6,
            rate_burst=1_000_000,
            send_queue_frames=100_000,
            send_queue_bytes=1 << 30,
            sender_queue_bytes=1 << 30,
            sender_queue_frames=100_000,
        )
    )
    a, b = await bystanders(connector, client)
    stuck = await authed(connector, client)  # never reads again
    sender = await authed(connector, client)
    await stuck.join(room(1))
    await sender.join(room(1))
    for peer in (a, b):
        await peer.expect("peer-joined", peer=stuck.peer_id)
        await peer.expect("peer-joined", peer=sender.peer_id)
    await _blast(sender, stuck, 400)  # 24 MB: far more than the socket buffers hold
    await sender.send({"type": "ping"})
    while (await sender.recv())["type"] != "pong":  # the server has handled every frame before it
        pass
    assert client.app is not None
    hub = client.app[HUB_KEY]
    assert hub.backlog_of(stuck.peer_id) > 0  # the stuck reader has a backlog right now...
    for _ in range(3):  # ...and the others are not held up by it
        await assert_still_working(a, b)


async def test_full_outbox_refuses_the_sender_not_the_reader(
    server: ServerFactory, connector: Connector
) -> None:
    """A reader's outbox at ``send_queue_frames`` refuses further signals to their sender
    (``recipient-busy``); the reader is not dropped for what others send it (see test_abuse.py for
    the stall rule that does drop a reader that makes no progress: it is held off here, because a
    blast that took longer than its 10 s on a busy machine dropped the reader and emptied its outbox)."""
    config = make_config(rate_per_s=1e6, rate_burst=1_000_000, send_queue_frames=16, max_errors=10_000)
    client = await server(dataclasses.replace(config, stall_timeout_s=600.0))
    a, b = await bystanders(connector, client)
    slow = await authed(connector, client)  # never reads again
    sender = await authed(connector, client)
    await slow.join(room(1))
    await sender.join(room(1))
    await _blast(sender, slow, 400)
    await sender.send({"type": "ping"})
    busy = 0
    while (frame := await sender.recv())["type"] != "pong":
        busy += frame.get("code") == "recipient-busy"
    assert busy > 0  # (the socket buffers took some before the outbox filled)
    assert client.app is not None
    hub = client.app[HUB_KEY]
    assert 0 < hub.backlog_of(slow.peer_id) <= 16
    for peer in (a, b):
        await peer.expect("peer-joined", peer=slow.peer_id)
        await peer.expect("peer-joined", peer=sender.peer_id)
    await assert_still_working(a, b)


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    while not ws.closed:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return
