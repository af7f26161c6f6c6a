"""The browser's several bootstraps (web/js/net/bootstraps.js): a page served by one signaling server
meets a Python peer that is only on another server the invite lists (``.s``), and chats with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from peer.core.invite import Invite
from peer.node import Peer
from signaling.app import start_server
from signaling.config import SignalingConfig

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

STATE = "window.ephemesh.store.getState()"
WAIT_MS = 30_000


def test_page_meets_a_member_on_the_invites_second_server(harness: BrowserHarness, tmp_path: Path) -> None:
    if not harness.real_signaling:
        pytest.skip("signaling.app is not available")

    async def scenario(browser: Browser, base_url: str) -> None:
        runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
        other = f"http://127.0.0.1:{port}"
        try:
            invite = Invite.new(base_url).with_servers([base_url, other])
            only_other = invite.with_servers([other])  # the Python peer never touches the page's server
            async with Peer(home=tmp_path / "py", control=False) as peer:
                room = await peer.join(only_other)
                assert room.servers_in_use() == [other]
                context = await browser.new_context(bypass_csp=True)
                page = await context.new_page()
                await page.goto(invite.url())
                await page.wait_for_function(
                    f"p => {{ const m = window.ephemesh && {STATE}.members[p]; return m && m.link === 'open'; }}",
                    arg=peer.peer_id,
                    timeout=WAIT_MS,
                )
                await room.send("hello through the second bootstrap")
                await page.wait_for_function(
                    f"t => {STATE}.messages.some((m) => m.text === t)",
                    arg="hello through the second bootstrap",
                    timeout=WAIT_MS,
                )
                assert await page.evaluate("t => window.ephemesh.app.sendText(t)", "and back")
                await room.wait_for(lambda: any(m.text == "and back" for m in room.messages()), 30)
                await context.close()
        finally:
            await runner.cleanup()

    harness.run(scenario, timeout=90)
