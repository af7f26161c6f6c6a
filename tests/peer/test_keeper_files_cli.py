"""``ephemesh keep`` holds attachments: ``send --file`` returns once the keeper has a whole copy, and a
member that was offline meanwhile ``fetch``es the file from the keeper after the sender is gone."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from peer.core.invite import Invite
from tests.peer.test_cli_e2e import WAIT, read_json_until, start, stop


@pytest.mark.timeout(150)
async def test_keep_serves_a_file_to_a_member_who_was_offline(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url, ttl_s=3600).url()
    src = tmp_path / "report.bin"
    data = b"".join(hashlib.sha256(b"k" + i.to_bytes(4, "big")).digest() for i in range(6000))  # 192 kB
    src.write_bytes(data)
    keeper = await start("keep", invite, "--file-quota", "50", home=tmp_path / "keeper")
    bob = await start("listen", invite, "--json", home=tmp_path / "bob")
    try:
        await read_json_until(bob, lambda o: o["event"] == "ready")
        # a message of bob's delivered to the keeper: the keeper holds bob's ADD (the room knows bob)
        hello = await start("send", invite, "back soon", "--timeout", "30", home=tmp_path / "bob")
        _, err = await asyncio.wait_for(hello.communicate(), WAIT)
        assert hello.returncode == 0, err.decode()
        await stop(bob)
        sender = await start("send", invite, "--file", str(src), "--timeout", "60", home=tmp_path / "alice")
        _, err = await asyncio.wait_for(sender.communicate(), WAIT)
        assert sender.returncode == 0, err.decode()
        assert "the file was fetched" in err.decode()  # by the keeper, the only one online
        out = tmp_path / "saved.bin"
        fetch = await start("fetch", invite, str(out), "--no-progress", home=tmp_path / "bob")
        _, err = await asyncio.wait_for(fetch.communicate(), WAIT)
        assert fetch.returncode == 0, err.decode()
        assert out.read_bytes() == data
    finally:
        await stop(bob)
        await stop(keeper)


@pytest.mark.timeout(30)
async def test_keep_refuses_a_negative_quota(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    keeper = await start("keep", invite, "--file-quota", "-1", home=tmp_path / "keeper")
    _, err = await asyncio.wait_for(keeper.communicate(), WAIT)
    assert keeper.returncode == 1
    assert "--file-quota must be 0 or more" in err.decode()
