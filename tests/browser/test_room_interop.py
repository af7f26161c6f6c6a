"""Two browser pages and two Python peers (peer.node.Peer, real aiortc) chat in one room: same order
everywhere, a short-TTL message vanishes everywhere (and from IndexedDB), a reload keeps history, a
Python unsend reaches the pages.

Everything runs on the harness loop: Chromium (Playwright), the real signaling server that serves ``web/``
and the Python peers, so WebRTC links between all four are real. Every wait is on a condition.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer, RoomHandle

from .harness import ARTIFACTS, BrowserHarness
from .pages import wait_async

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000
WAIT_S = 30.0

ORDER_JS = "() => window.ephemesh.store.getState().messages.map((m) => [m.sender, m.text])"
COUNT_OPEN_JS = """n => Object.values(window.ephemesh.store.getState().members)
  .filter((m) => m.link === 'open').length === n"""
HAS_TEXT_JS = "t => window.ephemesh.store.getState().messages.some((m) => m.text === t)"
LACKS_TEXT_JS = "t => !window.ephemesh.store.getState().messages.some((m) => m.text === t)"
STORED_JS = """async ([roomId, sender, seq]) => {
  const db = await new Promise((res, rej) => { const r = indexedDB.open('ephemesh-rooms', 1);
    r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
  const get = (store) => new Promise((res) => { const r = db.transaction(store).objectStore(store).get([roomId, sender, seq]);
    r.onsuccess = () => res(r.result !== undefined); });
  const out = { envelope: await get('envelopes'), key: await get('msgkeys'), tombstone: await get('tombstones') };
  db.close();
  return out;
}"""


async def _page(browser: Browser, url: str, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport, bypass_csp=True)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
    return page


def _py_order(room: RoomHandle) -> list[list[str]]:
    return [[m.sender, m.text] for m in room.messages()]


async def _wait_text_everywhere(pages: list[Page], rooms: list[RoomHandle], text: str, present: bool) -> None:
    js = HAS_TEXT_JS if present else LACKS_TEXT_JS
    for page in pages:
        await page.wait_for_function(js, arg=text, timeout=WAIT_MS)
    for r in rooms:
        await r.wait_for(lambda r=r: any(m.text == text for m in r.messages()) == present, WAIT_S)


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        peers = [Peer(home=tmp / f"py{i}") for i in range(2)]
        pages: list[Page] = []
        try:
            rooms = [await p.join(invite) for p in peers]
            pages = [await _page(browser, invite.url(), DESKTOP), await _page(browser, invite.url(), PHONE)]
            ids = [p.peer_id for p in peers] + [
                await pg.evaluate("window.ephemesh.identity.peerId") for pg in pages
            ]
            # Everyone is linked (handshake + sync HELLO done) with everyone else.
            for page in pages:
                await page.wait_for_function(COUNT_OPEN_JS, arg=3, timeout=WAIT_MS)
            for r in rooms:
                await r.wait_for(lambda r=r: len(r.online_members()) == 3, WAIT_S)

            # Concurrent sends from all four; then every member shows the same order.
            texts = [
                "py0: hi from Python",
                "web0: hi from the desktop",
                "py1: hello",
                "web1: hi from the phone",
            ]
            await asyncio.gather(
                rooms[0].send(texts[0]),
                pages[0].evaluate("t => window.ephemesh.app.sendText(t)", texts[1]),
                rooms[1].send(texts[2]),
                pages[1].evaluate("t => window.ephemesh.app.sendText(t)", texts[3]),
            )
            for t in texts:
                await _wait_text_everywhere(pages, rooms, t, present=True)
            orders = [_py_order(r) for r in rooms] + [await pg.evaluate(ORDER_JS) for pg in pages]

            # A short-TTL message from the desktop page vanishes from every page and every Python peer,
            # and its envelope and key leave the page's IndexedDB (a tombstone stays).
            await pages[0].evaluate("window.ephemesh.store.dispatch({type: 'set-ttl', ttlS: 5})")
            await pages[0].evaluate("t => window.ephemesh.app.sendText(t)", "vanishing in 5 s")
            await _wait_text_everywhere(pages, rooms, "vanishing in 5 s", present=True)
            short = next(m for m in rooms[0].messages() if m.text == "vanishing in 5 s")
            room_id = invite.room_id
            stored_before = await pages[0].evaluate(STORED_JS, [room_id, short.sender, short.seq])
            await _wait_text_everywhere(pages, rooms, "vanishing in 5 s", present=False)
            await pages[0].locator("#messages li", has_text="vanishing").wait_for(state="detached")
            await pages[1].locator("#messages li", has_text="vanishing").wait_for(state="detached")
            await wait_async(  # (an async predicate: wait_for_function would not wait for it)
                pages[0],
                """async (a) => { const { loadSnapshot } = await import('/js/store/room.js');
                  const s = await loadSnapshot(a[0], Date.now());
                  return !s.messageKeys.has(a[1] + ':' + a[2]); }""",
                [room_id, short.sender, short.seq],
                timeout_ms=WAIT_MS,
            )
            stored_after = await pages[0].evaluate(STORED_JS, [room_id, short.sender, short.seq])

            # Reload the phone page: history that has not expired is shown again (from IndexedDB),
            # then the page rejoins the mesh.
            await pages[1].reload()
            await pages[1].wait_for_function(
                "window.ephemesh !== undefined && window.ephemesh.app.room !== null"
            )
            after_reload = await pages[1].evaluate(ORDER_JS)
            await pages[1].wait_for_function(COUNT_OPEN_JS, arg=3, timeout=WAIT_MS)
            await pages[1].evaluate("t => window.ephemesh.app.sendText(t)", "web1: back after reload")
            await _wait_text_everywhere(pages, rooms, "web1: back after reload", present=True)
            final_orders = [_py_order(r) for r in rooms] + [await pg.evaluate(ORDER_JS) for pg in pages]

            # A Python peer unsends one of its messages: the signed TOMBSTONE removes it from every page.
            victim = next(m for m in rooms[1].messages() if m.text == texts[2])
            unsent = await rooms[1].unsend(victim.id)
            await _wait_text_everywhere(pages, rooms, texts[2], present=False)

            for page in pages:
                await page.evaluate("window.ephemesh.store.dispatch({type: 'tick', now: Date.now()})")
            await pages[0].screenshot(
                path=str(ARTIFACTS / "chat-desktop-1280x800.png"), animations="disabled"
            )
            await pages[1].screenshot(path=str(ARTIFACTS / "chat-phone-390x844.png"), animations="disabled")
            return {
                "ids": ids,
                "texts": texts,
                "orders": orders,
                "stored_before": stored_before,
                "stored_after": stored_after,
                "after_reload": after_reload,
                "final_orders": final_orders,
                "unsent": unsent,
                "errors": [r.core.error_summary() for r in rooms],
            }
        finally:
            for page in pages:
                await page.context.close()
            for p in peers:
                await p.close()

    return run


def test_browsers_and_python_peers_chat_in_one_room(
    harness: BrowserHarness, artifacts: Path, tmp_path: Path
) -> None:
    if not harness.real_signaling:
        pytest.skip("signaling.app is not available")
    r = harness.run(_scenario(tmp_path), timeout=110)
    first = r["orders"][0]
    assert sorted(t for _, t in first) == sorted(r["texts"])
    assert {s for s, _ in first} == set(r["ids"])
    for other in r["orders"][1:]:
        assert other == first  # the same (lamport, sender, seq) order on every member, both languages
    assert r["stored_before"] == {"envelope": True, "key": True, "tombstone": False}
    assert r["stored_after"] == {"envelope": False, "key": False, "tombstone": True}
    assert r["after_reload"] == first  # shown from IndexedDB right after the reload
    final = r["final_orders"][0]
    assert final[:4] == first
    assert final[4][1] == "web1: back after reload"
    for other in r["final_orders"][1:]:
        assert other == final
    assert r["unsent"] is True
    for name in ("chat-desktop-1280x800.png", "chat-phone-390x844.png"):
        assert (artifacts / name).stat().st_size > 1000
    # docs/img screenshots come from test_features_interop.py (names, a reply, an edit, reactions)
