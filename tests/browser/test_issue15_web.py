"""Issue 15 in the web client, with a Python ``Peer`` in the same rooms (real signaling, real aiortc,
headless Chromium): a 20,000-character paste arrives whole and a longer one is refused aloud; @mentions
both ways with the Notification constructor called on a hidden tab (permission granted in the context);
search that loses an expired message at once; forward to another room (and an expired one refused);
location from navigator.geolocation (position set in the context); last seen in the member list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness
from .pages import NOTIFY_SPY, OPEN_JS, STATE, close_all, need_signaling, open_background_room, open_page

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
WAIT_S = 30.0
HIDE_JS = """() => {
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


async def _page(browser: Browser, url: str) -> Page:
    return await open_page(
        browser,
        url,
        height=800,
        permissions=["notifications", "geolocation"],
        geolocation={"latitude": 48.85837, "longitude": 2.294481, "accuracy": 18},
        init_script=NOTIFY_SPY,
    )


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        one, two = Invite.new(base_url, ttl_s=3600), Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py", name="Pyro")
        out: dict[str, Any] = {}
        page: Page | None = None
        try:
            room = await py.join(one)
            other = await py.join(two)
            page = await _page(browser, one.url())
            await page.evaluate("window.ephemesh.app.setDisplayName('Ada')")
            page_id = await page.evaluate("window.ephemesh.identity.peerId")
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            await room.wait_for(lambda: room.display_name(page_id) == "Ada", WAIT_S)
            await page.wait_for_function(f"() => {STATE}.names['{py.peer_id}'] === 'Pyro'", timeout=WAIT_MS)

            # Long text: a 20,000-character paste arrives whole; 70,000 is refused with a banner.
            box = page.locator("#composer-input")
            paste = ("a paste of twenty thousand characters, ünïcode too. " * 400)[:20_000]
            await box.focus()
            await page.keyboard.insert_text(paste)
            out["box_len"] = await box.evaluate("b => b.value.length")
            await page.keyboard.press("Enter")
            await room.wait_for(lambda: any(len(m.text) == 20_000 for m in room.messages()), WAIT_S)
            out["long_ok"] = [m.text for m in room.messages() if len(m.text) == 20_000] == [paste]
            await page.keyboard.insert_text("z" * 70_000)
            await page.keyboard.press("Enter")
            await page.locator("#error-text", has_text="too long").wait_for(timeout=WAIT_MS)
            out["refused_text"] = await page.locator("#error-text").text_content()
            out["kept_len"] = await box.evaluate("b => b.value.length")
            out["py_count_after_refusal"] = len(room.messages())
            await box.fill("")
            await page.click("#error-dismiss")

            # Mentions: the page mentions Pyro; Pyro mentions Ada while the tab is hidden.
            await box.fill("lunch @Pyro?")
            await page.keyboard.press("Enter")
            await room.wait_for(lambda: any(m.text == "lunch @Pyro?" for m in room.messages()), WAIT_S)
            out["py_mentioned"] = [m.mentioned for m in room.messages() if m.text == "lunch @Pyro?"]
            await page.evaluate(HIDE_JS)
            await room.send("sure @Ada, noon")
            await page.wait_for_function("window.__notes.length > 0", timeout=WAIT_MS)
            out["notes"] = await page.evaluate("window.__notes")
            item = page.locator("#messages li.msg", has_text="sure @Ada, noon")
            await item.wait_for(timeout=WAIT_MS)
            out["highlighted"] = await item.evaluate("li => li.classList.contains('mentioned')")

            # Search: a short-lived match leaves the results at once when it expires.
            await room.send("falafel on the corner")
            await room.send("falafel secret", ttl=10)
            await page.locator("#messages li.msg", has_text="falafel secret").wait_for(timeout=WAIT_MS)
            await page.fill("#search-input", "FALAFEL")
            hits = page.locator("#search-results li.search-hit")
            await page.wait_for_function(
                "() => document.querySelectorAll('#search-results li.search-hit').length === 2",
                timeout=WAIT_MS,
            )
            secret_id = await page.evaluate(
                f"() => {STATE}.messages.find((m) => m.text === 'falafel secret').id"
            )
            await page.wait_for_function(
                "() => document.querySelectorAll('#search-results li.search-hit').length === 1",
                timeout=WAIT_MS,
            )
            out["hits_after_expiry"] = await hits.all_text_contents()
            out["core_search_after"] = await page.evaluate(
                "() => window.ephemesh.app.room.search('falafel').map((m) => m.text)"
            )

            # Forward: the page joins room two too, forwards Pyro's message there through the dialog.
            await open_background_room(page, two, WAIT_MS)
            corner = page.locator("#messages li.msg", has_text="falafel on the corner")
            await corner.get_by_role("button", name="Forward").click()
            await page.locator(f'#forward-list button[data-forward-room="{two.room_id}"]').click()
            await other.wait_for(lambda: len(other.messages()) == 1, WAIT_S)
            fwd = other.messages()[0]
            out["forwarded"] = [fwd.text, fwd.forwarded_from, fwd.sender == page_id]
            out["fwd_expiry_ok"] = fwd.expires_at <= next(
                m.expires_at for m in room.messages() if m.text == "falafel on the corner"
            )
            out["expired_forward"] = await page.evaluate(
                """async ([id, two]) => {
                  const f = await import('/js/ui/features.js');
                  const app = window.ephemesh.app;
                  const target = window.ephemesh.shell.rooms.get(two).app;
                  const ok = await f.forward(app, target, id);
                  return [ok, window.ephemesh.store.getState().error];
                }""",
                [secret_id, two.room_id],
            )
            await page.click("#error-dismiss")

            # Location from navigator.geolocation (the context's position).
            await page.click("#share-location")
            await room.wait_for(lambda: any(m.location for m in room.messages()), WAIT_S)
            out["location"] = next(m.location for m in room.messages() if m.location)
            geo = page.locator("#messages li.msg a.geo")
            await geo.wait_for(timeout=WAIT_MS)
            out["geo_href"] = await geo.get_attribute("href")

            # Last seen: a member that goes offline shows "last seen" in the member list.
            quinn = Peer(home=tmp / "quinn", name="Quinn")
            await quinn.join(one)
            await page.wait_for_function(OPEN_JS, arg=2, timeout=WAIT_MS)
            await quinn.close()
            member = page.locator(f'#member-list li[data-peer="{quinn.peer_id}"]')
            await member.locator(".member-state", has_text="last seen").wait_for(timeout=WAIT_MS)
            out["quinn_state"] = await member.locator(".member-state").text_content()
            await page.uncheck("#lastseen-toggle")
            await page.wait_for_function(f"() => !{STATE}.shareLastSeen", timeout=WAIT_MS)
            await member.locator(".member-state", has_text="last seen").wait_for(
                state="detached", timeout=WAIT_MS
            )
            out["quinn_state_opted_out"] = await member.locator(".member-state").text_content()
            return out
        finally:
            await close_all([page], py)

    return run


def test_issue15_in_the_browser(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    r = harness.run(_scenario(tmp_path), timeout=150)
    assert r["box_len"] == 20_000  # no maxlength cut in the composer
    assert r["long_ok"]
    assert "too long" in r["refused_text"]
    assert r["kept_len"] == 70_000  # the refused text stays in the box
    assert r["py_count_after_refusal"] == 1
    assert r["py_mentioned"] == [True]
    assert r["notes"] == ["Pyro mentioned you"]  # no message text in the notification
    assert r["highlighted"]
    assert len(r["hits_after_expiry"]) == 1
    assert "falafel on the corner" in r["hits_after_expiry"][0]
    assert r["core_search_after"] == ["falafel on the corner"]
    assert r["forwarded"] == ["falafel on the corner", "Pyro", True]
    assert r["fwd_expiry_ok"]
    ok, error = r["expired_forward"]
    assert ok is False
    assert error["code"] == "cannot-forward"
    assert r["location"] == (48_858_370, 2_294_481, 18)
    assert r["geo_href"] == "geo:48.858370,2.294481;u=18"
    assert "last seen just now" in r["quinn_state"]
    assert "last seen" not in r["quinn_state_opted_out"]
