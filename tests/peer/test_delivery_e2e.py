"""Must-show: a member restarts and gets a message from a keeper, then links to the author: the author's
``wait_delivered`` returns, and ``ephemesh send`` (through the author's running process) exits 0.

Real signaling server, real aiortc, real SQLite, a real CLI process. To make "from the keeper" certain,
the author steps out of the signaling room (a ``leave``: its WebRTC link to the keeper stays up) while
the member comes back, and steps in again once the member holds the message.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import DeliveryTimeout, Peer, RoomHandle

WAIT = 45.0


async def step_out(peer: Peer, room: RoomHandle) -> None:
    await peer._signaling[room.invite.servers[0]].leave(room.room_id)


async def step_in(peer: Peer, room: RoomHandle) -> None:
    assert room.mesh is not None
    room.mesh.set_present(await peer._signaling[room.invite.servers[0]].join(room.room_id))


def holds(room: RoomHandle, message_id: str) -> bool:
    sender, seq = message_id.split(":")
    return (sender, int(seq)) in room.core.sync.log


async def member_back_via_keeper(tmp_path: Path, invite: str, message_id: str) -> Peer:
    member = Peer(home=tmp_path / "member", connect_timeout=5.0)
    room = await member.join(invite)
    await room.wait_for(lambda: holds(room, message_id), WAIT)
    return member


@pytest.mark.timeout(240)
async def test_delivery_learnt_from_a_member_served_by_the_keeper(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url, ttl_s=3600).url()
    async with Peer(home=tmp_path / "author") as author, Peer(home=tmp_path / "keeper") as keeper:
        ra = await author.join(invite)
        await keeper.join(invite, keeper=True)
        member = Peer(home=tmp_path / "member")
        rm = await member.join(invite)
        await ra.wait_for(lambda: len(ra.online_members()) == 2, WAIT)
        member_id = member.peer_id
        await rm.wait_for(lambda: author.peer_id in rm.members() and keeper.peer_id in rm.members(), WAIT)
        await member.close()
        await ra.wait_for(lambda: ra.online_members() == [keeper.peer_id], WAIT)

        # 1. the Python API: sent while the member is away; only the keeper has it
        msg = await ra.send("while you were away", ttl=3600)
        assert await ra.wait_delivered(msg.id, WAIT) == {keeper.peer_id}  # every ONLINE member
        with pytest.raises(DeliveryTimeout) as info:
            await ra.wait_delivered(msg.id, 0.5, everyone=True)
        assert info.value.delivered == {keeper.peer_id}
        assert info.value.waiting_for == {member_id}
        waiting = asyncio.create_task(ra.wait_delivered(msg.id, 2 * WAIT, everyone=True))

        await step_out(author, ra)
        member = await member_back_via_keeper(tmp_path, invite, msg.id)
        assert member_id not in ra.online_members()  # it came from the keeper
        await step_in(author, ra)
        assert await asyncio.wait_for(waiting, WAIT) == {keeper.peer_id, member_id}
        assert ra.delivered_to(msg.id) == {keeper.peer_id, member_id}
        await member.close()
        await ra.wait_for(lambda: ra.online_members() == [keeper.peer_id], WAIT)

        # 2. the CLI, through the author's running process (it owns the home)
        await step_out(author, ra)
        send = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "peer.cli",
            "--home",
            str(tmp_path / "author"),
            "send",
            invite,
            "second, from a script",
            "--all",
            "--timeout",
            str(2 * WAIT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await ra.wait_for(lambda: any(m.text == "second, from a script" for m in ra.messages()), WAIT)
            (second,) = [m for m in ra.messages() if m.text == "second, from a script"]
            await ra.wait_for(lambda: keeper.peer_id in ra.delivered_to(second.id), WAIT)
            member = await member_back_via_keeper(tmp_path, invite, second.id)
            assert member_id not in ra.online_members()
            assert send.returncode is None  # still waiting for the member (--all)
            await step_in(author, ra)
            _, err = await asyncio.wait_for(send.communicate(), WAIT)
        finally:
            if send.returncode is None:
                send.kill()
                await send.wait()
        assert send.returncode == 0, err.decode()
        assert err.decode().strip() == "delivered to 2 of 2 members"
        await member.close()
