"""Scale-out over a real redis-server: several signaling instances share rooms.

Every test gets its own key prefix, so instances of different tests never see each other.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from signaling.app import HUB_KEY, start_server
from signaling.config import SignalingConfig
from signaling.registry import CLOSE_REPLACED
from tests.fixtures_services import RedisServer, free_port, redis_server

from .conftest import WAIT, Identity, RawPeer, room

__all__ = ["redis_server"]  # the fixture, re-exported for pytest

HEARTBEAT_S = 0.1
TTL_S = 0.5


@pytest.fixture
def base_config(redis_server: RedisServer) -> SignalingConfig:
    return SignalingConfig(
        host="127.0.0.1",
        port=0,
        redis_url=redis_server.url,
        redis_prefix=f"t{secrets.token_hex(4)}:",
        redis_heartbeat_s=HEARTBEAT_S,
        redis_ttl_s=TTL_S,
    )


Start = Callable[[], Awaitable[tuple[web.AppRunner, str]]]


@pytest.fixture
async def instance(base_config: SignalingConfig) -> AsyncIterator[Start]:
    """``await instance()`` -> (runner, base URL) of a new instance on the shared Redis; all stopped at teardown."""
    runners: list[web.AppRunner] = []

    async def start() -> tuple[web.AppRunner, str]:
        runner, port = await start_server(base_config)
        runners.append(runner)
        return runner, f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def connect(session: aiohttp.ClientSession, base: str, ident: Identity | None = None) -> RawPeer:
    peer = RawPeer(await session.ws_connect(f"{base}/ws"))
    peer.challenge = await peer.expect("challenge", v=1)
    if ident is not None:
        await peer.auth(ident)
    return peer


async def sees(runner: web.AppRunner, room_id: str, *peers: RawPeer) -> None:
    """Wait until ``runner``'s instance has ``peers`` in ``room_id`` (the bus is eventually consistent)."""
    assert runner.app is not None
    hub = runner.app[HUB_KEY]
    assert hub.bus is not None
    await hub.bus.wait_for(lambda: {p.peer_id for p in peers} <= set(hub.registry.peers_in(room_id)), WAIT)


# --------------------------------------------------------------------------------- presence, signals


async def test_cross_instance_join_signal_leave(instance: Start, session: aiohttp.ClientSession) -> None:
    (_, url_a), (runner_b, url_b) = await instance(), await instance()
    alice = await connect(session, url_a, Identity.generate())
    bob = await connect(session, url_b, Identity.generate())
    assert await alice.join(room(1)) == []
    await sees(runner_b, room(1), alice)
    assert await bob.join(room(1)) == [alice.peer_id]
    await alice.expect("peer-joined", room=room(1), peer=bob.peer_id)
    await alice.signal(room(1), bob, '{"sdp":"offer"}')
    await bob.signal(room(1), alice, '{"sdp":"answer"}')
    await bob.send({"type": "leave", "room": room(1)})
    await bob.expect("left", room=room(1))
    await alice.expect("peer-left", room=room(1), peer=bob.peer_id)
    # the registry's rules hold across instances: bob is no longer a member for alice's instance
    await alice.send({"type": "signal", "room": room(1), "to": bob.peer_id, "payload": "x"})
    await alice.expect_error("unknown-peer", "signal")
    await bob.ws.close()


async def test_disconnect_on_one_instance_is_peer_left_on_the_other(
    instance: Start, session: aiohttp.ClientSession
) -> None:
    (_, url_a), (runner_b, url_b) = await instance(), await instance()
    alice = await connect(session, url_a, Identity.generate())
    bob = await connect(session, url_b, Identity.generate())
    for r in (room(1), room(2)):
        await alice.join(r)
        await sees(runner_b, r, alice)
        assert await bob.join(r) == [alice.peer_id]
        await alice.expect("peer-joined", room=r, peer=bob.peer_id)
    await bob.ws.close()
    left = {(await alice.expect("peer-left", peer=bob.peer_id))["room"] for _ in range(2)}
    assert left == {room(1), room(2)}


async def test_three_instances_one_room(instance: Start, session: aiohttp.ClientSession) -> None:
    started = [await instance() for _ in range(3)]
    peers = [await connect(session, u, Identity.generate()) for _, u in started]
    for i, p in enumerate(peers):
        await sees(started[i][0], room(7), *peers[:i])
        assert sorted(await p.join(room(7))) == sorted(q.peer_id for q in peers[:i])
        for q in peers[:i]:
            await q.expect("peer-joined", room=room(7), peer=p.peer_id)
    for p in peers:
        for q in peers:
            if p is not q:
                await p.signal(room(7), q, f"{p.peer_id[:4]}->{q.peer_id[:4]}")


async def test_instance_started_later_sees_existing_members(
    instance: Start, session: aiohttp.ClientSession
) -> None:
    _, url_a = await instance()
    alice = await connect(session, url_a, Identity.generate())
    await alice.join(room(3))
    await alice.join(room(4))
    _, url_b = await instance()  # loads alice from A's state in Redis, before it serves anyone
    bob = await connect(session, url_b, Identity.generate())
    assert await bob.join(room(3)) == [alice.peer_id]
    assert await bob.join(room(4)) == [alice.peer_id]
    await alice.expect("peer-joined", room=room(3), peer=bob.peer_id)
    await alice.expect("peer-joined", room=room(4), peer=bob.peer_id)
    await bob.signal(room(4), alice, "hello from a newer instance")


async def test_room_full_counts_members_of_every_instance(
    base_config: SignalingConfig, session: aiohttp.ClientSession
) -> None:
    from signaling.config import Limits

    config = replace(base_config, limits=replace(Limits(), max_peers_per_room=2))
    runners = [await start_server(config) for _ in range(2)]
    try:
        a, b = (f"http://127.0.0.1:{port}" for _, port in runners)
        p1 = await connect(session, a, Identity.generate())
        p2 = await connect(session, b, Identity.generate())
        await p1.join(room(1))
        await sees(runners[1][0], room(1), p1)
        await p2.join(room(1))
        await p1.expect("peer-joined", peer=p2.peer_id)
        p3 = await connect(session, a, Identity.generate())
        await p3.send({"type": "join", "room": room(1)})
        await p3.expect_error("room-full", "join")
    finally:
        for runner, _ in runners:
            await runner.cleanup()


# --------------------------------------------------------------------------------- replacement


async def test_reconnect_to_another_instance_replaces_the_old_connection(
    instance: Start, session: aiohttp.ClientSession
) -> None:
    (_, url_a), (runner_b, url_b) = await instance(), await instance()
    carol = await connect(session, url_a, Identity.generate())
    bob_id = Identity.generate()
    bob_old = await connect(session, url_b, bob_id)
    await carol.join(room(1))
    await sees(runner_b, room(1), carol)
    await bob_old.join(room(1))
    await carol.expect("peer-joined", room=room(1), peer=bob_id.peer_id)

    bob_new = await connect(session, url_a, bob_id)  # same key, the other instance
    await bob_old.expect_error("replaced")
    await bob_old.expect_closed(CLOSE_REPLACED)
    await carol.expect("peer-left", room=room(1), peer=bob_id.peer_id)
    assert await bob_new.join(room(1)) == [carol.peer_id]
    await carol.expect("peer-joined", room=room(1), peer=bob_id.peer_id)
    await carol.signal(room(1), bob_new, "to the new connection")

    bob_newest = await connect(session, url_b, bob_id)  # and back again
    await bob_new.expect_error("replaced")
    await bob_new.expect_closed(CLOSE_REPLACED)
    await carol.expect("peer-left", room=room(1), peer=bob_id.peer_id)
    await sees(runner_b, room(1), carol)
    assert await bob_newest.join(room(1)) == [carol.peer_id]
    await carol.expect("peer-joined", room=room(1), peer=bob_id.peer_id)
    await bob_newest.signal(room(1), carol, "from the newest")


# --------------------------------------------------------------------------------- failure


@pytest.fixture
async def subprocess_instance(
    base_config: SignalingConfig,
) -> AsyncIterator[Callable[[], Awaitable[tuple[Any, str]]]]:
    """``await start()`` -> (process, base URL): ``python -m signaling`` on the shared Redis, killable."""
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> tuple[asyncio.subprocess.Process, str]:
        port = free_port()
        assert base_config.redis_url is not None
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "signaling", "--no-web", "--port", str(port), "--redis", base_config.redis_url),
            *("--redis-prefix", base_config.redis_prefix, "--redis-heartbeat", str(HEARTBEAT_S)),
            *("--redis-ttl", str(TTL_S)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stderr is not None
        seen: list[bytes] = []
        while b"Running on" not in (seen[-1] if seen else b""):  # logged once the socket listens
            line = await asyncio.wait_for(proc.stderr.readline(), 15.0)
            assert line, f"signaling subprocess exited: {b''.join(seen)!r}"
            seen.append(line)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_killed_instance_peers_vanish_within_the_bound(
    instance: Start,
    subprocess_instance: Callable[[], Awaitable[tuple[asyncio.subprocess.Process, str]]],
    base_config: SignalingConfig,
    session: aiohttp.ClientSession,
) -> None:
    runner, url_a = await instance()
    proc, url_b = await subprocess_instance()
    alice = await connect(session, url_a, Identity.generate())
    bob = await connect(session, url_b, Identity.generate())
    await alice.join(room(1))
    await bob.join(room(1))
    await alice.expect("peer-joined", room=room(1), peer=bob.peer_id)
    assert runner.app is not None
    bus = runner.app[HUB_KEY].bus
    assert bus is not None
    assert len(bus.instances) == 1

    proc.send_signal(signal.SIGKILL)  # no bye, no gone: only the TTL tells
    killed = time.monotonic()
    frame = await alice.expect("peer-left", room=room(1), peer=bob.peer_id)
    elapsed = time.monotonic() - killed
    assert frame["peer"] == bob.peer_id
    assert elapsed <= base_config.redis_dead_bound_s + 0.5, elapsed
    assert bus.instances == []
    health = await (await session.get(f"{url_a}/healthz")).json()
    assert health == {"ok": True, "connections": 1, "rooms": 1}


async def test_graceful_stop_says_bye(instance: Start, session: aiohttp.ClientSession) -> None:
    _, url_a = await instance()
    runner_b, url_b = await instance()
    alice = await connect(session, url_a, Identity.generate())
    bob = await connect(session, url_b, Identity.generate())
    await alice.join(room(1))
    await bob.join(room(1))
    await alice.expect("peer-joined", peer=bob.peer_id)
    await runner_b.cleanup()
    await alice.expect("peer-left", room=room(1), peer=bob.peer_id)


# --------------------------------------------------------------------------------- bad input


async def test_bad_client_input_is_answered_as_before(
    instance: Start, session: aiohttp.ClientSession
) -> None:
    (_, url_a), (runner_b, url_b) = await instance(), await instance()
    alice = await connect(session, url_a, Identity.generate())
    bob = await connect(session, url_b, Identity.generate())
    await alice.join(room(1))
    await sees(runner_b, room(1), alice)
    await bob.join(room(1))
    await alice.expect("peer-joined", peer=bob.peer_id)
    await alice.send("not json")
    await alice.expect_error("bad-json")
    await alice.send({"type": "join", "room": "NOT-HEX"})
    await alice.expect_error("bad-room", "join")
    await alice.send({"type": "signal", "room": room(2), "to": bob.peer_id, "payload": "x"})
    await alice.expect_error("not-in-room", "signal")
    await alice.send({"type": "signal", "room": room(1), "to": "0" * 32, "payload": "x"})
    await alice.expect_error("unknown-peer", "signal")
    await alice.send({"type": "auth", "pubkey": "AA", "sig": "AA"})
    await alice.expect_error("bad-frame", "auth")
    stranger = await connect(session, url_b)
    await stranger.send({"type": "join", "room": room(1)})
    await stranger.expect_error("not-authenticated", "join")
    await alice.signal(room(1), bob, "still fine")


async def test_malformed_bus_messages_are_dropped(
    instance: Start, base_config: SignalingConfig, session: aiohttp.ClientSession
) -> None:
    runner_a, url_a = await instance()
    runner_b, url_b = await instance()
    assert runner_a.app is not None
    bus = runner_a.app[HUB_KEY].bus
    assert bus is not None
    client = aioredis.from_url(base_config.redis_url or "")
    try:
        garbage: list[str | bytes] = [
            b"\xff\xfe",
            "[]",
            "{",
            json.dumps({"i": "x", "q": 1, "k": "join"}),
            json.dumps({"i": "0" * 16, "q": 1, "k": "nope", "c": 1}),
            json.dumps(
                {
                    "i": "0" * 16,
                    "q": 1,
                    "k": "auth",
                    "c": 1,
                    "p": "0" * 32,
                    "pk": "AA",
                    "n": "AA",
                    "s": "A",
                    "t": 1,
                }
            ),
        ]
        for g in garbage:
            await client.publish(f"{base_config.redis_prefix}bus", g)
        await client.publish(f"{base_config.redis_prefix}to:{bus.iid}", '{"c":1,"p":"x","f":{}}')
        # A forged auth (signature not by that key) never becomes a member.
        forged = Identity.generate()
        victim = Identity.generate()
        await client.publish(
            f"{base_config.redis_prefix}bus",
            json.dumps(
                {
                    "i": "f" * 16, "q": 1, "k": "auth", "c": 1, "p": victim.peer_id,
                    "pk": _b64(victim.public_key), "n": _b64(b"\0" * 32), "s": _b64(forged.sign(b"x")), "t": 1,
                }
            ),
        )  # fmt: skip
    finally:
        await client.aclose()
    alice = await connect(session, url_a, Identity.generate())
    bob = await connect(session, url_b, Identity.generate())
    await alice.join(room(1))
    await sees(runner_b, room(1), alice)
    await bob.join(room(1))
    await alice.expect("peer-joined", peer=bob.peer_id)  # bus still works, after every bad message
    await alice.signal(room(1), bob, "ok")
    assert bus.bad_messages >= len(garbage) + 1
    assert victim.peer_id not in runner_a.app[HUB_KEY].registry.peers_in(room(1))
    metrics = await (await session.get(f"{url_a}/metrics")).text()
    assert "ephemesh_signaling_remote_connections 1" in metrics


def _b64(data: bytes) -> str:
    from signaling.protocol import b64u_encode

    return b64u_encode(data)


async def test_without_redis_nothing_changes() -> None:
    runner, _port = await start_server(SignalingConfig(port=0))
    try:
        assert runner.app is not None
        assert runner.app[HUB_KEY].bus is None
    finally:
        await runner.cleanup()


def test_wait_bound_is_smaller_than_the_test_wait() -> None:
    assert SignalingConfig(redis_heartbeat_s=HEARTBEAT_S, redis_ttl_s=TTL_S).redis_dead_bound_s < WAIT


def test_command_line_flags_build_the_config() -> None:
    from signaling.__main__ import build_config

    config = build_config(
        [
            "--port",
            "0",
            "--no-web",
            "--redis",
            "redis://127.0.0.1:1/0",
            "--redis-ttl",
            "3",
            "--turn-url",
            "turn:h:3478",
        ],
        {"EPHEMESH_TURN_SECRET": "s3cret"},
    )
    assert config.redis_url == "redis://127.0.0.1:1/0"
    assert config.redis_ttl_s == 3.0
    assert config.web_root is None
    assert config.turn is not None
    assert config.turn.urls == ("turn:h:3478",)
    assert config.turn.secret == "s3cret"
    with pytest.raises(SystemExit):
        build_config(["--turn-url", "turn:h:3478"], {})  # a TURN URL without a secret
    with pytest.raises(SystemExit):
        build_config(["--redis-ttl", "1", "--redis-heartbeat", "1"], {})  # TTL must outlive two heartbeats
