"""The CLI end to end: real processes, a real signaling server, real aiortc between them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from peer.core.invite import Invite

WAIT = 40.0


async def start(*args: str, home: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peer.cli",
        *args,
        "--home",
        str(home),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_json_until(proc: asyncio.subprocess.Process, pred: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT):
        while True:
            line = await proc.stdout.readline()
            assert line, f"listener ended early; saw {seen}"
            obj = json.loads(line)
            seen.append(obj)
            if pred(obj):
                return seen


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


@pytest.mark.timeout(150)
async def test_send_listen_and_a_returning_member_is_served_by_the_keeper(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url, ttl_s=3600).url()
    keeper = await start("keep", invite, home=tmp_path / "keeper")
    # bob joins once (so the room knows him), then goes offline
    bob = await start("listen", invite, "--json", home=tmp_path / "bob")
    listener = await start("listen", invite, "--json", home=tmp_path / "listener")
    try:
        await read_json_until(listener, lambda o: o["event"] == "ready")
        bob_seen = await read_json_until(bob, lambda o: o["event"] == "joined")  # saw another member's ADD
        bob_id = next(o["peer"] for o in bob_seen if o["event"] == "ready")
        # ... and the room holds bob's ADD (a member whose ADD reached nobody is unknown to the sender)
        await read_json_until(listener, lambda o: o["event"] == "joined" and o["peer"] == bob_id)
        await stop(bob)

        sender = await start(
            "send", invite, "hello over the mesh", "--timeout", "30", home=tmp_path / "sender"
        )
        _, err = await asyncio.wait_for(sender.communicate(), WAIT)
        assert sender.returncode == 0, err.decode()
        seen = await read_json_until(listener, lambda o: o.get("text") == "hello over the mesh")
        msg = seen[-1]
        assert msg["event"] == "message"
        assert set(msg) >= {"id", "sender", "lamport", "sent_at", "expires_at", "text"}
        assert msg["expires_at"] - msg["sent_at"] == 3600 * 1000

        # The sender is gone and so is the listener: only the keeper is online when bob returns.
        await stop(listener)
        bob = await start("listen", invite, "--json", home=tmp_path / "bob")
        seen = await read_json_until(bob, lambda o: o.get("text") == "hello over the mesh")
        assert seen[-1]["id"] == msg["id"]
    finally:
        for proc in (listener, bob, keeper):
            await stop(proc)


@pytest.mark.timeout(60)
async def test_send_with_nobody_online_fails_clearly(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    sender = await start("send", invite, "anyone?", "--timeout", "2", home=tmp_path / "s")
    _, err = await asyncio.wait_for(sender.communicate(), WAIT)
    assert sender.returncode == 1
    text = err.decode()
    assert "no other member is online" in text
    assert "Traceback" not in text


@pytest.mark.timeout(60)
async def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    invite = Invite.new("http://127.0.0.1:9").url()
    sender = await start("send", invite, "x", "--timeout", "2", home=tmp_path / "s")
    _, err = await asyncio.wait_for(sender.communicate(), WAIT)
    assert sender.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "signaling server" in lines[0]


@pytest.mark.timeout(60)
async def test_serve_prints_an_invite_and_serves_the_web_client(tmp_path: Path) -> None:
    import aiohttp

    server = await start("serve", "--port", "0", home=tmp_path / "srv")
    try:
        assert server.stdout is not None
        async with asyncio.timeout(WAIT):
            while True:
                line = (await server.stdout.readline()).decode()
                assert line, "serve exited early"
                if "invite link" in line:
                    break
        invite = Invite.parse(line.split()[-1])
        assert invite.server is not None
        assert invite.server.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{invite.server}/healthz") as r:
                assert (await r.json())["ok"] is True
            async with http.get(f"{invite.server}/") as r:
                assert r.status == 200
                assert "<html" in (await r.text()).lower()
    finally:
        await stop(server)


@pytest.mark.timeout(90)
async def test_chat_and_a_killed_peer_is_detected_by_heartbeat(signaling_url: str, tmp_path: Path) -> None:
    """Two `ephemesh chat` processes talk; one is SIGKILLed and the other notices within seconds."""
    from peer.node import Peer

    invite = Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "observer") as observer:
        room = await observer.join(invite)
        chat = await start("chat", invite, "--name", "Terminal Tess", home=tmp_path / "chatter")
        try:
            await room.wait_for(lambda: len(room.online_members()) == 1, WAIT)
            assert chat.stdin is not None
            chat.stdin.write(b"hello from the terminal\n")
            await chat.stdin.drain()
            await room.wait_for(
                lambda: [m.text for m in room.messages()] == ["hello from the terminal"], WAIT
            )
            (tess,) = room.online_members()
            await room.wait_for(lambda: room.display_name(tess) == "Terminal Tess", WAIT)
            chat.stdin.write(b"/edit hello from the terminal, edited\n")
            await chat.stdin.drain()
            await room.wait_for(lambda: [m.edited for m in room.messages()] == [True], WAIT)
            await room.send("hello back")
            assert chat.stdout is not None
            async with asyncio.timeout(WAIT):
                while b"hello back" not in await chat.stdout.readline():
                    pass
            # the terminal showed it, so it told us it saw it
            mine = room.messages()[-1].id
            await room.wait_for(lambda: room.seen_by(mine) == {tess}, WAIT)
            loop = asyncio.get_running_loop()
            chat.kill()  # no goodbye: only heartbeats can tell
            killed_at = loop.time()
            await room.wait_for(lambda: room.online_members() == [], 15.0)
            assert loop.time() - killed_at < 10.0  # ICE consent alone would take ~35 s
        finally:
            await stop(chat)
