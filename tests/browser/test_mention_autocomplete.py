"""@name autocomplete in the web composer (real Chromium pages, a Python member, real signaling): typing
"@bo" lists Bob and Bonnie (role=listbox/option, aria-activedescendant follows the arrow keys), Escape
closes it, Enter picks Bob without sending, the sent message mentions Bob (highlighted, notified on his
page, not a mention for Bonnie); a click and Tab pick too (Bonnie's Python peer sees itself mentioned)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness
from .pages import NOTIFY_SPY, OPEN_JS, STATE, close_all, need_signaling, open_page

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
WAIT_S = 30.0
# what the list shows and what the textarea says about it
ARIA_JS = """() => {
  const box = document.getElementById('composer-input'), list = document.getElementById('mention-list');
  return {
    hidden: list.hidden, role: list.getAttribute('role'), expanded: box.getAttribute('aria-expanded'),
    controls: box.getAttribute('aria-controls'), active: box.getAttribute('aria-activedescendant'),
    options: [...list.querySelectorAll('li')].map((li) => [li.id, li.getAttribute('role'), li.getAttribute('aria-selected'), li.textContent]),
    value: box.value,
  };
}"""


async def _page(browser: Browser, url: str, name: str) -> Page:
    return await open_page(
        browser, url, height=800, permissions=["notifications"], init_script=NOTIFY_SPY, name=name
    )


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "bonnie", name="Bonnie")
        pages: list[Page] = []
        out: dict[str, Any] = {}
        try:
            room = await py.join(invite)
            ada = await _page(browser, invite.url(), "Ada")
            pages.append(ada)
            bob = await _page(browser, invite.url(), "Bob")
            pages.append(bob)
            for page in pages:
                await page.wait_for_function(OPEN_JS, arg=2, timeout=WAIT_MS)
            await ada.wait_for_function(
                f"() => Object.values({STATE}.names).filter((n) => n === 'Bob' || n === 'Bonnie').length === 2",
                timeout=WAIT_MS,
            )
            box = ada.locator("#composer-input")
            await box.click()
            await ada.keyboard.type("hi @bo")
            await ada.locator("#mention-list li[role='option']").nth(1).wait_for(timeout=WAIT_MS)
            out["open"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.press("ArrowDown")
            out["down"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.press("ArrowUp")
            out["up"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.press("Escape")
            out["escaped"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.type("b")  # "@bob": Bob only
            out["narrowed"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.press("Backspace")  # "@bo" again: both
            out["widened"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.press("Enter")  # picks Bob; does not send
            out["picked"] = await ada.evaluate(ARIA_JS)
            out["sent_early"] = await ada.evaluate(f"() => {STATE}.messages.length")
            await ada.keyboard.type("lunch?")
            await ada.keyboard.press("Enter")  # the list is closed: Enter sends
            text = "hi @Bob lunch?"
            item = bob.locator("#messages li.msg", has_text=text)
            await item.wait_for(timeout=WAIT_MS)
            out["bob_highlighted"] = await item.evaluate("li => li.classList.contains('mentioned')")
            await bob.wait_for_function("window.__notes.length > 0", timeout=WAIT_MS)
            out["bob_notes"] = await bob.evaluate("window.__notes")
            await room.wait_for(lambda: any(m.text == text for m in room.messages()), WAIT_S)
            out["bonnie_mentioned_1"] = [m.mentioned for m in room.messages() if m.text == text]

            # a click picks (the option under the mouse), Tab picks too
            await box.click()
            await ada.keyboard.type("and @b")
            await ada.locator("#mention-list li[role='option']", has_text="Bonnie").click()
            await ada.keyboard.type("and @bo")
            await ada.locator("#mention-list li[role='option']").nth(1).wait_for(timeout=WAIT_MS)
            await ada.keyboard.press("Tab")
            out["clicked_and_tabbed"] = await ada.evaluate(ARIA_JS)
            await ada.keyboard.press("Enter")
            text2 = "and @Bonnie and @Bob"
            await room.wait_for(lambda: any(m.text == text2 for m in room.messages()), WAIT_S)
            out["bonnie_mentioned_2"] = [m.mentioned for m in room.messages() if m.text == text2]
            out["focus_kept"] = await ada.evaluate("document.activeElement.id")
            return out
        finally:
            await close_all(pages, py)

    return run


def test_mention_autocomplete_in_the_composer(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    r = harness.run(_scenario(tmp_path), timeout=110)
    o = r["open"]
    assert not o["hidden"]
    assert o["role"] == "listbox"
    assert o["expanded"] == "true"
    assert o["controls"] == "mention-list"
    assert [x[3] for x in o["options"]] == ["Bob", "Bonnie"]
    assert all(x[1] == "option" for x in o["options"])
    assert [x[2] for x in o["options"]] == ["true", "false"]
    assert o["active"] == o["options"][0][0]
    assert r["down"]["active"] == o["options"][1][0]
    assert [x[2] for x in r["down"]["options"]] == ["false", "true"]
    assert r["up"]["active"] == o["options"][0][0]
    assert r["escaped"]["hidden"]
    assert r["escaped"]["expanded"] == "false"
    assert r["escaped"]["active"] is None
    assert r["escaped"]["value"] == "hi @bo"  # Escape only closed the list
    assert [x[3] for x in r["narrowed"]["options"]] == ["Bob"]
    assert [x[3] for x in r["widened"]["options"]] == ["Bob", "Bonnie"]
    assert r["picked"]["value"] == "hi @Bob "
    assert r["picked"]["hidden"]
    assert r["sent_early"] == 0  # Enter picked, it did not send
    assert r["bob_highlighted"]
    assert r["bob_notes"] == ["Ada mentioned you"]
    assert r["bonnie_mentioned_1"] == [False]
    assert r["clicked_and_tabbed"]["value"] == "and @Bonnie and @Bob "
    assert r["bonnie_mentioned_2"] == [True]
    assert r["focus_kept"] == "composer-input"
