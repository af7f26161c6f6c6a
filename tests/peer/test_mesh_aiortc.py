"""Two real Python peers meet through the real signaling server and open an aiortc data channel.

Signaling payloads are sealed for the room and signed (peer.core.signal); the lower id offers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.signal import ReplayCache, open_signal, seal_signal
from peer.net.mesh import RoomMesh
from peer.net.rtc import RtcTransport
from peer.net.signaling import SignalingClient, SignalReceived

WAIT = 20.0


def now_ms() -> int:
    return int(asyncio.get_running_loop().time() * 0) + int(__import__("time").time() * 1000)


@dataclass
class Side:
    identity: Identity
    invite: Invite
    client: SignalingClient
    links: asyncio.Queue[RtcTransport] = field(default_factory=asyncio.Queue)
    replay: ReplayCache = field(default_factory=ReplayCache)
    mesh: RoomMesh | None = None
    pump: asyncio.Task[None] | None = None

    def seal(self, to: str, kind: str, body: dict[str, object]) -> str:
        return seal_signal(self.identity, self.invite, to, kind, body, now_ms())

    def open(self, sender: str, payload: str) -> tuple[str, dict[str, object]]:
        opened = open_signal(self.invite, self.identity.peer_id, sender, payload, now_ms(), self.replay)
        assert isinstance(opened.body, dict)
        return opened.kind, opened.body


async def make_side(url: str, invite: Invite) -> Side:
    identity = Identity.generate()
    client = await SignalingClient.connect(url, identity.public_key, identity.sign)
    side = Side(identity, invite, client)
    room = invite.room_id
    side.mesh = RoomMesh(
        identity.peer_id,
        side.seal,
        side.open,
        lambda to, payload: client.signal(room, to, payload),
        lambda peer, link: side.links.put_nowait(link),
        lambda peer: None,
    )

    async def pump() -> None:
        assert side.mesh is not None
        async for ev in client.events():
            if isinstance(ev, SignalReceived):
                await side.mesh.handle_signal(ev.sender, ev.payload)
            elif type(ev).__name__ == "PeerJoined":
                side.mesh.peer_joined(ev.peer)  # type: ignore[union-attr]
            elif type(ev).__name__ == "PeerLeft":
                side.mesh.peer_left(ev.peer)  # type: ignore[union-attr]

    side.pump = asyncio.create_task(pump())
    side.mesh.set_present(await client.join(room))
    return side


async def close_side(side: Side) -> None:
    assert side.mesh is not None
    assert side.pump is not None
    await side.mesh.close()
    await side.client.close()
    side.pump.cancel()
    await asyncio.gather(side.pump, return_exceptions=True)


@pytest.mark.timeout(60)
async def test_two_python_peers_open_a_data_channel_via_the_server(signaling_url: str) -> None:
    invite = Invite.new(signaling_url)
    a = await make_side(signaling_url, invite)
    b = await make_side(signaling_url, invite)
    try:
        link_a = await asyncio.wait_for(a.links.get(), WAIT)
        link_b = await asyncio.wait_for(b.links.get(), WAIT)
        assert link_a.remote_id == b.identity.peer_id
        assert link_b.remote_id == a.identity.peer_id

        await link_a.send(b"hello from a")
        await link_b.send(b"hello from b")
        got_b = await asyncio.wait_for(anext(aiter(link_b)), WAIT)
        got_a = await asyncio.wait_for(anext(aiter(link_a)), WAIT)
        assert (got_a, got_b) == (b"hello from b", b"hello from a")

        big = bytes(range(256)) * 200  # 51,200 bytes: below the 64 KiB default limit
        await link_a.send(big)
        assert await asyncio.wait_for(anext(aiter(link_b)), WAIT) == big
        with pytest.raises(ValueError, match="exceeds"):
            await link_a.send(b"x" * (link_a.max_message_size + 1))
    finally:
        await close_side(a)
        await close_side(b)


@pytest.mark.timeout(60)
async def test_wrong_room_secret_never_links(signaling_url: str) -> None:
    """Same room id on the server but a different secret: payloads do not open, nothing connects."""
    good = Invite.new(signaling_url)
    a = await make_side(signaling_url, good)
    forged = Invite(good.server, bytes(32))
    b = await make_side(signaling_url, forged)
    try:
        # b joins its own (different) room id, so nothing relays; force it into a's room id instead.
        await b.client.join(good.room_id)
        assert b.mesh is not None
        b.mesh.peer_joined(a.identity.peer_id)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(a.links.get(), 3.0)
        assert a.links.empty()
        assert b.links.empty()
    finally:
        await close_side(a)
        await close_side(b)


async def test_aiortc_teardown_noise_is_filtered_and_nothing_else() -> None:
    from peer.net.rtc import quiet_aiortc_teardown

    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    try:
        quiet_aiortc_teardown(loop)
        quiet_aiortc_teardown(loop)  # idempotent

        class RTCSctpTransport:
            async def _send_chunk(self) -> None:
                raise ConnectionError("Cannot send encrypted data, not connected")

        coro = RTCSctpTransport()._send_chunk()
        fut = asyncio.ensure_future(coro)
        with pytest.raises(ConnectionError):
            await fut
        handler = loop.get_exception_handler()
        assert handler is not None
        handler(
            loop,
            {"message": "Task exception was never retrieved", "exception": fut.exception(), "future": fut},
        )
        assert seen == []
        other = {"message": "boom", "exception": RuntimeError("boom")}
        handler(loop, other)
        assert seen == [other]
    finally:
        loop.set_exception_handler(old)
