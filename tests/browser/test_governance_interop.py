"""Governance across clients: a Python owner, a Python member and a browser page in one owned room (real
aiortc, real Chromium, real signaling). The page as a member cannot remove anyone (no buttons; a signed
REMOVE from a hostile page is refused by the Python peers); made admin, it removes and readmits through
the member list; in announcement mode the page, demoted, cannot post."""

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
OPEN_JS = """n => Object.values(window.ephemesh.store.getState().members).filter((m) => m.link === 'open').length === n"""
HOSTILE_REMOVE_JS = """async (target) => {
  const app = window.ephemesh.app, room = app.room;
  const { makeRemove, encodeOp } = await import('/js/core/membership.js');
  const op = await makeRemove(room.identity, room.invite.memberKey, room.roomId, room.sync.tick(), target);
  await app.pump(await room.run(() => room.publishOp(encodeOp(op), app.now())));
  return room.seq;
}"""


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        alice, bob = Peer(home=tmp / "alice"), Peer(home=tmp / "bob")
        context = await browser.new_context(bypass_csp=True)  # the tests evaluate strings
        try:
            invite = Invite.new(base_url, owner=alice.peer_id)
            a, b = await alice.join(invite), await bob.join(invite)
            page = await context.new_page()
            await page.goto(invite.url())
            await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
            carol = await page.evaluate("window.ephemesh.identity.peerId")
            await page.wait_for_function(OPEN_JS, arg=2, timeout=WAIT_MS)
            await page.wait_for_function(
                """() => window.ephemesh.app.room.members().length === 3
                  && window.ephemesh.store.getState().roles.admins.length > 0""",
                timeout=WAIT_MS,
            )
            for r in (a, b):
                await r.wait_for(lambda r=r: len(r.online_members()) == 2 and carol in r.members(), WAIT_S)
            roles = await page.evaluate("window.ephemesh.store.getState().roles")
            buttons_as_member = await page.locator("#member-list .member-actions button").count()
            refused = await page.evaluate("p => window.ephemesh.app.memberAction('remove', p)", bob.peer_id)
            error = await page.evaluate("window.ephemesh.store.getState().error")

            # a hostile page signs a REMOVE of bob anyway: both Python peers store it and keep bob
            seq = await page.evaluate(HOSTILE_REMOVE_JS, bob.peer_id)
            for r in (a, b):
                await r.wait_for(lambda r=r: r.core.sync.entry((carol, seq)) is not None, WAIT_S)
            bob_kept = all(bob.peer_id in r.members() for r in (a, b))

            # alice makes the page an admin: it gets the member actions and removes bob with a click
            await a.set_admin(carol)
            await page.wait_for_function(
                "p => window.ephemesh.store.getState().roles.admins.includes(p)", arg=carol, timeout=WAIT_MS
            )
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "governance-admin-actions.png"), animations="disabled")
            await page.locator(
                f'#member-list li[data-peer="{bob.peer_id}"] button[data-action="remove"]'
            ).click()
            await a.wait_for(lambda: bob.peer_id in a.removed_members(), WAIT_S)
            await page.locator(f'#removed-list button[data-id="{bob.peer_id}"]').click()  # readmit
            await a.wait_for(lambda: bob.peer_id in a.members(), WAIT_S)
            owner_buttons = await page.locator(
                f'#member-list li[data-peer="{alice.peer_id}"] .member-actions button'
            ).count()

            # announcement mode, and the page demoted: it cannot post
            await a.set_admin(carol, False)
            await a.set_announce(True)
            await page.wait_for_function(
                "p => { const r = window.ephemesh.store.getState().roles; return r.announce && !r.admins.includes(p); }",
                arg=carol,
                timeout=WAIT_MS,
            )
            sent = await page.evaluate("t => window.ephemesh.app.sendText(t)", "from the page")
            announce_text = await page.locator("#announce-state").text_content()
            await a.send("from the owner")
            await page.wait_for_function(
                "t => window.ephemesh.store.getState().messages.some((m) => m.text === t)",
                arg="from the owner",
                timeout=WAIT_MS,
            )
            return {
                "roles": roles,
                "buttons_as_member": buttons_as_member,
                "refused": refused,
                "error": error,
                "bob_kept": bob_kept,
                "owner_buttons": owner_buttons,
                "sent": sent,
                "announce_text": announce_text,
                "alice": alice.peer_id,
            }
        finally:
            await context.close()
            for p in (alice, bob):
                await p.close()

    return run


def test_page_member_refused_admin_removes_readmits_announcement(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    r = harness.run(_scenario(tmp_path), timeout=150)
    assert r["roles"] == {
        "owner": r["alice"],
        "admins": [r["alice"]],
        "announce": False,
        "removed": [],
        "closed": False,
        "requests": [],
    }
    assert r["buttons_as_member"] == 0
    assert r["refused"] is False
    assert r["error"]["code"] == "not-allowed"
    assert r["bob_kept"] is True
    assert r["owner_buttons"] == 0  # no one removes or demotes the owner
    assert r["sent"] is False
    assert r["announce_text"] == "Announcement mode: only admins post"
