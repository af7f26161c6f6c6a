"""Issue 15 in ``ephemesh chat`` on a real terminal (a pty): a 20,000-character paste arrives whole,
mentions ring a bell, /search, /forward to another room, /location, /who with last seen, and a text over
the limit is refused with a clear line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import Peer

WAIT = 40.0


class Pty:
    """A child process whose stdin and stdout are a pseudo-terminal; everything it prints is collected."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc, self.master = proc, master
        self.output = bytearray()
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += data
        self._changed.set()

    async def wait_for(self, needle: bytes, *, after: int = 0) -> int:
        """Wait until ``needle`` was printed (past offset ``after``); its offset."""
        async with asyncio.timeout(WAIT):
            while (at := self.output.find(needle, after)) == -1:
                self._changed.clear()
                await self._changed.wait()
        return at

    async def type(self, data: bytes) -> None:
        """Write to the terminal in a thread: a big paste blocks until the child reads it."""

        def write_all() -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.master, view) :]

        await asyncio.to_thread(write_all)

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        os.close(self.master)


@contextlib.asynccontextmanager
async def on_pty(*args: str) -> AsyncIterator[Pty]:
    master, slave = os.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=slave, stdout=slave, stderr=asyncio.subprocess.PIPE
    )
    os.close(slave)
    term = Pty(proc, master)
    try:
        yield term
    finally:
        await term.close()


READ_ONE_LINE = "import sys; line = sys.stdin.readline(); print('GOT', len(line.rstrip('\\n')), flush=True)"


@pytest.mark.timeout(60)
async def test_reproduce_the_terminal_cut_a_canonical_tty_keeps_4095_bytes_of_a_line() -> None:
    """Why chat reads its terminal in non-canonical mode: a plain readline on a tty loses all but 4,095."""
    async with on_pty("-c", READ_ONE_LINE) as term:
        await term.type(b"x" * 20_000 + b"\n")
        at = await term.wait_for(b"GOT ")
        await term.wait_for(b"\n", after=at)
        assert term.output[at:].split()[1] == b"4095"


@pytest.mark.timeout(180)
async def test_chat_on_a_terminal(signaling_url: str, tmp_path: Path) -> None:
    one, two = Invite.new(signaling_url).url(), Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "obi", name="Obi") as obi:
        room = await obi.join(one)
        other = await obi.join(two)
        args = ("-m", "peer.cli", "chat", one, "--name", "Tess", "--home", str(tmp_path / "tess"))
        async with on_pty(*args) as chat:
            await chat.wait_for(b"Ctrl-D quits")
            await room.wait_for(lambda: len(room.online_members()) == 1, WAIT)
            (tess,) = room.online_members()
            await room.wait_for(lambda: room.display_name(tess) == "Tess", WAIT)
            await chat.wait_for(b"is now known as Obi")

            # a 20,000-character paste arrives whole
            paste = ("ünïcode and ascii " * 1200)[:20_000]
            await chat.type(paste.encode() + b"\r")
            await room.wait_for(lambda: [len(m.text) for m in room.messages()] == [20_000], WAIT)
            assert room.messages()[0].text == paste

            # over the limit: refused with a clear line, nothing sent
            mark = len(chat.output)
            await chat.type(b"y" * 70_000 + b"\r")
            await chat.wait_for(b"! message too long", after=mark)
            assert len(room.messages()) == 1

            # a mention from the terminal, and one of the terminal: a bell and a highlight
            await chat.type(b"see you @Obi\r")
            await room.wait_for(lambda: len(room.messages()) == 2, WAIT)
            assert room.messages()[-1].mentioned
            mark = len(chat.output)
            await room.send("ok @Tess, noon")
            at = await chat.wait_for(b"ok @Tess, noon", after=mark)
            assert chat.output[at - 60 : at].count(b"\a\x1b[7m") == 1

            # /search, then forward the hit to the other room (joined by its invite)
            await room.send("falafel place on the corner")
            await chat.wait_for(b"falafel place")
            mark = len(chat.output)
            await chat.type(b"/search FALAFEL\r")
            at = await chat.wait_for(b"#1 [Obi] falafel place", after=mark)
            mark = len(chat.output)
            await chat.type(f"/forward 1 {two}\r".encode())
            await chat.wait_for(b"forwarded #1", after=mark)
            await other.wait_for(lambda: len(other.messages()) == 1, WAIT)
            fwd = other.messages()[0]
            assert fwd.text == "falafel place on the corner"
            assert fwd.forwarded_from == "Obi"
            assert fwd.sender == tess

            # /location
            await chat.type(b"/location 48.858370, 2.294481 30\r")
            await room.wait_for(lambda: room.messages()[-1].location == (48_858_370, 2_294_481, 30), WAIT)
            await chat.wait_for(b"geo:48.858370,2.294481;u=30")

            # /who with last seen of a member that left
            carol = Peer(home=tmp_path / "carol", name="Carol")
            await carol.join(one)
            await chat.wait_for(b"is now known as Carol")
            await room.wait_for(lambda: carol.peer_id in room.online_members(), WAIT)
            mark = len(chat.output)
            await carol.close()
            await chat.wait_for(b"* Carol is offline", after=mark)  # the terminal's link to her went down
            mark = len(chat.output)
            await chat.type(b"/who\r")
            at = await chat.wait_for(b"  Carol (", after=mark)
            end = await chat.wait_for(b"\n", after=at)
            assert b", last seen just now" in chat.output[at:end]
            mark = len(chat.output)
            await chat.type(b"/lastseen off\r")
            await chat.wait_for(b"last seen off", after=mark)


@pytest.mark.timeout(120)
async def test_listen_json_carries_the_mention_flag(signaling_url: str, tmp_path: Path) -> None:
    from tests.peer.test_cli_e2e import read_json_until, start, stop

    invite = Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "obi", name="Obi") as obi:
        room = await obi.join(invite)
        listen = await start("listen", invite, "--json", "--name", "Lis", home=tmp_path / "lis")
        try:
            ready = await read_json_until(listen, lambda o: o.get("event") == "ready")
            lis = ready[-1]["peer"]
            await room.wait_for(lambda: room.display_name(lis) == "Lis", WAIT)
            await room.send("nobody in particular")
            await room.send("over to you @Lis")
            seen = await read_json_until(listen, lambda o: o.get("text") == "over to you @Lis")
            msgs = {o["text"]: o for o in seen if o.get("event") == "message"}
            assert msgs["over to you @Lis"]["mentioned"] is True
            assert msgs["over to you @Lis"]["mentions"] == [lis]
            assert msgs["nobody in particular"]["mentioned"] is False
        finally:
            await stop(listen)


@pytest.mark.timeout(60)
async def test_send_over_the_limit_is_one_clear_line_and_exit_1(signaling_url: str, tmp_path: Path) -> None:
    from tests.peer.test_cli_e2e import start

    invite = Invite.new(signaling_url).url()
    proc = await start("send", invite, "x" * 70_000, "--timeout", "5", home=tmp_path / "s")
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert err.decode().strip().splitlines() == [
        "ephemesh: message too long: 70,038 bytes once encoded, at most 64,000 (about 64,000 characters"
        " of plain text): nothing was sent"
    ]
