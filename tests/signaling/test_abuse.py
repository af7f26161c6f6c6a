"""Hostile invite holders against the real signaling server on 127.0.0.1 (issue 13, item 10).

Each test reproduces one attack that used to work: text the server cannot encode, readers that never
read, half-sent HTTP requests and a flood split across many rate-limited connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from signaling.app import HUB_KEY, start_server
from signaling.config import SignalingConfig
from signaling.registry import CLOSE_POLICY, Send

from .conftest import WAIT, RawPeer, ServerFactory, make_config, room
from .test_app import assert_still_working, authed, bystanders

Client = TestClient[Any, Any]
Connector = Any
MB = 1024 * 1024


def _hub(client: Client) -> Any:
    assert client.app is not None
    return client.app[HUB_KEY]


async def _drained(peer: RawPeer) -> None:
    """Every frame ``peer`` sent before has been handled by the server (a ping is answered in order)."""
    await peer.send({"type": "ping"})
    while (await peer.recv())["type"] != "pong":
        pass


# ------------------------------------------------------------------------------ text the server cannot send


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"signal","room":"%(room)s","to":"%(to)s","payload":"\\ud800"}',  # lone high surrogate
        '{"type":"signal","room":"%(room)s","to":"%(to)s","payload":"ok\\udfff"}',  # lone low surrogate
        '{"type":"\\ud800"}',  # echoed back as the error's ref: would kill the sender's own writer
        '{"type":"ping","\\udc80":1}',  # even in an ignored member name
    ],
)
async def test_unencodable_text_is_refused_at_the_parser(
    server: ServerFactory, connector: Connector, raw: str
) -> None:
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    await a.send(raw % {"room": room(1), "to": b.peer_id})
    await a.expect_error("bad-json")
    await assert_still_working(a, b)  # both writers alive: b still receives, a still gets answers


async def test_one_unencodable_frame_never_kills_the_writer(
    server: ServerFactory, connector: Connector
) -> None:
    """Defence in depth: even if a bad frame reached the outbox, only that frame is dropped."""
    client = await server(make_config())
    a, b = await bystanders(connector, client)
    hub = _hub(client)
    conn_b = hub.registry.conn_of(b.peer_id)
    assert conn_b is not None
    hub.dispatch([Send(conn_b, {"type": "signal", "room": room(1), "from": a.peer_id, "payload": "\ud800"})])
    await assert_still_working(a, b)
    assert hub.dropped_frames == 1


# ------------------------------------------------------------------------------ memory held for non-readers


async def test_readers_that_never_read_hold_bounded_memory(
    server: ServerFactory, connector: Connector
) -> None:
    """10 connections that never read, 5 senders each blasting all of them: the queued bytes are capped
    per connection and globally, and the blast costs the server a bounded amount of memory."""
    cap, total = 256 * 1024, 1 * MB
    client = await server(
        make_config(
            rate_per_s=1e6,
            rate_burst=1_000_000,
            max_errors=1_000_000,
            send_queue_bytes=cap,
            sender_queue_bytes=64 * 1024,
            global_queue_bytes=total,
        )
    )
    senders = [await authed(connector, client) for _ in range(5)]
    stuck = [await authed(connector, client) for _ in range(10)]
    for peer in senders + stuck:
        await peer.join(room(1))
    for peer in senders:
        await _drained(peer)  # reads its peer-joined frames; the stuck ones never read again
    hub = _hub(client)
    payload = "p" * 60_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(8):  # 5 x 10 x 8 x 60 kB = 24 MB offered
            for s in senders:
                for t in stuck:
                    await s.send({"type": "signal", "room": room(1), "to": t.peer_id, "payload": payload})
        for s in senders:
            await _drained(s)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    queued = [hub.backlog_bytes_of(t.peer_id) for t in stuck]
    print(f"\nnever-reading x10: queued {sum(queued) / MB:.2f} MB, traced growth {grown / MB:.1f} MB")
    assert max(queued) <= cap
    assert hub.queued_bytes <= total
    assert grown < 8 * MB  # was ~24 MB: every frame offered stayed queued
    a, b = await bystanders(connector, client, room(2))
    await assert_still_working(a, b, room(2))


async def test_stalled_reader_is_dropped(server: ServerFactory, connector: Connector) -> None:
    """A connection whose writer makes no progress for ``stall_timeout_s`` is a slow consumer."""
    client = await server(
        SignalingConfig(
            stall_timeout_s=0.3,
            limits=make_config(
                rate_per_s=1e6,
                rate_burst=1_000_000,
                max_errors=1_000_000,  # the signals after the drop are unknown-peer errors
                send_queue_bytes=64 * MB,
                sender_queue_bytes=64 * MB,
                sender_queue_frames=1_000,
            ).limits,
        )
    )
    a, b = await bystanders(connector, client)
    stuck = await authed(connector, client)
    sender = await authed(connector, client)
    await stuck.join(room(1))
    await sender.join(room(1))
    payload = "p" * 60_000
    for _ in range(300):  # 18 MB: more than the socket buffers hold, so the writer blocks
        await sender.send({"type": "signal", "room": room(1), "to": stuck.peer_id, "payload": payload})
    while True:
        frame = await sender.recv()
        if frame["type"] == "peer-left" and frame["peer"] == stuck.peer_id:
            break
    for peer in (a, b):
        while (await peer.recv()).get("type") != "peer-left":
            pass
    await assert_still_working(a, b)
    metrics = await (await client.get("/metrics")).text()
    assert 'ephemesh_signaling_closes_total{code="slow-consumer"} 1' in metrics


# ------------------------------------------------------------------------------ a flood split over senders


async def test_many_senders_within_their_rate_cannot_get_a_reader_dropped(
    server: ServerFactory, connector: Connector
) -> None:
    """30 connections, each within the default rate limit, flood one victim that reads late: the
    victim stays, a real peer's signal still reaches it, and the flooders are refused (then cut)."""
    client = await server(make_config())  # defaults: 50/s, burst 100, 256 queued frames
    victim = await authed(connector, client)
    friend = await authed(connector, client)
    await victim.join(room(1))
    await friend.join(room(1))
    await victim.expect("peer-joined", peer=friend.peer_id)
    flooders = [await authed(connector, client) for _ in range(30)]
    for f in flooders:
        await f.join(room(1))
    # The victim does not read during the flood (a slow network); it reads everything afterwards.
    for f in flooders:
        for _ in range(98):  # within its burst of 100 (auth and join took 2)
            await f.send({"type": "signal", "room": room(1), "to": victim.peer_id, "payload": "x" * 10_000})
    for f in flooders:  # each was refused ("recipient-busy") and, past its error budget, cut
        codes = []
        while True:
            msg = await f.ws.receive(timeout=WAIT)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            codes.append(msg.json().get("code"))
        assert "recipient-busy" in codes
        assert f.ws.close_code == CLOSE_POLICY
    await friend.send({"type": "signal", "room": room(1), "to": victim.peer_id, "payload": "hello"})
    await _drained(friend)
    got_hello = False
    while not got_hello:
        frame = await victim.recv()  # fails with a close/timeout if the victim was dropped
        got_hello = frame["type"] == "signal" and frame["from"] == friend.peer_id
    await victim.send({"type": "ping"})
    while (await victim.recv())["type"] != "pong":
        pass
    await friend.signal(room(1), victim, "still linked")


# ------------------------------------------------------------------------------ connections per source


@contextlib.asynccontextmanager
async def _real_server(config: SignalingConfig) -> AsyncIterator[int]:
    runner, port = await start_server(config)
    try:
        yield port
    finally:
        await runner.cleanup()


def _half_request(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
    return sock


async def _read_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()

    def read() -> bytes:
        chunks = []
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks)

    return await asyncio.wait_for(loop.run_in_executor(None, read), WAIT)


async def _healthz(port: int, source: str) -> int:
    conn = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=conn) as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        return resp.status


async def test_half_sent_requests_from_one_source_cannot_lock_everyone_out() -> None:
    config = SignalingConfig(port=0, max_connections_per_source=8, header_timeout_s=0.5)
    async with _real_server(config) as port:
        socks = [_half_request(port) for _ in range(20)]
        try:
            answers = await asyncio.gather(*(_read_all(s) for s in socks[8:]))
            assert all(a.startswith(b"HTTP/1.1 503") for a in answers)  # refused cleanly, at once
            assert await _healthz(port, "127.0.0.2") == 200  # another source still gets in
            held = await asyncio.gather(*(_read_all(s) for s in socks[:8]))  # the header timeout
            assert all(not h.startswith(b"HTTP/1.1 2") for h in held)
            assert await _healthz(port, "127.0.0.1") == 200  # the source's slots were freed
        finally:
            for s in socks:
                s.close()


async def test_total_connections_are_capped() -> None:
    config = SignalingConfig(port=0, max_connections=6, max_connections_per_source=4, header_timeout_s=5)
    async with _real_server(config) as port:
        socks = [_half_request(port, "127.0.0.1") for _ in range(4)]
        socks += [_half_request(port, "127.0.0.2") for _ in range(2)]
        try:
            extra = _half_request(port, "127.0.0.3")
            socks.append(extra)
            assert (await _read_all(extra)).startswith(b"HTTP/1.1 503")
        finally:
            for s in socks:
                s.close()
