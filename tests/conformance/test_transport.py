"""One behavioural suite for every Transport implementation (see conftest.TRANSPORT_FACTORIES)."""

from __future__ import annotations

import asyncio

import pytest

from peer.net.transport import Transport, TransportClosed

TransportPair = tuple[Transport, Transport]

TIMEOUT = 30.0


async def _collect(t: Transport, n: int) -> list[bytes]:
    out: list[bytes] = []
    async with asyncio.timeout(TIMEOUT):
        async for frame in t:
            out.append(frame)
            if len(out) == n:
                break
    return out


async def test_ids_and_protocol(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    assert isinstance(a, Transport)
    assert a.remote_id == b.peer_id
    assert b.remote_id == a.peer_id
    assert not a.closed
    assert a.max_message_size >= 65_536


async def test_order_preserved(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    frames = [i.to_bytes(4, "big") * (1 + i % 7) for i in range(200)]
    for f in frames:
        await a.send(f)
    assert await _collect(b, len(frames)) == frames


async def test_max_size_frame_passes(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    big = bytes(range(256)) * (a.max_message_size // 256) + b"x" * (a.max_message_size % 256)
    assert len(big) == a.max_message_size
    await a.send(big)
    assert await _collect(b, 1) == [big]


async def test_oversize_frame_raises_value_error(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    with pytest.raises(ValueError):
        await a.send(b"\0" * (a.max_message_size + 1))
    await a.send(b"still usable")
    assert await _collect(b, 1) == [b"still usable"]


async def test_close_ends_remote_iteration_after_pending_frames(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    await a.send(b"one")
    await a.send(b"two")
    await a.close()
    got: list[bytes] = []
    async with asyncio.timeout(TIMEOUT):
        async for frame in b:
            got.append(frame)
        await b.wait_closed()
    assert got == [b"one", b"two"]
    assert a.closed
    assert b.closed


async def test_send_after_close_raises(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    await a.close()
    with pytest.raises(TransportClosed):
        await a.send(b"late")
    async with asyncio.timeout(TIMEOUT):
        await b.wait_closed()
    with pytest.raises(TransportClosed):
        await b.send(b"late")
    await a.close()  # idempotent


async def test_many_frames(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    n = 1_000
    for i in range(n):
        await a.send(i.to_bytes(4, "big"))
    got = await _collect(b, n)
    assert [int.from_bytes(f, "big") for f in got] == list(range(n))


async def test_bidirectional_concurrency(transport_pair: TransportPair) -> None:
    a, b = transport_pair
    n = 1_000

    async def pump(src: Transport, tag: bytes) -> None:
        for i in range(n):
            await src.send(tag + i.to_bytes(4, "big"))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(pump(a, b"A"))
        tg.create_task(pump(b, b"B"))
        got_b = tg.create_task(_collect(b, n))
        got_a = tg.create_task(_collect(a, n))
    assert got_b.result() == [b"A" + i.to_bytes(4, "big") for i in range(n)]
    assert got_a.result() == [b"B" + i.to_bytes(4, "big") for i in range(n)]
