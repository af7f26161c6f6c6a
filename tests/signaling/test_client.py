"""peer.net.signaling.SignalingClient against the real server on 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from peer.net.signaling import (
    Disconnected,
    PeerJoined,
    PeerLeft,
    ServerError,
    SignalingClient,
    SignalingError,
    SignalReceived,
    ws_url,
)
from signaling.app import REGISTRY_KEY, start_server
from signaling.config import SignalingConfig, TurnConfig
from signaling.registry import CLOSE_REPLACED

from .conftest import WAIT, Identity, RawPeer, ServerFactory, make_config, room

Client = TestClient[Any, Any]


async def connect(client: Client, ident: Identity | None = None) -> SignalingClient:
    ident = ident or Identity.generate()
    return await SignalingClient.connect(str(client.make_url("/ws")), ident.public_key, ident.sign)


def test_url_forms() -> None:
    assert ws_url("ws://127.0.0.1:8080/ws") == "ws://127.0.0.1:8080/ws"
    assert ws_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/ws"
    assert ws_url("https://chat.example/") == "wss://chat.example/ws"
    with pytest.raises(SignalingError):
        ws_url("ftp://x")


async def test_two_clients_happy_path(server: ServerFactory) -> None:
    client = await server(make_config())
    ia, ib = Identity.generate(), Identity.generate()
    async with await connect(client, ia) as a, await connect(client, ib) as b:
        assert (a.peer_id, b.peer_id) == (ia.peer_id, ib.peer_id)
        assert a.turn is None
        assert await a.join(room(1)) == []
        assert await b.join(room(1)) == [a.peer_id]
        assert await a.next_event(WAIT) == PeerJoined(room(1), b.peer_id)
        await a.signal(room(1), b.peer_id, "offer")
        assert await b.next_event(WAIT) == SignalReceived(room(1), a.peer_id, "offer")
        await b.signal(room(1), a.peer_id, "answer")
        assert await a.next_event(WAIT) == SignalReceived(room(1), b.peer_id, "answer")
        await b.leave(room(1))
        assert await a.next_event(WAIT) == PeerLeft(room(1), b.peer_id)
        await b.close()
        assert b.closed
        assert isinstance(await b.next_event(WAIT), Disconnected)


async def test_start_server_and_http_url() -> None:
    runner, port = await start_server(SignalingConfig(port=0))
    try:
        ident = Identity.generate()
        async with await SignalingClient.connect(
            f"http://127.0.0.1:{port}", ident.public_key, ident.sign
        ) as c:
            assert await c.join(room(3)) == []
    finally:
        await runner.cleanup()


async def test_errors_on_requests_and_signals(server: ServerFactory) -> None:
    client = await server(make_config(max_rooms_per_conn=1))
    async with await connect(client) as a:
        with pytest.raises(SignalingError) as info:
            await a.join("not-a-room")
        assert info.value.code == "bad-room"
        await a.join(room(1))
        with pytest.raises(SignalingError) as info:
            await a.join(room(2))
        assert info.value.code == "too-many-rooms"
        with pytest.raises(SignalingError) as info:
            await a.leave(room(2))
        assert info.value.code == "not-in-room"
        await a.signal(room(1), "f" * 32, "hello?")
        event = await a.next_event(WAIT)
        assert isinstance(event, ServerError)
        assert event.code == "unknown-peer"
        assert await a.join(room(1)) == []  # still usable


async def test_auth_failure_raises() -> None:
    runner, port = await start_server(SignalingConfig(port=0))
    try:
        ident = Identity.generate()
        with pytest.raises(SignalingError) as info:
            await SignalingClient.connect(f"ws://127.0.0.1:{port}/ws", ident.public_key, lambda m: bytes(64))
        assert info.value.code == "auth-failed"
    finally:
        await runner.cleanup()


async def test_connection_refused_raises() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ident = Identity.generate()
        with pytest.raises(SignalingError) as info:
            await SignalingClient.connect(f"ws://127.0.0.1:{port}/ws", ident.public_key, ident.sign)
    assert info.value.code == "connect-failed"


async def test_heartbeat_keeps_client_alive_past_idle_timeout(server: ServerFactory, connector: Any) -> None:
    # the client pings at most once a second whatever a server announces (test_hostile_server.py)
    client = await server(SignalingConfig(heartbeat_s=1.0, idle_timeout_s=2.5))
    async with await connect(client) as a:
        idle: RawPeer = await connector(client)
        await idle.auth(Identity.generate())
        await idle.expect_error("idle-timeout")  # a non-pinging peer is dropped...
        await idle.expect_closed()
        assert not a.closed  # ...while the heartbeating client is still connected
        assert await a.join(room(1)) == []
        assert client.app is not None
        assert client.app[REGISTRY_KEY].connection_count == 1


async def test_same_identity_replaces_and_old_client_is_told(server: ServerFactory) -> None:
    client = await server(make_config())
    ident = Identity.generate()
    old = await connect(client, ident)
    async with await connect(client, ident) as new:
        assert await old.next_event(WAIT) == ServerError("replaced", "same peer connected again")
        gone = await old.next_event(WAIT)
        assert isinstance(gone, Disconnected)
        assert str(CLOSE_REPLACED) in gone.reason
        assert old.closed
        with pytest.raises(SignalingError):
            await old.join(room(1))
        assert await new.join(room(1)) == []
    await old.close()


async def test_server_shutdown_ends_event_stream() -> None:
    runner, port = await start_server(SignalingConfig(port=0))
    ident = Identity.generate()
    c = await SignalingClient.connect(f"ws://127.0.0.1:{port}/ws", ident.public_key, ident.sign)
    try:
        await runner.cleanup()
        events = [ev async for ev in c.events()]
        assert isinstance(events[-1], Disconnected)
    finally:
        await c.close()


async def test_turn_credentials_exposed(server: ServerFactory) -> None:
    turn = TurnConfig(urls=("turn:127.0.0.1:3478?transport=udp",), secret="k", ttl_s=120)
    client = await server(SignalingConfig(turn=turn))
    async with await connect(client) as a:
        assert a.turn is not None
        assert a.turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        assert a.turn["username"].endswith(":" + a.peer_id)
        assert a.turn["ttl_s"] == 120


def test_cli_help() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "signaling", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "--port" in out.stdout
