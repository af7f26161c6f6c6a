"""Governance through the CLI: `room new` names the creator as owner; in `chat`, a member's /remove is
refused, the owner's /admin, /remove, /readmit, /announce take effect for everyone, and /leave ends it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.home import load_or_create_identity
from peer.node import Peer

from .test_cli_e2e import start, stop

WAIT = 40.0


async def _line_with(proc: asyncio.subprocess.Process, text: bytes) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT):
        while text not in (line := await proc.stdout.readline()):
            assert line, f"process ended before printing {text!r}"


async def _knows(proc: asyncio.subprocess.Process, peer_prefix: str) -> None:
    """Ask ``/who`` until the chat lists ``peer_prefix`` as a member (it learns members by sync)."""
    assert proc.stdout is not None
    marker = f"({peer_prefix})".encode()
    async with asyncio.timeout(WAIT):
        while True:
            await _say(proc, "/who")
            try:
                async with asyncio.timeout(1.0):
                    while marker not in (line := await proc.stdout.readline()):
                        assert line, "process ended"
                return
            except TimeoutError:
                continue


async def _say(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()


@pytest.mark.timeout(150)
async def test_owner_governs_through_chat_and_a_member_is_refused(signaling_url: str, tmp_path: Path) -> None:
    owner_home, mallory_home = tmp_path / "owner", tmp_path / "mallory"
    for home in (owner_home, mallory_home):
        home.mkdir(mode=0o700)
    owner_id = load_or_create_identity(owner_home).peer_id
    mallory_id = load_or_create_identity(mallory_home).peer_id
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peer.cli", "room", "new", "--server", signaling_url, "--home", str(owner_home),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await made.communicate()
    invite = Invite.parse(out.decode().strip())
    assert invite.owner == owner_id

    carol = Peer(home=tmp_path / "carol")
    owner = await start("chat", invite.url(), "--name", "Owner", home=owner_home)
    mallory = await start("chat", invite.url(), "--name", "Mallory", home=mallory_home)
    try:
        c = await carol.join(invite.url())
        await c.wait_for(lambda: len(c.online_members()) == 2 and len(c.members()) == 3, WAIT)
        me = carol.peer_id[:8]

        await _knows(mallory, me)  # else /remove says "no member matches", not the refusal
        await _say(mallory, f"/remove {me}")
        await _line_with(mallory, b"! only an admin may remove another member")
        await _say(owner, f"/admin {me}")
        await c.wait_for(lambda: c.is_admin(carol.peer_id), WAIT)
        await _knows(owner, mallory_id[:8])  # the owner learns mallory by sync too (a race under load)
        await _say(owner, f"/remove {mallory_id[:8]}")
        await c.wait_for(lambda: mallory_id in c.removed_members(), WAIT)
        await _say(owner, f"/readmit {mallory_id[:8]}")
        await c.wait_for(lambda: mallory_id in c.members(), WAIT)
        await _say(owner, "/announce on")
        await c.wait_for(lambda: c.announce, WAIT)
        await _say(owner, "/leave")
        await _line_with(owner, b"you left the room")
        await c.wait_for(lambda: owner_id in c.removed_members(), WAIT)
        async with asyncio.timeout(WAIT):
            assert await owner.wait() == 0
    finally:
        await carol.close()
        for proc in (owner, mallory):
            await stop(proc)
