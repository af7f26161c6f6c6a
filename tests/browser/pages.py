"""Page set-up shared by the browser tests that drive the web client next to Python peers.

- ``open_page`` opens the client in a fresh browser context (its own IndexedDB and localStorage) and waits
  until the room of the URL is open; options add permissions, a geolocation, an init script (e.g.
  ``NOTIFY_SPY``) and a display name.
- ``open_background_room`` makes the page join another room (the room list) and waits for a link in it.
- ``wait_async`` waits for an async predicate: Playwright's ``wait_for_function`` takes the Promise an
  async function returns as its truthy value, so it returns after one evaluation whatever the Promise
  resolves to.
- ``SCAN_JS`` walks every key and value of every store of every IndexedDB database of the page.
- ``home_below`` makes a Python home whose peer id is lower than the page's (the Python peer offers).
- ``need_signaling`` skips a test when the page server is not the real signaling server; ``close_all``
  closes pages (their contexts) and then Python peers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.home import load_or_create_identity
from peer.node import Peer

from .harness import BrowserHarness

STATE = "window.ephemesh.store.getState()"
READY_JS = "window.ephemesh !== undefined && window.ephemesh.app.room !== null"
OPEN_JS = f"n => Object.values({STATE}.members).filter((m) => m.link === 'open').length === n"
ROOM_STATE = "window.ephemesh.shell.rooms.get(room).store.getState()"
HAS_MESSAGE_JS = f"id => {STATE}.messages.some((m) => m.id === id)"
# the page holds the whole file of message `id`, verified, with an object URL to save it
DONE_JS = f"id => {{ const a = {STATE}.attachments[id]; return Boolean(a && a.done && a.url); }}"
# SHA-256 (hex) of what the page would save for message `id` (its object URL)
DIGEST_JS = f"""async id => {{
  const a = {STATE}.attachments[id];
  const buf = await (await fetch(a.url)).arrayBuffer();
  return [...new Uint8Array(await crypto.subtle.digest('SHA-256', buf))].map((b) => b.toString(16).padStart(2, '0')).join('');
}}"""
# Record every Notification the page creates (the real constructor still runs: permission is granted).
NOTIFY_SPY = """
window.__notes = [];
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) { super(title, options); window.__notes.push(options && options.body); }
};
"""
# Which needles (base64url bytes, or strings) occur anywhere in any IndexedDB database of the page: every
# key and value of every store, walked through objects, arrays, typed arrays and strings.
SCAN_JS = """async ([byteNeedles, textNeedles]) => {
  const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
  const needles = byteNeedles.map(dec);
  const enc = new TextEncoder();
  const found = new Set();
  let values = 0;
  const hasBytes = (hay, n) => {
    outer: for (let i = 0; i + n.length <= hay.length; i++) {
      for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
      return true;
    }
    return false;
  };
  const visit = (v, depth) => {
    if (v === null || v === undefined || depth > 8) return;
    if (typeof v === 'string') {
      textNeedles.forEach((t, k) => { if (v.includes(t)) found.add('text' + k); });
      const b = enc.encode(v);
      needles.forEach((n, k) => { if (hasBytes(b, n)) found.add('bytes' + k); });
    } else if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
      const b = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      needles.forEach((n, k) => { if (hasBytes(b, n)) found.add('bytes' + k); });
      const s = new TextDecoder('utf-8', { fatal: false }).decode(b);
      textNeedles.forEach((t, k) => { if (s.includes(t)) found.add('text' + k); });
    } else if (Array.isArray(v)) v.forEach((x) => visit(x, depth + 1));
    else if (v instanceof Map) for (const [a, b] of v) { visit(a, depth + 1); visit(b, depth + 1); }
    else if (typeof v === 'object' && !(v instanceof CryptoKey)) for (const x of Object.values(v)) visit(x, depth + 1);
  };
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((res, rej) => { const r = indexedDB.open(info.name); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    for (const name of db.objectStoreNames) {
      await new Promise((res, rej) => {
        const r = db.transaction(name).objectStore(name).openCursor();
        r.onsuccess = () => { const c = r.result; if (!c) return res(); values++; visit(c.key, 0); visit(c.value, 0); c.continue(); };
        r.onerror = () => rej(r.error);
      });
    }
    db.close();
  }
  return { found: [...found].sort(), values };
}"""


async def open_page(
    browser: Browser,
    url: str,
    *,
    height: int = 900,
    permissions: Sequence[str] = (),
    geolocation: dict[str, float] | None = None,
    init_script: str | None = None,
    name: str | None = None,
) -> Page:
    """A page of the client at ``url`` (1280 wide) in a fresh context, once its room is open.

    ``bypass_csp``: Playwright's string predicates need eval, which the app's CSP forbids."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": height},
        bypass_csp=True,
        permissions=list(permissions),
        geolocation=geolocation,  # type: ignore[arg-type]
    )
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(READY_JS)
    if name is not None:
        await page.evaluate("name => window.ephemesh.app.setDisplayName(name)", name)
    return page


async def open_background_room(page: Page, invite: Invite, timeout_ms: float) -> None:
    """The page joins ``invite``'s room in the background (the room shown stays) and links to a member."""
    await page.evaluate(f"window.ephemesh.shell.openInvite({invite.url()!r}, true)")
    await page.wait_for_function(
        f"() => [...window.ephemesh.shell.rooms.values()].some((c) => c.app.roomId === '{invite.room_id}'"
        " && Object.values(c.store.getState().members).some((m) => m.link === 'open'))",
        timeout=timeout_ms,
    )


async def wait_async(page: Page, predicate_js: str, arg: Any = None, *, timeout_ms: float) -> None:
    """Wait until the async JS ``predicate_js(arg)`` resolves truthy: the page re-evaluates it 50 ms after
    each evaluation ends; raises ``TimeoutError`` after ``timeout_ms``."""
    poll = (
        f"async (arg) => {{ const p = ({predicate_js}); const end = Date.now() + {float(timeout_ms)};"
        " while (!(await p(arg))) { if (Date.now() > end) return false;"
        " await new Promise((r) => setTimeout(r, 50)); } return true; }"
    )
    if not await page.evaluate(poll, arg):
        raise TimeoutError(f"not true within {timeout_ms} ms: {predicate_js[:80]}")


def home_below(tmp: Path, peer_id: str) -> Path:
    """A home whose identity's peer id sorts below ``peer_id``: that Python peer offers the link to the page
    (the lower id offers), so the page's channels are ones it *received* (see test_files_links.py)."""
    for i in range(100_000):
        home = tmp / f"holder-{i}"
        home.mkdir()
        if load_or_create_identity(home).peer_id < peer_id:
            return home
    raise AssertionError("no identity below the page's")  # (the page's id would be all zeros)


def need_signaling(harness: BrowserHarness) -> None:
    """Skip the test unless the page server is the real signaling server."""
    if not harness.real_signaling:
        pytest.skip("needs the real signaling server")


async def close_all(pages: Iterable[Page | None], *peers: Peer) -> None:
    """Close each page's context, then each Python peer (in that order)."""
    for page in pages:
        if page is not None:
            await page.context.close()
    for peer in peers:
        await peer.close()
