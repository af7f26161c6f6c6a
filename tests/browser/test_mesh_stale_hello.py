"""The browser mesh's stale-hello rule, as peer/net/mesh.py's (tests/peer/test_mesh_stale_hello.py): a
hello from a peer we hold a link to means it has none (it restarted, or its end died). A link that has
been ready, or open without becoming ready, for HELLO_STALE_MS is dropped and redialled; a younger one
(a hello that crossed our offer) is kept. Driven in a real page on the real ``Mesh`` class with a codec
that opens every payload as a hello and links whose ages the test sets."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser

from peer.net.mesh import HELLO_STALE_S

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

_SCENARIO = """async () => {
  const { Mesh, HELLO_STALE_MS } = await import('/js/net/mesh.js');
  const self = '0'.repeat(32);
  const codec = { open: async () => ({ kind: 'hello' }), seal: async () => 'sealed' };
  const states = [];
  const mesh = new Mesh({ selfId: self, sendSignal: () => {}, codec,
                          onLinkState: (peer, state) => states.push([peer, state]) });
  const closed = [];
  const fake = (peer, openedAgo, readyAgo) => {
    const now = Date.now();
    const link = { peer, state: 'open', opened: true, timer: null, channel: null,
                   openedAt: openedAgo === null ? null : now - openedAgo,
                   readyAt: readyAgo === null ? null : now - readyAgo,
                   pc: { close: () => closed.push(peer), signalingState: 'stable' } };
    mesh.links.set(peer, link);
    mesh.present.add(peer);
    return link;
  };
  const peers = { readyOld: 'a'.repeat(32), openOld: 'b'.repeat(32), readyYoung: 'c'.repeat(32),
                  openYoung: 'd'.repeat(32) };
  fake(peers.readyOld, 5000, 2 * HELLO_STALE_MS);
  fake(peers.openOld, 2 * HELLO_STALE_MS, null);
  fake(peers.readyYoung, 5000, HELLO_STALE_MS / 4);
  fake(peers.openYoung, HELLO_STALE_MS / 4, null);
  for (const p of Object.values(peers)) await mesh.handleSignal(p, 'payload');
  const held = Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, mesh.links.has(p)]));
  const redial = Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, mesh.nb.get(p)?.retry != null]));
  mesh.close();
  return { held, redial, closed: closed.length, stale: HELLO_STALE_MS };
}"""


async def _run(browser: Browser, base_url: str) -> dict[str, Any]:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{base_url}/test.html?manual")
        result: dict[str, Any] = await page.evaluate(_SCENARIO)
        return result
    finally:
        await context.close()


def test_a_hello_drops_a_stale_link_and_keeps_a_young_one(harness: BrowserHarness) -> None:
    r = harness.run(_run)
    assert r["stale"] == HELLO_STALE_S * 1000  # one rule in both languages
    assert r["held"] == {"readyOld": False, "openOld": False, "readyYoung": True, "openYoung": True}
    assert r["redial"]["readyOld"]  # dropped links are dialled again
    assert r["redial"]["openOld"]
