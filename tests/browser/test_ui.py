"""The bundled UI (web/index.html) against the real signaling server: rooms, invites, errors, screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from .harness import ARTIFACTS, BrowserHarness

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

_DEMO_MESSAGES = """([peerA, peerB]) => {
  const { store } = window.ephemesh;
  const now = Date.now();
  const say = (id, sender, text, ago, ttl) => store.dispatch({ type: 'message',
    message: { id, sender, text, sentAt: now - ago, expiresAt: now - ago + ttl } });
  say('m1', peerB, 'Hey! Is this the room for Friday?', 120000, 3600000);
  say('m2', peerA, 'Yes — everything here disappears in an hour.', 90000, 3600000);
  say('m3', peerB, 'Perfect. Sending the address, it self-destructs in 45 s.', 5000, 50000);
  store.dispatch({ type: 'tick', now });
}"""


async def _page(browser: Browser, base_url: str, viewport: dict[str, int]) -> Page:
    # bypass_csp: the app's CSP forbids eval, which Playwright's string predicates need.
    context = await browser.new_context(viewport=viewport, bypass_csp=True)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{base_url}/")
    await page.wait_for_function("window.ephemesh !== undefined")
    return page


async def _two_members(browser: Browser, base_url: str) -> dict[str, Any]:
    a = await _page(browser, base_url, DESKTOP)
    b = await _page(browser, base_url, PHONE)
    try:
        await a.get_by_label("Your display name").fill("Ada")
        await a.get_by_role("button", name="Create a room").click()
        await a.wait_for_function("window.ephemesh.store.getState().connection === 'online'")
        invite = await a.evaluate("window.ephemesh.store.getState().inviteUrl")
        assert "#v1." in invite
        await b.get_by_label("Paste an invite link").fill(invite)
        await b.get_by_role("button", name="Open invite").click()
        peer_a = await a.evaluate("window.ephemesh.store.getState().self")
        handle = await b.wait_for_function("window.ephemesh.store.getState().self")
        peer_b = await handle.json_value()
        # Both sides show the other online (handshake and sync HELLO done), waiting on the condition.
        await a.locator(f'#member-list li[data-peer="{peer_b}"][data-link="open"]').wait_for(state="attached")
        await b.locator(f'#member-list li[data-peer="{peer_a}"][data-link="open"]').wait_for(state="attached")
        room_a = await a.evaluate("window.ephemesh.store.getState().roomId")
        room_b = await b.evaluate("window.ephemesh.store.getState().roomId")
        # A real end-to-end encrypted message from Ada reaches Bob through the room protocol.
        await a.get_by_label("Message", exact=True).fill("hello from Ada")
        await a.keyboard.press("Enter")
        await b.locator("#messages li", has_text="hello from Ada").wait_for()
        received = await b.locator("#messages li", has_text="hello from Ada").inner_text()
        # An App that has no room keys yet fails closed with a visible error: nothing leaves in plaintext.
        sent = await a.evaluate(
            """async () => {
              const { App } = await import('/js/ui/app.js');
              const { store, identity } = window.ephemesh;
              return new App({ store, identity, wsUrl: 'ws://127.0.0.1:9/ws' }).sendText('must not leave');
            }"""
        )
        await a.get_by_role("alert").wait_for()
        refused = await a.get_by_role("alert").inner_text()
        await a.get_by_role("button", name="Dismiss error").click()
        for page in (a, b):
            await page.evaluate(_DEMO_MESSAGES, [peer_a, peer_b])
        await a.locator("#messages li").nth(2).wait_for()
        countdown = await a.locator('#messages li[data-id="m3"] .expiry').inner_text()
        await a.screenshot(path=str(ARTIFACTS / "room-desktop-1280x800.png"), animations="disabled")
        await b.screenshot(path=str(ARTIFACTS / "room-phone-390x844.png"), animations="disabled")
        await a.get_by_role("button", name="Safety numbers").click()
        await a.get_by_role("dialog").wait_for()
        await a.wait_for_function("p => window.ephemesh.store.getState().safety[p]", arg=peer_b)
        await b.wait_for_function("p => window.ephemesh.store.getState().safety[p]", arg=peer_a)
        safety_a = await a.evaluate("p => window.ephemesh.store.getState().safety[p]", peer_b)
        safety_b = await b.evaluate("p => window.ephemesh.store.getState().safety[p]", peer_a)
        await a.locator("#safety-list .digits", has_text=safety_a).wait_for()
        await a.screenshot(path=str(ARTIFACTS / "safety-desktop-1280x800.png"), animations="disabled")
        # Erasure in the view: once "now" passes expires_at the message is gone.
        await a.evaluate("window.ephemesh.store.dispatch({type: 'tick', now: Date.now() + 60000})")
        await a.locator('#messages li[data-id="m3"]').wait_for(state="detached")
        remaining = await a.locator("#messages li").count()
        return {
            "rooms": (room_a, room_b),
            "refused": refused,
            "sent": sent,
            "received": received,
            "countdown": countdown,
            "remaining": remaining,
            "safety": (safety_a, safety_b),
        }
    finally:
        await a.context.close()
        await b.context.close()


def test_two_browsers_meet_in_a_room_via_invite(harness: BrowserHarness, artifacts: Path) -> None:
    if not harness.real_signaling:
        pytest.skip("signaling.app is not available yet")
    result = harness.run(_two_members)
    room_a, room_b = result["rooms"]
    assert room_a == room_b
    assert len(room_a) == 32
    assert "not sent" in result["refused"]
    assert result["sent"] is False
    assert "hello from Ada" in result["received"]
    assert result["countdown"].startswith("0:4")
    assert result["remaining"] == 3  # two demo messages and the real one
    safety_a, safety_b = result["safety"]
    assert safety_a == safety_b  # symmetric, from keys each side verified in signed signaling payloads
    assert len(safety_a.split(" ")) == 12
    for name in ("room-desktop-1280x800.png", "room-phone-390x844.png", "safety-desktop-1280x800.png"):
        assert (artifacts / name).stat().st_size > 1000


async def _error_states(browser: Browser, base_url: str) -> dict[str, str]:
    page = await _page(browser, base_url, PHONE)
    try:
        await page.screenshot(path=str(ARTIFACTS / "welcome-phone-390x844.png"), animations="disabled")
        await page.get_by_label("Paste an invite link").fill(f"{base_url}/#v1.not-a-secret")
        await page.get_by_role("button", name="Open invite").click()
        await page.get_by_role("alert").wait_for()
        invalid = await page.get_by_role("alert").inner_text()
        # A server that refuses connections: the app reports it (and keeps retrying with backoff).
        await page.evaluate(
            """async () => {
              const { App } = await import('/js/ui/app.js');
              const { store, identity } = window.ephemesh;
              store.dispatch({ type: 'dismiss-error' });
              window.__bad = new App({ store, identity, wsUrl: 'ws://127.0.0.1:9/ws' });
              const { inviteFragment, newRoomSecret } = await import('/js/core/invite.js');
              await window.__bad.openFragment(inviteFragment(newRoomSecret(), null));
            }"""
        )
        await page.wait_for_function("window.ephemesh.store.getState().connection === 'unreachable'")
        unreachable = await page.get_by_role("alert").inner_text()
        await page.screenshot(path=str(ARTIFACTS / "unreachable-phone-390x844.png"), animations="disabled")
        return {"invalid": invalid, "unreachable": unreachable}
    finally:
        await page.context.close()


def test_invalid_invite_and_unreachable_server_are_reported(harness: BrowserHarness, artifacts: Path) -> None:
    result = harness.run(_error_states)
    assert "invite link is not valid" in result["invalid"]
    assert "cannot be reached" in result["unreachable"]


def test_screenshot_paths_are_gitignored() -> None:
    gitignore = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "test-artifacts/" in gitignore
