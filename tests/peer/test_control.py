"""One writer per home: the lock, the control socket and its protocol (bad input included), and a
store that never reports a write it did not make. Real files, real Unix sockets, real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from peer.cli import build_parser
from peer.control import MAX_LINE, ControlClient, ControlError, ControlUnavailable, socket_address
from peer.core.invite import Invite
from peer.core.log import LogEntry
from peer.core.room import PersistBatch
from peer.home import CONTROL_SOCKET, HomeInUse, HomeLock, resolve_home
from peer.node import Peer
from peer.store.sqlite import Store, StoreConflict, apply_batches


def entry(sender: str, seq: int, data: bytes) -> LogEntry:
    return LogEntry(sender=sender, seq=seq, lamport=seq, sent_at=0, expires_at=10**12, data=data)


# -- the lock ------------------------------------------------------------------------------------------


def test_the_lock_is_exclusive_even_within_one_process(tmp_path: Path) -> None:
    home = resolve_home(tmp_path / "h")
    lock = HomeLock.acquire(home)
    with pytest.raises(HomeInUse, match=f"process {os.getpid()}"):
        HomeLock.acquire(home)
    lock.release()
    lock.release()  # idempotent
    HomeLock.acquire(home).release()


async def test_a_second_peer_on_a_home_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    async with Peer(home=tmp_path / "h"):
        with pytest.raises(HomeInUse):
            Peer(home=tmp_path / "h")
    async with Peer(home=tmp_path / "h"):
        pass


def test_sigkill_releases_the_lock(tmp_path: Path) -> None:
    home = resolve_home(tmp_path / "h")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from peer.home import HomeLock\n"
        f"lock = HomeLock.acquire(Path({str(home)!r}))\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"  # holds the lock until it is killed (or its stdin closes)
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(HomeInUse, match=f"process {proc.pid}"):
            HomeLock.acquire(home)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    HomeLock.acquire(home).release()


# -- the socket and its protocol --------------------------------------------------------------------------


async def raw_exchange(home: Path, payload: bytes, *, lines: int) -> list[dict[str, object]]:
    with socket_address(home) as addr:
        reader, writer = await asyncio.open_unix_connection(addr, limit=4 * MAX_LINE)
    writer.write(payload)
    await writer.drain()
    out: list[dict[str, object]] = []
    async with asyncio.timeout(10):
        for _ in range(lines):
            raw = await reader.readline()
            if not raw:
                break
            out.append(json.loads(raw))
    writer.close()
    await writer.wait_closed()
    return out


async def test_control_socket_is_0600_and_removed_on_close(tmp_path: Path) -> None:
    async with Peer(home=tmp_path / "h") as peer:
        sock = peer.home / CONTROL_SOCKET
        mode = os.stat(sock).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        client = await ControlClient.connect(peer.home)
        hello = await client.call("hello")
        assert hello["peer"] == peer.peer_id
        assert hello["pid"] == os.getpid()
        assert hello["version"] == 1
        await client.close()
    assert not sock.exists()
    with pytest.raises(ControlUnavailable):
        await ControlClient.connect(tmp_path / "h")


async def test_bad_input_gets_an_error_line_and_the_connection_survives(tmp_path: Path) -> None:
    async with Peer(home=tmp_path / "h") as peer:
        lines = (
            b"not json\n"
            b"[1, 2]\n"
            b'{"id": 1}\n'
            b'{"id": 2, "op": "launch"}\n'
            b'{"id": 3, "op": "send", "room": "00", "text": "x"}\n'
            b'{"id": 4, "op": "wait_delivered", "room": 5}\n'
            b'{"id": 5, "op": "join", "invite": "https://nope"}\n'
            b'{"id": 6, "op": "subscribe", "room": "ab"}\n'
            b'{"id": 7, "op": "mark_seen", "room": "ab", "ids": "x"}\n'
            b'{"id": {"nested": 1}, "op": "hello"}\n'
            b'{"id": 9, "op": "hello"}\n'
        )
        replies = await raw_exchange(peer.home, lines, lines=11)
        errors = [r.get("error") for r in replies]
        assert errors[:3] == ["bad-json", "bad-request", "bad-request"]
        by_id = {r["id"]: r for r in replies if r.get("id") is not None}
        assert by_id[2]["error"] == "unknown-op"
        assert by_id[3]["error"] == "no-room"
        assert by_id[4]["error"] == "bad-request"
        assert by_id[5]["ok"] is False
        assert by_id[5]["error"] not in ("internal", "ok")
        assert by_id[6]["error"] == "no-room"
        assert by_id[7]["error"] == "no-room"
        assert by_id[9]["ok"] is True
        assert by_id[9]["peer"] == peer.peer_id
        assert any(r.get("id") is None and r.get("ok") is True for r in replies)  # the unusable id


async def test_a_line_over_the_limit_ends_the_connection_after_an_error(tmp_path: Path) -> None:
    async with Peer(home=tmp_path / "h") as peer:
        replies = await raw_exchange(
            peer.home, b"x" * (MAX_LINE + 10) + b'\n{"id":1,"op":"hello"}\n', lines=3
        )
        assert replies == [
            {"id": None, "ok": False, "error": "too-large", "message": f"line over {MAX_LINE} bytes"}
        ]
        client = await ControlClient.connect(peer.home)  # the server itself is fine
        assert (await client.call("hello"))["peer"] == peer.peer_id
        await client.close()


async def test_client_errors_are_control_errors(tmp_path: Path) -> None:
    async with Peer(home=tmp_path / "h") as peer:
        client = await ControlClient.connect(peer.home)
        with pytest.raises(ControlError) as info:
            await client.call("send", room="ff" * 16, text="x")
        assert info.value.code == "no-room"
        with pytest.raises(ControlError):
            async for _ in client.subscribe("ff" * 16, history=False):
                pass
        await client.close()


async def test_a_peer_uses_the_control_socket_of_a_long_home_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    async with Peer(home=deep) as peer:
        assert len(str(deep / CONTROL_SOCKET)) > 108
        client = await ControlClient.connect(deep)
        assert (await client.call("hello"))["peer"] == peer.peer_id
        await client.close()


async def test_a_delegated_send_is_idempotent_by_nonce(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "h") as peer:
        client = await ControlClient.connect(peer.home)
        room = (await client.call("join", invite=invite))["room"]
        first = await client.call("send", room=room, text="once", nonce="n-1")
        again = await client.call("send", room=room, text="once", nonce="n-1")
        assert first["new"] is True
        assert again["new"] is False
        assert again["message"] == first["message"]
        assert [m.text for m in peer.rooms[room].messages()] == ["once"]
        await client.close()
    async with Peer(home=tmp_path / "h") as peer:  # the key was committed with the message
        handle = await peer.join(invite)
        message_id, new = await handle.send_once("once", "n-1")
        assert (message_id, new) == (first["message"], False)


# -- the CLI ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--home", "/x", "send", "inv", "hi"],
        ["send", "inv", "hi", "--home", "/x"],
        ["send", "--home", "/x", "inv", "hi"],
    ],
)
def test_home_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.home == "/x"
    assert (args.command, args.invite, args.text) == ("send", "inv", "hi")


def test_no_home_means_the_default() -> None:
    args = build_parser().parse_args(["-v", "listen", "inv"])
    assert args.home is None
    assert args.verbose is True


# -- the store --------------------------------------------------------------------------------------------


def test_the_store_never_reports_a_write_it_did_not_make(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    assert store.put_envelope("r", entry("a" * 32, 1, b"first"))
    assert not store.put_envelope("r", entry("a" * 32, 1, b"first"))  # the same envelope: no write
    with pytest.raises(StoreConflict):
        store.put_envelope("r", entry("a" * 32, 1, b"other"))
    assert store.put_envelopes("r", [entry("a" * 32, 1, b"other"), entry("a" * 32, 2, b"two")]) == [
        ("r", "a" * 32, 1)
    ]
    assert [e.data for e in store.envelopes("r")] == [b"first", b"two"]


def test_a_conflict_on_our_own_key_stores_nothing_of_the_commit(tmp_path: Path) -> None:
    me, them = "a" * 32, "b" * 32
    store = Store(tmp_path / "s.sqlite3")
    store.put_envelope("r", entry(me, 7, b"par-3"))
    batch = PersistBatch(envelopes=[entry(them, 1, b"theirs"), entry(me, 7, b"par-2")], states={"seq": b"7"})
    with pytest.raises(StoreConflict, match="second process"):
        apply_batches(store, [("r", batch)], own=me)
    assert [e.data for e in store.envelopes("r")] == [b"par-3"]
    assert store.get_state("r", "seq") is None
    # someone else's conflicting envelope is refused and reported, the rest is stored
    other = PersistBatch(envelopes=[entry(them, 1, b"theirs"), entry(me, 7, b"par-2")])
    assert apply_batches(store, [("r", other)], own=them) == [("r", me, 7)]
    assert sorted(e.data for e in store.envelopes("r")) == [b"par-3", b"theirs"]


# -- the API: mutators commit before they return, waits raise -------------------------------------------


async def test_mutators_return_after_their_commit(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "h") as peer:
        room = await peer.join(invite)

        def stored() -> int:
            return len(peer.store.envelopes(room.room_id))  # what is on disk, read right after the await

        before = stored()
        msg = await room.send("one")
        assert stored() == before + 1
        await room.edit(msg.id, "one, edited")
        assert stored() == before + 2
        await room.react(msg.id, "👍")
        assert stored() == before + 3
        await room.set_name("Ada")
        assert stored() == before + 4
        await room.set_timer(600)
        assert stored() == before + 5
        assert await room.unsend(msg.id)
        held = {(e.sender, e.seq) for e in peer.store.envelopes(room.room_id)}
        assert (peer.peer_id, msg.seq) not in held  # the message (and what hung on it) went...
        assert (peer.peer_id, msg.seq + 5) in held  # ...and its signed TOMBSTONE came: both committed
        assert (peer.peer_id, msg.seq) in {(s, q) for s, q, _ in peer.store.tombstones(room.room_id)}


async def test_waits_raise_on_timeout(signaling_url: str, tmp_path: Path) -> None:
    from peer.node import DeliveryTimeout

    invite = Invite.new(signaling_url).url()
    async with Peer(home=tmp_path / "h") as peer:
        room = await peer.join(invite)
        msg = await room.send("nobody here")
        with pytest.raises(DeliveryTimeout) as info:
            await room.wait_delivered(msg.id, 0.2)
        assert isinstance(info.value, TimeoutError)
        assert info.value.delivered == set()
        assert room.mesh is not None
        room.mesh.present.add("ab" * 16)  # the server lists someone we never link with
        with pytest.raises(TimeoutError):
            await room.wait_connected(0.2)
        with pytest.raises(TimeoutError):
            await room.wait_for(lambda: False, 0.1)
