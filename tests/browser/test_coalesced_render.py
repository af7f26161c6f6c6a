"""The room view renders at most once per task turn: a burst of dispatches is one render of the latest state."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

BURST = 50

# One task: BURST messages dispatched back to back. Counts the view's renders during the burst (none:
# they are only scheduled) and every dispatch from now on (ticks and network events may add some).
_BURST_JS = """(n) => {
  const { store, shell } = window.ephemesh;
  const probe = { before: shell.renders(), dispatches: 0 };
  store.subscribe(() => { probe.dispatches++; });
  window.__probe = probe;
  const self = store.getState().self;
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    store.dispatch({ type: 'message', message: { id: `burst${i}`, sender: self, text: `burst ${i}`,
      sentAt: now, expiresAt: now + 3600000 } });
  }
  return { during: shell.renders() - probe.before, shown: document.querySelectorAll('#messages li[data-id^="burst"]').length };
}"""

_AFTER_JS = """() => {
  const p = window.__probe;
  return { renders: window.ephemesh.shell.renders() - p.before, dispatches: p.dispatches,
    ids: [...document.querySelectorAll('#messages li[data-id^="burst"]')].map((li) => li.dataset.id) };
}"""


async def _burst(browser: Browser, base_url: str) -> dict[str, Any]:
    context = await browser.new_context(bypass_csp=True)  # Playwright's string predicates need eval
    try:
        page = await context.new_page()
        await page.goto(f"{base_url}/")
        await page.wait_for_function("window.ephemesh !== undefined")
        await page.get_by_label("Your display name").fill("Ada")
        await page.get_by_role("button", name="Create a room").click()
        await page.wait_for_function("window.ephemesh.store.getState().roomId !== null")
        await page.locator("#room").wait_for(state="visible")
        burst = await page.evaluate(_BURST_JS, BURST)
        # the scheduled render shows the latest state: every message of the burst
        await page.wait_for_function(
            f"document.querySelectorAll('#messages li[data-id^=\"burst\"]').length === {BURST}"
        )
        after = await page.evaluate(_AFTER_JS)
        return {"burst": burst, "after": after}
    finally:
        await context.close()


def test_a_burst_of_dispatches_renders_once(harness: BrowserHarness) -> None:
    r = harness.run(_burst)
    # Nothing renders synchronously inside the burst (the old view rendered on each of the 50 dispatches)...
    assert r["burst"] == {"during": 0, "shown": 0}
    # ...and the burst costs a render or a few, not one per dispatch (the page's own ticks and the shell
    # render too: a bound of "one more per counted dispatch" failed in CI with 3 renders for 1 extra)
    assert r["after"]["dispatches"] >= BURST
    assert 1 <= r["after"]["renders"] <= BURST // 5
    # (all BURST were shown once the scheduled render ran: the scenario waits for that; the page's own
    # later dispatches may replace these fake messages, so their ids are not compared afterwards)
