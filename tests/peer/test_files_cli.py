"""Attachments from the command line: ``send --file`` (stays until a whole copy has left), ``listen --json``
attachment events (listen fetches small files as they arrive), ``fetch`` through the home's owner."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from peer.core.invite import Invite
from tests.peer.test_cli_e2e import WAIT, read_json_until, start, stop


@pytest.mark.timeout(120)
async def test_send_file_listen_json_and_fetch(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url, ttl_s=3600).url()
    src = tmp_path / "notes.txt"
    data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(9000))  # 288 kB
    src.write_bytes(data)
    bob = await start("listen", invite, "--json", home=tmp_path / "bob")
    try:
        await read_json_until(bob, lambda o: o["event"] == "ready")
        sender = await start("send", invite, "--file", str(src), "--timeout", "60", home=tmp_path / "alice")
        _, err = await asyncio.wait_for(sender.communicate(), WAIT)
        assert sender.returncode == 0, err.decode()
        assert "the file was fetched" in err.decode()
        seen = await read_json_until(bob, lambda o: o["event"] == "attachment-complete")
        msg = next(o for o in seen if o["event"] == "message" and "file" in o)
        assert msg["file"]["name"] == "notes.txt"
        assert msg["file"]["size"] == len(data)
        assert msg["file"]["mime"] == "text/plain"
        assert "key" not in msg["file"]
        assert any(o["event"] == "attachment-progress" and o["id"] == msg["id"] for o in seen)
        # fetch through the process that owns bob's home (its control socket); the sender is gone
        out = tmp_path / "saved.txt"
        fetch = await start("fetch", invite, str(out), home=tmp_path / "bob")
        _, err = await asyncio.wait_for(fetch.communicate(), WAIT)
        assert fetch.returncode == 0, err.decode()
        assert out.read_bytes() == data
        assert "saved" in err.decode()
    finally:
        await stop(bob)


@pytest.mark.timeout(60)
async def test_send_file_bad_arguments_are_one_clear_line(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    missing = await start("send", invite, "--file", str(tmp_path / "nope.bin"), home=tmp_path / "a")
    _, err = await asyncio.wait_for(missing.communicate(), WAIT)
    assert missing.returncode == 1
    assert "no such file" in err.decode()
    nothing = await start("send", invite, home=tmp_path / "a")
    _, err = await asyncio.wait_for(nothing.communicate(), WAIT)
    assert nothing.returncode == 1
    assert "nothing to send" in err.decode()
