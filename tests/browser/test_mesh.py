"""Two browser contexts authenticate to the real signaling server, join one room and open a data channel.

The offer/answer travel sealed for the room and signed (core/signal.js), so the server sees only ciphertext.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

_START = """async ([ws, fragment]) => {
  const { startNode } = await import('/js/test/mesh-harness.js');
  window.__node = await startNode(ws, fragment);
  return window.__node.peer;
}"""


async def _open(browser: Browser, base_url: str) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base_url}/test.html?manual")
    return page


async def _two_pages_exchange(browser: Browser, base_url: str) -> dict[str, Any]:
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    fragment = "v1." + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    a = await _open(browser, base_url)
    b = await _open(browser, base_url)
    try:
        peer_a = await a.evaluate(_START, [ws_url, fragment])
        peer_b = await b.evaluate(_START, [ws_url, fragment])
        # Wait (by condition, not by time) for both sides to report the link open.
        await a.wait_for_function("p => window.__node.links[p] === 'open'", arg=peer_b, timeout=20_000)
        await b.wait_for_function("p => window.__node.links[p] === 'open'", arg=peer_a, timeout=20_000)
        sent_a = await a.evaluate("p => window.__node.send(p, 'hello from a')", peer_b)
        sent_b = await b.evaluate("p => window.__node.send(p, 'hello from b')", peer_a)
        await b.wait_for_function("window.__node.frames.length > 0", timeout=10_000)
        await a.wait_for_function("window.__node.frames.length > 0", timeout=10_000)
        return {
            "peers": (peer_a, peer_b),
            "sent": (sent_a, sent_b),
            "at_a": await a.evaluate("window.__node.frames"),
            "at_b": await b.evaluate("window.__node.frames"),
            "bundles_at_a": await a.evaluate("window.__node.bundlesFrom"),
            "bundles_at_b": await b.evaluate("window.__node.bundlesFrom"),
        }
    finally:
        await a.context.close()
        await b.context.close()


def test_two_browsers_open_a_data_channel(harness: BrowserHarness) -> None:
    if not harness.real_signaling:
        pytest.skip("signaling.app is not available yet")
    result = harness.run(_two_pages_exchange)
    peer_a, peer_b = result["peers"]
    assert peer_a != peer_b
    assert result["sent"] == (True, True)
    assert result["at_b"] == [{"peer": peer_a, "text": "hello from a"}]
    assert result["at_a"] == [{"peer": peer_b, "text": "hello from b"}]
    # Each side verified the other's signed signaling payload (offer or answer) and learnt its bundle.
    assert set(result["bundles_at_a"]) == {peer_b}  # offer or answer, and the hello nudge of the higher id
    assert set(result["bundles_at_b"]) == {peer_a}
