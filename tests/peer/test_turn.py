"""TURN relaying through a real coturn, with credentials minted by the signaling server.

The signaling server is configured with coturn's ``static-auth-secret``; it hands every peer short-lived
REST credentials in ``welcome``. The peers then run ICE with ``iceTransportPolicy="relay"``: they gather
relay candidates only, so the data channel can only open through coturn.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aioice
import nacl.signing
import pytest

from peer.core.invite import Invite
from peer.net.rtc import rtc_configuration
from peer.net.signaling import SignalingClient
from peer.node import Peer
from signaling.app import start_server
from signaling.config import SignalingConfig, TurnConfig
from tests.fixtures_services import TurnServer, turn_server

__all__ = ["turn_server"]  # the fixture, re-exported for pytest

WAIT = 20.0


@pytest.fixture
async def turn_signaling(turn_server: TurnServer) -> AsyncIterator[str]:
    """A signaling server that mints credentials for ``turn_server``; its http:// base URL."""
    turn = TurnConfig(urls=(turn_server.url,), secret=turn_server.secret, ttl_s=600)
    runner, port = await start_server(SignalingConfig(port=0, turn=turn))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def minted(url: str) -> dict[str, str]:
    key = nacl.signing.SigningKey.generate()
    client = await SignalingClient.connect(url, bytes(key.verify_key), lambda m: bytes(key.sign(m).signature))
    try:
        turn = client.turn
        assert turn is not None
        assert turn["urls"]
        assert isinstance(turn["username"], str)
        assert isinstance(turn["credential"], str)
        return {"url": turn["urls"][0], "username": turn["username"], "credential": turn["credential"]}
    finally:
        await client.close()


async def test_minted_credentials_allocate_a_relay_on_coturn(
    turn_server: TurnServer, turn_signaling: str
) -> None:
    turn = await minted(turn_signaling)
    assert turn["url"] == turn_server.url
    conn = aioice.Connection(
        ice_controlling=True,
        turn_server=("127.0.0.1", turn_server.port),
        turn_username=turn["username"],
        turn_password=turn["credential"],
        turn_transport="udp",
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        relays = [c for c in conn.local_candidates if c.type == "relay"]
        assert [c.type for c in conn.local_candidates] == ["relay"]
        assert relays[0].host == "127.0.0.1"
        assert turn_server.min_port <= relays[0].port <= turn_server.max_port
    finally:
        await conn.close()


async def test_wrong_secret_is_refused_by_coturn(turn_server: TurnServer, turn_signaling: str) -> None:
    turn = await minted(turn_signaling)
    conn = aioice.Connection(
        ice_controlling=True,
        turn_server=("127.0.0.1", turn_server.port),
        turn_username=turn["username"],
        turn_password="AAAA" + turn["credential"][4:],
        turn_transport="udp",
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        assert conn.local_candidates == []  # the allocation was refused (401), nothing to offer
    finally:
        await conn.close()


def test_relay_policy_needs_a_turn_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPHEMESH_ICE_POLICY", "relay")
    assert rtc_configuration(None).iceTransportPolicy.value == "all"
    turn = {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "c"}
    assert rtc_configuration(turn).iceTransportPolicy.value == "relay"
    monkeypatch.delenv("EPHEMESH_ICE_POLICY")
    assert rtc_configuration(turn).iceTransportPolicy.value == "all"
    assert rtc_configuration({**turn, "policy": "relay"}).iceTransportPolicy.value == "relay"


@pytest.mark.timeout(60)
async def test_two_peers_chat_through_coturn_relay_only(
    turn_server: TurnServer, turn_signaling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPHEMESH_ICE_POLICY", "relay")  # relay candidates only: no direct path can exist
    log_start = turn_server.log.stat().st_size
    invite = Invite.new(turn_signaling).url()
    alice, bob = Peer(home=tmp_path / "alice"), Peer(home=tmp_path / "bob")
    try:
        aroom = await alice.join(invite)
        broom = await bob.join(invite)
        await aroom.wait_for(lambda: broom.peer_id in aroom.online_members(), WAIT)
        msg = await aroom.send("through the relay")
        assert await aroom.wait_delivered(msg.id, WAIT) == {bob.peer_id}
        await broom.send("and back")
        await aroom.wait_for(
            lambda: [m.text for m in aroom.messages()] == ["through the relay", "and back"], WAIT
        )
    finally:
        await alice.close()
        await bob.close()
    with turn_server.log.open("rb") as f:
        f.seek(log_start)
        log = f.read().decode(errors="replace")
    # coturn allocated a relay for each peer, authenticated by the minted REST username "<expiry>:<peer id>"
    for peer in (alice.peer_id, bob.peer_id):
        assert re.search(rf"user <\d+:{peer}>", log), f"no allocation by {peer} in the coturn log"
    assert log.count("ALLOCATE processed, success") >= 2
    assert log.count("CHANNEL_BIND processed, success") >= 2  # each side relays to the other's relay address
