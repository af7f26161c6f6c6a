"""A hello from a peer we are backing off from still gets an offer once the backoff ends.

With signaling through the mesh, a hello can be all we hear of a peer (no server lists it); before,
the mesh added it to the present set without a dialer, and nothing dialed it until its next hello
(the connect timeout later: a 22 s A-C rebuild in tests/net/test_relay_mesh.py).
"""

from __future__ import annotations

import asyncio

from peer.core.identity import Identity
from peer.net.linkstate import Reason, RedialPolicy
from peer.net.mesh import RoomMesh


async def test_hello_in_backoff_is_answered_with_an_offer_when_it_ends() -> None:
    me, other = sorted(Identity.generate().peer_id for _ in range(2))  # we are the lower id: we offer
    sent: list[tuple[str, str]] = []
    offered = asyncio.Event()

    async def send_signal(to: str, payload: str) -> None:
        sent.append((to, payload))
        if payload == "offer":
            offered.set()

    mesh = RoomMesh(
        me,
        lambda to, kind, body: kind,
        lambda sender, payload: (payload, {}),
        send_signal,
        lambda peer, link: None,
        lambda peer: None,
        ice=[],
        connect_timeout=5.0,
        policy=RedialPolicy(base_s=0.3),
    )
    try:
        mesh._fail(other, Reason.TIMED_OUT)  # a link to it just dropped; nobody lists it
        assert other not in mesh.present
        await mesh.handle_signal(other, "hello")  # inside the backoff: not dialled at once...
        assert (other, "offer") not in sent
        async with asyncio.timeout(5):
            await offered.wait()  # ...but once the backoff has passed
        assert sent.count((other, "offer")) == 1
    finally:
        await mesh.close()
