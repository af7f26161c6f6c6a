"""A hello from a neighbour over a link of ours that opened but never finished the room handshake drops
that link (the neighbour's end is gone); before, only a link that had become ready was dropped, and the
neighbour's hellos were ignored until ICE consent ended our end (~30 s). A link younger than
``HELLO_STALE_S`` survives a hello (it may have crossed a late one), and so does one whose handshake
finished less than ``HELLO_STALE_S`` ago."""

from __future__ import annotations

import asyncio

import pytest

from peer.core.identity import Identity
from peer.net import mesh as mesh_module
from peer.net.linkstate import RedialPolicy
from peer.net.mesh import RoomMesh


class FakeLink:
    """Just what the mesh reads of a transport."""

    def __init__(self, remote: str) -> None:
        self.remote_id = remote
        self.path = ("host", "host")
        self._closed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()


def _mesh(me: str, down: asyncio.Event | None = None) -> RoomMesh:
    async def send_signal(to: str, payload: str) -> None:
        pass

    return RoomMesh(
        me,
        lambda to, kind, body: kind,
        lambda sender, payload: (payload, {}),
        send_signal,
        lambda peer, link: None,
        lambda peer: down.set() if down is not None else None,
        ice=[],
        connect_timeout=5.0,
        policy=RedialPolicy(base_s=30.0),  # no redial during the test
    )


def _ids() -> tuple[str, str]:
    me, other = sorted(Identity.generate().peer_id for _ in range(2))  # we are the lower id: we offer
    return me, other


async def test_hello_over_a_link_that_never_became_ready_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_module, "HELLO_STALE_S", 0.0)
    me, other = _ids()
    down = asyncio.Event()
    mesh = _mesh(me, down)
    try:
        mesh.peer_joined(other)
        link = FakeLink(other)
        mesh._link_ready(link)  # type: ignore[arg-type]  # the channel opened; no room handshake yet
        await mesh.handle_signal(other, "hello")  # it says it holds no link to us
        async with asyncio.timeout(5):
            await link.wait_closed()
            await down.wait()  # the mesh forgot it (and redials)
        assert other not in mesh.links
    finally:
        await mesh.close()


@pytest.mark.parametrize("handshake_done", [False, True])
async def test_hello_over_a_young_link_keeps_it(handshake_done: bool) -> None:
    me, other = _ids()
    mesh = _mesh(me)
    try:
        mesh.peer_joined(other)
        link = FakeLink(other)
        mesh._link_ready(link)  # type: ignore[arg-type]
        if handshake_done:
            mesh.link_ready(other)
        await mesh.handle_signal(other, "hello")  # within HELLO_STALE_S (1 s): may have crossed
        await asyncio.sleep(0)  # a drop would have been spawned by now
        assert not link.closed
        assert mesh.links[other] is link  # type: ignore[comparison-overlap]
    finally:
        await mesh.close()
