"""Closed rooms through the CLI: in `chat`, a member's /close is refused; the owner's /close makes a
newcomer only *ask to join* (listed by /requests, not a member anywhere), /admit PREFIX lets it in,
/open reopens."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.home import load_or_create_identity
from peer.node import Peer

from .test_cli_e2e import start, stop
from .test_governance_cli import WAIT, _knows, _line_with, _say


@pytest.mark.timeout(150)
async def test_owner_closes_admits_and_reopens_through_chat(signaling_url: str, tmp_path: Path) -> None:
    owner_home, mallory_home = tmp_path / "owner", tmp_path / "mallory"
    for home in (owner_home, mallory_home):
        home.mkdir(mode=0o700)
    owner_id = load_or_create_identity(owner_home).peer_id
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peer.cli", "room", "new", "--server", signaling_url, "--home", str(owner_home),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await made.communicate()
    invite = Invite.parse(out.decode().strip())
    assert invite.owner == owner_id

    carol, dave = Peer(home=tmp_path / "carol"), Peer(home=tmp_path / "dave")
    owner = await start("chat", invite.url(), "--name", "Owner", home=owner_home)
    mallory = await start("chat", invite.url(), "--name", "Mallory", home=mallory_home)
    try:
        c = await carol.join(invite.url())
        await c.wait_for(lambda: len(c.online_members()) == 2 and len(c.members()) == 3, WAIT)
        await _knows(owner, carol.peer_id[:8])
        await _knows(owner, load_or_create_identity(mallory_home).peer_id[:8])

        await _say(mallory, "/close")
        await _line_with(mallory, b"! only an admin may close the room")
        await _say(owner, "/requests")
        await _line_with(owner, b"the room is open: no approval needed")
        await _say(owner, "/close")
        await _line_with(owner, b"the room is closed")
        await c.wait_for(lambda: c.admission_closed, WAIT)
        with pytest.raises(PermissionError, match="only an admin"):
            await c.open_admission()

        d = await dave.join(invite.url())
        me = dave.peer_id
        await c.wait_for(lambda: me in c.join_requests(), WAIT)
        assert me not in c.members()
        async with asyncio.timeout(WAIT):  # the owner's chat lists the request
            while True:
                await _say(owner, "/requests")
                try:
                    await asyncio.wait_for(_line_with(owner, f"({me}) asks to join".encode()), 1.0)
                    break
                except TimeoutError:
                    continue
        await _say(owner, "/admit zzzz")
        await _line_with(owner, b"! no join request matches 'zzzz'")
        await _say(owner, f"/admit {me[:8]}")
        await _line_with(owner, f"admitted {me[:8]}".encode())
        await c.wait_for(lambda: me in c.members() and not c.join_requests(), WAIT)
        await d.wait_for(lambda: me in d.members(), WAIT)
        await _say(owner, "/open")
        await _line_with(owner, b"the room is open")
        await c.wait_for(lambda: not c.admission_closed, WAIT)
    finally:
        await carol.close()
        await dave.close()
        for proc in (owner, mallory):
            await stop(proc)
