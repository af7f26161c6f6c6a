"""Several bootstraps per room (peer/net/bootstrap.py, peer/node.py) and ``keep --serve``'s endpoint, in
one process: real aiohttp signaling servers on 127.0.0.1:0, real aiortc, real SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from peer.core.invite import Invite
from peer.net.bootstrap import MAX_ROOM_SERVERS, RoomServers
from peer.node import Peer, PeerError
from signaling.app import start_server
from signaling.config import SignalingConfig

WAIT = 30.0


def test_room_servers_order_bound_and_presence() -> None:
    rs = RoomServers(["http://a", "http://b/"])
    assert rs.servers == ["http://a", "http://b"]
    assert rs.add(["http://b", "http://c"]) == ["http://c"]
    assert rs.add([f"http://x{i}" for i in range(10)]) == [
        f"http://x{i}" for i in range(MAX_ROOM_SERVERS - 3)
    ]
    assert len(rs.servers) == MAX_ROOM_SERVERS
    assert rs.refused == 10 - (MAX_ROOM_SERVERS - 3)
    assert rs.joined("http://a", "p1")  # new overall
    assert not rs.joined("http://b", "p1")  # listed already elsewhere
    assert not rs.left("http://a", "p1")  # b still lists it
    assert rs.route("p1", ["http://a", "http://b", "http://c"]) == ["http://b", "http://a", "http://c"]
    assert rs.route("p1", ["http://c"]) == ["http://c"]
    assert rs.left("http://b", "p1")
    assert rs.listing("http://a", ["p2", "p3"]) == (["p2", "p3"], [])
    assert rs.listing("http://a", []) == ([], ["p2", "p3"])  # a dropped: it lists nobody
    rs.joined("http://c", "p4")
    assert rs.remove("http://c") == ["p4"]
    assert "http://c" not in rs.servers


async def _server() -> tuple[aiohttp.web.AppRunner, str]:
    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.timeout(90)
async def test_a_dead_first_server_does_not_stop_a_join_and_peers_meet_on_the_second(tmp_path: Path) -> None:
    runner_b, url_b = await _server()
    dead = "http://127.0.0.1:9"  # nothing listens there
    invite = Invite.new(dead).with_servers([dead, url_b])
    try:
        async with Peer(home=tmp_path / "a") as a, Peer(home=tmp_path / "b") as b:
            ra = await a.join(invite)
            rb = await b.join(invite)
            assert ra.servers_in_use() == [url_b]
            await ra.wait_for(lambda: b.peer_id in ra.core.online(), WAIT)
            msg = await rb.send("through the second bootstrap")
            await ra.wait_for(lambda: any(m.id == msg.id for m in ra.messages()), WAIT)
    finally:
        await runner_b.cleanup()


@pytest.mark.timeout(60)
async def test_no_reachable_server_and_no_server_invites_are_one_clear_error(tmp_path: Path) -> None:
    async with Peer(home=tmp_path / "a") as a:
        with pytest.raises(PeerError, match="cannot reach any signaling server"):
            await a.join(
                Invite.new("http://127.0.0.1:9").with_servers(["http://127.0.0.1:9", "http://127.0.0.1:7"])
            )
        assert a.rooms == {}
        with pytest.raises(PeerError, match="--lan"):
            await a.join(Invite.new(None))


@pytest.mark.timeout(90)
async def test_keeper_endpoint_is_a_bootstrap_with_the_servers_hardening(
    tmp_path: Path, signaling_url: str
) -> None:
    invite = Invite.new(signaling_url)
    async with Peer(home=tmp_path / "k", serve="127.0.0.1:0") as keeper:
        await keeper.join(invite, keeper=True)
        served = keeper.serve_url
        assert served is not None
        assert served.startswith("http://127.0.0.1:")
        assert served in keeper.rooms[invite.room_id].servers_in_use()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{served}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{served}/") as r:  # the web client, for browsers
                assert r.status == 200
                assert "<html" in (await r.text()).lower()
            async with http.get(f"{served}/test.html") as r:  # test pages off, as in production
                assert r.status == 404
            async with http.ws_connect(f"{served}/ws") as ws:  # bad input: an error frame, not a crash
                challenge = json.loads((await ws.receive()).data)
                assert challenge["type"] == "challenge"
                await ws.send_str("{not json")
                reply = await ws.receive()
                assert reply.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.CLOSE)
        # a member whose invite lists only the keeper's endpoint reaches the keeper through it
        only_keeper = invite.with_servers([served])
        assert only_keeper.room_id == invite.room_id
        async with Peer(home=tmp_path / "m") as member:
            room = await member.join(only_keeper)
            assert room.servers_in_use() == [served]
            await room.wait_for(lambda: keeper.peer_id in room.mesh.links if room.mesh else False, WAIT)


@pytest.mark.timeout(30)
async def test_serve_refuses_a_bad_address(tmp_path: Path) -> None:
    with pytest.raises(PeerError, match="HOST:PORT"):
        async with Peer(home=tmp_path / "k", serve="nonsense"):
            pass
    async with Peer(home=tmp_path / "k"):  # the failed start gave the home up
        pass


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peer.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_room_new_and_invite_list_servers(tmp_path: Path) -> None:
    home = tmp_path / "h"
    out = _cli("room", "new", "--server", "https://a.example", "--server", "https://b.example/", home=home)
    assert out.returncode == 0, out.stderr
    inv = Invite.parse(out.stdout.strip())
    assert inv.servers == ("https://a.example", "https://b.example")
    more = _cli(
        "room",
        "invite",
        inv.url(),
        "--server",
        "http://192.0.2.1:8090",
        "--drop-server",
        "https://a.example",
        home=home,
    )
    assert more.returncode == 0, more.stderr
    inv2 = Invite.parse(more.stdout.strip())
    assert inv2.servers == ("https://b.example", "http://192.0.2.1:8090")
    assert (inv2.room_id, inv2.owner) == (inv.room_id, inv.owner)
    lan = _cli("room", "new", "--no-server", home=home)
    assert lan.returncode == 0
    assert lan.stdout.startswith("ephemesh:#v1.")
    assert "--lan" in lan.stderr
    both = _cli("room", "new", "--no-server", "--server", "https://a.example", home=home)
    assert both.returncode == 1
    assert both.stderr.count("\n") == 1
    bad = _cli("room", "invite", inv.url(), "--server", "ftp://x", home=home)
    assert bad.returncode == 1
    assert "server must be an http(s) URL" in bad.stderr
    no_lan = _cli("send", lan.stdout.strip(), "hi", "--timeout", "1", home=tmp_path / "s")
    assert no_lan.returncode == 1
    assert "--lan" in no_lan.stderr
    assert "Traceback" not in no_lan.stderr


@pytest.mark.timeout(30)
async def test_join_lan_without_a_lan_address_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("signaling.config.interface_addresses", lambda: [])
    monkeypatch.delenv("EPHEMESH_LAN_HOST", raising=False)
    async with Peer(home=tmp_path / "a") as a:
        with pytest.raises(PeerError, match="LAN"):
            await a.join(Invite.new(None), lan=True)
        assert a.rooms == {}
