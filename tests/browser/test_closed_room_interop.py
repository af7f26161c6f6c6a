"""Closed rooms across clients: a Python owner, a browser page made admin, a Python newcomer (real aiortc,
real Chromium, real signaling). The page closes the room with its toggle; the newcomer only asks to join
(listed with an Admit button on the page, a member nowhere); a click on Admit lets it in everywhere; the
toggle reopens the room. As a plain member the page has no toggle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from peer.core.invite import Invite
from peer.node import Peer

from .harness import ARTIFACTS, BrowserHarness

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
WAIT_S = 30.0
ROLES = "window.ephemesh.store.getState().roles"


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        alice, dave = Peer(home=tmp / "alice"), Peer(home=tmp / "dave")
        context = await browser.new_context(bypass_csp=True)
        try:
            invite = Invite.new(base_url, owner=alice.peer_id)
            a = await alice.join(invite)
            page = await context.new_page()
            await page.goto(invite.url())
            await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
            carol = await page.evaluate("window.ephemesh.identity.peerId")
            await a.wait_for(lambda: carol in a.members() and carol in a.online_members(), WAIT_S)
            await page.wait_for_function(f"{ROLES}.admins.length > 0", timeout=WAIT_MS)
            toggle_as_member = await page.locator("#admission-toggle").is_visible()

            await a.set_admin(carol)
            await page.wait_for_function(f"p => {ROLES}.admins.includes(p)", arg=carol, timeout=WAIT_MS)
            toggle_text = await page.locator("#admission-toggle").text_content()
            await page.locator("#admission-toggle").click()  # close
            await a.wait_for(lambda: a.admission_closed, WAIT_S)
            state_text = await page.locator("#admission-state").text_content()

            d = await dave.join(invite)
            await a.wait_for(lambda: dave.peer_id in a.join_requests(), WAIT_S)
            await page.wait_for_function(
                f"p => {ROLES}.requests.includes(p)", arg=dave.peer_id, timeout=WAIT_MS
            )
            dave_member_before = dave.peer_id in a.members() or await page.evaluate(
                "p => window.ephemesh.app.room.members().includes(p)", dave.peer_id
            )
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "closed-room-request.png"), animations="disabled")
            await page.locator(f'#request-list button[data-action="admit"][data-id="{dave.peer_id}"]').click()
            await a.wait_for(lambda: dave.peer_id in a.members(), WAIT_S)
            await d.wait_for(lambda: dave.peer_id in d.members(), WAIT_S)
            await page.wait_for_function(f"() => {ROLES}.requests.length === 0", timeout=WAIT_MS)
            requests_left = await page.locator("#request-list li").count()

            await page.locator("#admission-toggle").click()  # open
            await a.wait_for(lambda: not a.admission_closed, WAIT_S)
            return {
                "toggle_as_member": toggle_as_member,
                "toggle_text": toggle_text,
                "state_text": state_text,
                "dave_member_before": dave_member_before,
                "requests_left": requests_left,
            }
        finally:
            await context.close()
            for p in (alice, dave):
                await p.close()

    return run


def test_page_admin_closes_admits_a_request_and_reopens(harness: BrowserHarness, tmp_path: Path) -> None:
    r = harness.run(_scenario(tmp_path), timeout=150)
    assert r["toggle_as_member"] is False
    assert r["toggle_text"] == "Approve new members"
    assert r["state_text"] == "Closed: admins approve new members"
    assert r["dave_member_before"] is False
    assert r["requests_left"] == 0
