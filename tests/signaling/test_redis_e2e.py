"""End to end over Redis scale-out: two real Peers (aiortc, SQLite) on two signaling instances chat."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import Peer
from signaling.app import start_server
from signaling.config import SignalingConfig
from tests.fixtures_services import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, re-exported for pytest

WAIT = 20.0


@pytest.fixture
async def two_urls(redis_server: RedisServer) -> AsyncIterator[tuple[str, str]]:
    config = SignalingConfig(port=0, redis_url=redis_server.url, redis_prefix=f"e2e{secrets.token_hex(4)}:")
    started = [await start_server(config) for _ in range(2)]
    try:
        a, b = (f"http://127.0.0.1:{port}" for _, port in started)
        yield a, b
    finally:
        for runner, _ in started:
            await runner.cleanup()


@pytest.mark.timeout(60)
async def test_peers_on_different_instances_chat(two_urls: tuple[str, str], tmp_path: Path) -> None:
    url_a, url_b = two_urls
    invite_a = Invite.new(url_a)
    invite_b = Invite(url_b, invite_a.secret)  # the same room, reached through the other instance
    assert invite_b.room_id == invite_a.room_id
    alice, bob = Peer(home=tmp_path / "alice"), Peer(home=tmp_path / "bob")
    try:
        aroom = await alice.join(invite_a)
        broom = await bob.join(invite_b)
        await aroom.wait_for(lambda: bob.peer_id in aroom.online_members(), WAIT)
        msg = await aroom.send("hello across instances")
        assert await aroom.wait_delivered(msg.id, WAIT) == {bob.peer_id}
        await broom.send("hello back")
        await aroom.wait_for(lambda: len(aroom.messages()) == 2, WAIT)
        assert [m.text for m in broom.messages()] == [m.text for m in aroom.messages()]
    finally:
        await alice.close()
        await bob.close()
