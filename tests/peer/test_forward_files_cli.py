"""``chat``'s ``/forward`` of an attachment, on a real terminal (pty): the file is fetched, re-sealed
under a new key and sent to the other room; a refusal is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import Peer
from tests.peer.test_features_cli import WAIT, on_pty
from tests.peer.test_files_e2e import make_file


@pytest.mark.timeout(180)
async def test_chat_forwards_an_attachment_to_another_room(signaling_url: str, tmp_path: Path) -> None:
    one, two = Invite.new(signaling_url).url(), Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "obi", name="Obi") as obi:
        room, other = await obi.join(one), await obi.join(two)
        args = ("-m", "peer.cli", "chat", one, "--name", "Tess", "--home", str(tmp_path / "tess"))
        async with on_pty(*args) as chat:
            await chat.wait_for(b"Ctrl-D quits")
            await room.wait_for(lambda: len(room.online_members()) == 1, WAIT)
            src = tmp_path / "plans.pdf"
            data = make_file(src, 70_000, seed=b"cli-forward")
            sent = await room.send_file(src, ttl=3600)
            await chat.wait_for(b"plans.pdf")
            mark = len(chat.output)
            await chat.type(f"/forward 1 {two}\r".encode())
            await chat.wait_for(b"re-sealed under a new key) to room", after=mark)
            await other.wait_for(lambda: len(other.messages()) == 1, WAIT)
            fwd = other.messages()[0]
            assert fwd.file is not None
            assert sent.file is not None
            assert fwd.forwarded_from == "Obi"
            assert fwd.file.name == "plans.pdf"
            assert fwd.file.key != sent.file.key
            out = await other.attachment(fwd.id).save(tmp_path / "got.pdf", timeout=WAIT)
            assert out.read_bytes() == data
            # the original unsent: a forward of it is refused with one line, nothing more is sent
            mark = len(chat.output)
            await room.unsend(sent.id)
            await chat.wait_for(b"was unsent", after=mark)  # the unsend reached tess's chat
            mark = len(chat.output)
            await chat.type(f"/forward 1 {two}\r".encode())
            await chat.wait_for(b"! ", after=mark)
            assert len(other.messages()) == 1
