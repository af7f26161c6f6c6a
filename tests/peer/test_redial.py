"""Bounded redial: a peer whose handshake always fails costs the others a few set-ups, not a storm.

Real aiortc connections on loopback through a real signaling server. The hostile peer closes every data
channel the moment it opens (so the room handshake never finishes). The redial policy is scaled down
(0.2 s doubling to 1.6 s) so that a few seconds show what a minute does with the default policy
(1 s doubling to 60 s); ``RedialPolicy.max_attempts`` is the bound both sides must stay under. Before
this bound existed the dialling side re-offered ~24 times a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.net.linkstate import Link, Reason, RedialPolicy
from peer.net.mesh import HELLO_BURST, HELLO_RATE, RoomMesh
from peer.node import LinkChanged, Peer, RoomHandle
from tests.waiting import holds_for, poll

pytestmark = pytest.mark.timeout(60)

FAST = RedialPolicy(base_s=0.2, cap_s=1.6)
WINDOW = 6.0


def peers_in_order(tmp_path: Path) -> tuple[Peer, Peer]:
    """Two peers, the first with the lower id (the offerer)."""
    a, b = Peer(home=tmp_path / "a"), Peer(home=tmp_path / "b")
    return (a, b) if a.peer_id < b.peer_id else (b, a)


def make_hostile(room: RoomHandle, counter: dict[str, int]) -> None:
    """Close every link as soon as it opens; count the offers that arrive."""
    mesh = room.mesh
    assert mesh is not None
    opener = mesh._open

    def counting_open(sender: str, payload: str) -> tuple[str, dict[str, Any]]:
        kind, body = opener(sender, payload)
        counter[kind] = counter.get(kind, 0) + 1
        return kind, body

    mesh._open = counting_open
    mesh._on_up = lambda peer, link: mesh._spawn(link.close())
    mesh.policy = RedialPolicy(base_s=0.0, cap_s=0.0)  # it answers every offer at once, and re-offers


@pytest.fixture
async def pair(tmp_path: Path, signaling_url: str) -> AsyncIterator[tuple[Peer, Peer, str]]:
    low, high = peers_in_order(tmp_path)
    try:
        yield low, high, Invite.new(signaling_url).url()
    finally:
        await low.close()
        await high.close()


async def test_offers_to_a_peer_whose_handshake_always_fails_are_bounded(
    pair: tuple[Peer, Peer, str],
) -> None:
    honest, hostile, invite = pair
    hroom = await hostile.join(invite)
    counter: dict[str, int] = {}
    make_hostile(hroom, counter)
    room = await honest.join(invite)
    assert room.mesh is not None
    room.mesh.policy = FAST
    start = time.monotonic()
    states: list[Any] = []

    async def watch() -> None:
        async for ev in room.events():
            if isinstance(ev, LinkChanged):
                states.append(ev.link)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(WINDOW)  # the measurement window itself, not synchronisation
    watcher.cancel()
    offers = counter.get("offer", 0)
    bound = FAST.max_attempts(time.monotonic() - start)
    assert 2 <= offers <= bound, (offers, bound)
    refused = [s for s in states if s.state == Link.UNREACHABLE]
    assert refused, states
    assert all(s.reason == Reason.HANDSHAKE_REFUSED for s in refused)
    link = room.link(hostile.peer_id)
    assert link is not None
    assert link.state in (Link.UNREACHABLE, Link.CONNECTING)
    assert link.failures >= 2


async def test_a_hostile_offerer_gets_few_answers(pair: tuple[Peer, Peer, str]) -> None:
    hostile, honest, invite = pair  # the hostile peer has the lower id: it offers
    room = await honest.join(invite)
    assert room.mesh is not None
    room.mesh.policy = FAST
    hroom = await hostile.join(invite)
    assert hroom.mesh is not None
    make_hostile(hroom, {})
    hroom.mesh.connector._timeout = 0.5  # and gives up fast on offers we drop
    start = time.monotonic()
    await asyncio.sleep(WINDOW)  # the measurement window
    answered = room.mesh.connector.offers_answered
    bound = FAST.max_attempts(time.monotonic() - start)
    assert hroom.mesh.offers_sent > answered  # it tried harder than we let it
    assert 2 <= answered <= bound, (answered, bound, hroom.mesh.offers_sent)


async def test_1200_announced_peers_cost_a_bounded_number_of_connections() -> None:
    # Our id sits in the middle: whichever 1,024 of the announced peers the mesh keeps (it ignores the
    # rest), hundreds are above us (we offer to them) and hundreds below (we nudge them). A sorted list
    # with a random ``me`` left nothing to dial ~15% of the time (all kept peers below us).
    ids = sorted({Identity.generate().peer_id for _ in range(1201)})
    me = ids.pop(len(ids) // 2)
    fake = ids[::2] + ids[1::2]  # interleaved: the first 1,024 announced straddle ``me``
    sent: list[tuple[str, str]] = []

    async def send_signal(to: str, payload: str) -> None:
        sent.append((to, payload))

    max_dials = 8
    mesh = RoomMesh(
        me,
        lambda to, kind, body: kind,
        lambda sender, payload: (payload, {}),
        send_signal,
        lambda peer, link: None,
        lambda peer: None,
        ice=[],
        connect_timeout=1.0,
    )
    try:
        started = time.monotonic()
        mesh.set_present(fake)
        await poll(lambda: mesh.connector.max_pending_seen > 0, 20)  # a gauge: no event to wait on
        mesh.offers_sent = 0
        window = time.monotonic()

        def over_the_bounds() -> bool:
            # each slot makes at most one offer per connect timeout (1 s): 8 at a time, not 1,200
            offers_allowed = max_dials * ((time.monotonic() - window) / 1.0 + 1)
            return mesh.connector.max_pending_seen > max_dials or mesh.offers_sent > offers_allowed

        await holds_for(over_the_bounds, 2.5)  # the observation window: more than two connect timeouts
        assert 0 < mesh.connector.max_pending_seen <= max_dials
        hellos = [p for p, kind in sent if kind == "hello"]
        lower = sum(1 for p in fake if p < me)
        assert len(fake) - lower > 100  # there were plenty of peers to nudge...
        assert len(hellos) <= HELLO_BURST + HELLO_RATE * (time.monotonic() - started) + 1  # ...not one each
    finally:
        await mesh.close()
