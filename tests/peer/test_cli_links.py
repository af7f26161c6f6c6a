"""Link state in the CLI: ``listen --json`` prints ``link`` events, ``chat``'s ``/who`` shows the path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peer.core.invite import Invite
from tests.peer.test_cli_e2e import WAIT, read_json_until, start, stop


@pytest.mark.timeout(90)
async def test_listen_json_reports_link_state_and_who_shows_it(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    listener = await start("listen", invite, "--json", home=tmp_path / "listener")
    chat = await start("chat", invite, "--name", "carol", home=tmp_path / "chat")
    try:
        seen = await read_json_until(listener, lambda o: o.get("event") == "link" and o["state"] == "direct")
        links = [o for o in seen if o.get("event") == "link"]
        assert {o["state"] for o in links[:-1]} <= {"connecting"}  # nothing reachable before it is
        assert links[-1]["path"] == ["host", "host"]  # loopback machine: host candidates, no NAT
        assert chat.stdin is not None
        assert chat.stdout is not None
        async with asyncio.timeout(WAIT):
            while True:  # /who until the link is up on the chat side too (its output is line-based)
                chat.stdin.write(b"/who\n")
                await chat.stdin.drain()
                line = (await chat.stdout.readline()).decode()
                if ") direct" in line:  # "  <name> (<id>) direct", not the "* link to ...: direct" event
                    break
    finally:
        await stop(listener)
        if chat.stdin is not None:
            chat.stdin.close()
        await stop(chat)


def test_room_new_uses_the_public_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from peer.cli import main

    monkeypatch.setenv("EPHEMESH_PUBLIC_URL", "https://chat.example.org")
    assert main(["room", "new", "--home", str(Path("/nonexistent-home-is-not-touched"))]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("https://chat.example.org/#v1.")
    assert out.err == ""
    monkeypatch.delenv("EPHEMESH_PUBLIC_URL")
    assert main(["room", "new", "--server", "https://other.example"]) == 0
    assert capsys.readouterr().out.startswith("https://other.example/#v1.")
    assert main(["room", "new"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("http://127.0.0.1:8080/#v1.")
    assert "works on this machine only" in out.err
