"""Must-show: 8 parallel ``ephemesh send`` on one home while ``ephemesh chat`` holds it, SIGKILLs at
seeded random points (the chat included), then every member is checked: each (sender, seq) maps to one
envelope everywhere (in memory and on disk), every send that exited 0 is present everywhere, nothing
else claimed success. Real processes, a real signaling server, real aiortc and SQLite.

Re-run with other kill schedules: ``EPHEMESH_KILL_SEED=7 pytest tests/peer/test_one_writer.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.home import STORE_FILE
from peer.node import Peer, RoomHandle
from peer.store.sqlite import Store

from .test_cli_e2e import start

WAIT = 60.0
SEED = int(os.environ.get("EPHEMESH_KILL_SEED", "1201"))
SENDS = 8


def own_entries(room: RoomHandle, sender: str) -> dict[int, bytes]:
    log = room.core.sync.log
    out: dict[int, bytes] = {}
    for a, b in log.have().get(sender, []):
        for seq in range(a, b + 1):
            e = log.get((sender, seq))
            if e is not None:
                out[seq] = e.data
    return out


def stored_entries(home: Path, room_id: str, sender: str) -> dict[int, bytes]:
    store = Store(home / STORE_FILE)
    try:
        return {e.seq: e.data for e in store.envelopes(room_id) if e.sender == sender}
    finally:
        store.close()


@pytest.mark.timeout(240)
async def test_parallel_sends_with_sigkills_never_make_two_writers(
    signaling_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    invite = Invite.new(signaling_url, ttl_s=3600).url()
    room_id = Invite.parse(invite).room_id
    home_a = tmp_path / "a"
    loop = asyncio.get_running_loop()
    killed: set[int] = set()

    def kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            killed.add(proc.pid)
            proc.send_signal(signal.SIGKILL)

    async with Peer(home=tmp_path / "b") as b, Peer(home=tmp_path / "c") as c:
        rb, rc = await b.join(invite), await c.join(invite)
        chat = await start("chat", invite, home=home_a)
        try:
            await rb.wait_for(lambda: len(rb.online_members()) == 2, WAIT)
            a_id = next(p for p in rb.online_members() if p != c.peer_id)
            sends = [
                await start("send", invite, f"par-{i}", "--timeout", "25", home=home_a) for i in range(SENDS)
            ]
            timers = [loop.call_later(rng.uniform(0.2, 3.0), kill, chat)]
            for proc in sends:
                if rng.random() < 0.5:
                    timers.append(loop.call_later(rng.uniform(0.0, 5.0), kill, proc))
            results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in sends)), 3 * WAIT)
            for t in timers:
                t.cancel()
        finally:
            kill(chat)
            await chat.wait()

        ok = {i for i, p in enumerate(sends) if p.returncode == 0}
        for i, (p, (_, err)) in enumerate(zip(sends, results, strict=True)):
            text = err.decode()
            assert "Traceback" not in text, text
            if p.returncode == 0:
                assert "delivered to" in text, text
            elif p.pid not in killed:
                assert p.returncode == 1, (i, p.returncode, text)
                assert len(text.strip().splitlines()) == 1, text
        assert chat.pid in killed, "the owner was never killed: the schedule tests nothing"
        assert ok, "no send succeeded"

        # whoever owns home A next serves what the killed owners committed but never sent
        async with Peer(home=home_a) as a:
            ra = await a.join(invite)
            rooms = (ra, rb, rc)

            def converged() -> bool:
                held = [own_entries(r, a_id) for r in rooms]
                return held[0] == held[1] == held[2]

            await ra.wait_for(converged, WAIT)
            texts = [[m.text for m in r.messages() if m.sender == a_id] for r in rooms]
            for i in ok:
                for shown in texts:
                    assert shown.count(f"par-{i}") == 1, (i, shown)
            for shown in texts:
                assert len(shown) == len(set(shown)), shown  # no send was made twice
            in_memory = own_entries(ra, a_id)

    # on disk too: each (sender, seq) of A is one envelope, the same bytes in every member's store
    homes = (home_a, tmp_path / "b", tmp_path / "c")
    on_disk = [stored_entries(h, room_id, a_id) for h in homes]
    assert on_disk[0] == on_disk[1] == on_disk[2] == in_memory
    assert sorted(on_disk[0]) == list(range(1, len(on_disk[0]) + 1))  # seqs without holes or reuse


async def read_json_until(proc: asyncio.subprocess.Process, pred: object) -> list[dict[str, object]]:
    import json

    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    async with asyncio.timeout(WAIT):
        while True:
            line = await proc.stdout.readline()
            assert line, f"ended early; saw {seen}"
            seen.append(json.loads(line))
            if callable(pred) and pred(seen[-1]):
                return seen


@pytest.mark.timeout(180)
async def test_commands_on_a_home_that_keep_holds_go_through_it(signaling_url: str, tmp_path: Path) -> None:
    """`ephemesh keep` owns home K; `send` and `listen` on K work through it (in a room it does not keep),
    `send` in the kept room fails with one line, and when keep dies the delegated `listen` says so."""
    kept, other = Invite.new(signaling_url).url(), Invite.new(signaling_url).url()
    home = tmp_path / "k"
    keep = await start("keep", kept, home=home)
    listen: asyncio.subprocess.Process | None = None
    try:
        async with Peer(home=tmp_path / "m") as member:
            room = await member.join(other)
            assert keep.stderr is not None
            async with asyncio.timeout(WAIT):
                assert b"keeping 1 room" in await keep.stderr.readline()
            listen = await start("listen", other, "--json", home=home)
            ready = (await read_json_until(listen, lambda o: o["event"] == "ready"))[-1]
            send = await start("send", other, "from cron", "--timeout", "20", home=home)
            _, err = await asyncio.wait_for(send.communicate(), WAIT)
            assert send.returncode == 0, err.decode()
            assert "delivered to 1 of 1 members" in err.decode()
            await room.wait_for(lambda: [m.text for m in room.messages()] == ["from cron"], WAIT)
            (msg,) = room.messages()
            assert msg.sender == ready["peer"]  # one identity: the keeper's
            seen = await read_json_until(listen, lambda o: o.get("text") == "from cron")
            assert seen[-1]["id"] == msg.id

            refused = await start("send", kept, "no", "--timeout", "5", home=home)
            _, err = await asyncio.wait_for(refused.communicate(), WAIT)
            assert refused.returncode == 1
            lines = err.decode().strip().splitlines()
            assert len(lines) == 1, lines
            assert "keeps this room" in lines[0]

            # keep dies: the delegated listen takes the home over and goes on (nothing printed twice)
            keep.send_signal(signal.SIGKILL)
            await keep.wait()
            await room.wait_for(lambda: ready["peer"] in room.online_members(), WAIT)  # listen owns it now
            await room.send("after the keeper died")
            seen = await read_json_until(listen, lambda o: o.get("text") == "after the keeper died")
            assert [o.get("text") for o in seen if o.get("event") == "message"] == ["after the keeper died"]
    finally:
        for proc in (keep, listen):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.timeout(120)
async def test_chat_on_a_home_in_use_goes_through_the_owner(signaling_url: str, tmp_path: Path) -> None:
    """The owner is a Python ``Peer`` (the API); ``ephemesh chat`` on its home sends and shows through it."""
    invite = Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "owner") as owner, Peer(home=tmp_path / "other") as other:
        mine, theirs = await owner.join(invite), await other.join(invite)
        await mine.wait_for(lambda: len(mine.online_members()) == 1, WAIT)
        chat = await start("chat", invite, home=tmp_path / "owner")
        try:
            assert chat.stdin is not None
            assert chat.stdout is not None
            async with asyncio.timeout(WAIT):
                assert b"joined room" in await chat.stdout.readline()
            chat.stdin.write(b"typed in the second terminal\n/who\n")
            await chat.stdin.drain()
            await theirs.wait_for(
                lambda: [m.text for m in theirs.messages()] == ["typed in the second terminal"], WAIT
            )
            assert theirs.messages()[0].sender == owner.peer_id  # one identity
            await theirs.send("hello, both of you")
            seen: list[bytes] = []
            async with asyncio.timeout(WAIT):
                while not any(b"hello, both of you" in line for line in seen):
                    seen.append(await chat.stdout.readline())
            who = [line for line in seen if f"({other.peer_id[:8]})".encode() in line]  # /who
            assert who
            assert any(state in who[0] for state in (b"online", b"direct", b"relayed")), who
            chat.stdin.close()
            assert await asyncio.wait_for(chat.wait(), WAIT) == 0
        finally:
            if chat.returncode is None:
                chat.kill()
                await chat.wait()
