"""Many rooms in one page, many tabs of one browser, one identity (real Chromium, real server, real
Python peers over aiortc).

Tab A holds two rooms over one signaling connection; tab B (same origin, so the same identity) is opened
on one of them: it says plainly that ephemesh is open in another tab and forwards the invite. For ~30 s
of traffic in both rooms: no banner, no flip of A's connection state, both rooms deliver, unread counts
follow what was not shown. A third tab opened and closed changes nothing (no `replaced` close on the
server). Then B takes over ("Use ephemesh in this tab"): A stops and says so, once; B runs both rooms.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
WAIT_S = 30.0
SOAK_S = 30.0

OWNER_JS = "() => window.ephemesh.shell.owner"
ROOMS_JS = "() => [...window.ephemesh.shell.rooms.keys()].sort()"
HAS_TEXT_JS = """([room, t]) => { const c = window.ephemesh.shell.rooms.get(room);
  return !!c && c.store.getState().messages.some((m) => m.text === t); }"""
OPEN_JS = """([room, n]) => { const c = window.ephemesh.shell.rooms.get(room);
  return !!c && c.store.getState().connection === 'online'
    && Object.values(c.store.getState().members).filter((m) => m.link === 'open').length === n; }"""
UNREAD_JS = """() => Object.fromEntries([...window.ephemesh.shell.rooms].map(([id, c]) =>
  [id, window.ephemesh.shell.unread(c)]))"""
SHOWN_UNREAD_JS = """() => Object.fromEntries([...document.querySelectorAll('#room-list li')].map((li) =>
  [li.dataset.room, Number(li.dataset.unread)]))"""
RECORD_JS = """() => {
  window.__log = [];
  const rec = () => {
    const row = [document.getElementById('conn-state').dataset.state ?? '',
      document.getElementById('error').hidden, document.getElementById('elsewhere').hidden];
    const last = window.__log[window.__log.length - 1];
    if (!last || last.join() !== row.join()) window.__log.push(row);
  };
  new MutationObserver(rec).observe(document.body,
    { attributes: true, subtree: true, attributeFilter: ['data-state', 'hidden'] });
  for (const [, c] of window.ephemesh.shell.rooms) c.store.subscribe(() => {
    const s = c.store.getState();
    if (s.connection !== 'online' || s.error) window.__log.push(['store', s.connection, s.error?.code ?? '']);
  });
  rec();
}"""


async def replaced_closes(base: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if "closes_total" in line and 'code="replaced"' in line:
            return int(float(line.split()[-1]))
    return 0


async def ready(page: Page) -> None:
    await page.wait_for_function("window.ephemesh !== undefined")


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        inv1, inv2 = Invite.new(base_url, ttl_s=3600), Invite.new(base_url, ttl_s=3600)
        r1_id, r2_id = inv1.room_id, inv2.room_id
        py1, py2 = Peer(home=tmp / "py1"), Peer(home=tmp / "py2")
        context = await browser.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=True)
        out: dict[str, Any] = {}
        try:
            room1, room2 = await py1.join(inv1), await py2.join(inv2)
            replaced_before = await replaced_closes(base_url)

            # Tab A: room 1 from its invite, room 2 through "+" and the join form: two rooms, one page.
            a = await context.new_page()
            await a.goto(inv1.url())
            await ready(a)
            await a.wait_for_function(OPEN_JS, arg=[r1_id, 1], timeout=WAIT_MS)
            await a.get_by_role("button", name="New room or join one").click()
            await a.get_by_label("Paste an invite link").fill(inv2.url())
            await a.get_by_role("button", name="Open invite").click()
            await a.wait_for_function(OPEN_JS, arg=[r2_id, 1], timeout=WAIT_MS)
            out["rooms_a"] = await a.evaluate(ROOMS_JS)
            out["connections_a"] = await a.evaluate("window.ephemesh.shell.hub.connections")
            out["current_a"] = await a.evaluate("window.ephemesh.store.getState().roomId")

            # Tab B, same origin (same identity), opened on room 2: it does not connect, it says so.
            b = await context.new_page()
            await b.goto(inv2.url())
            await ready(b)
            await b.locator("#elsewhere").wait_for(state="visible")
            out["b_owner"] = await b.evaluate(OWNER_JS)
            out["b_forwarded"] = await b.locator("#elsewhere-forwarded").is_visible()
            await a.bring_to_front()
            await a.wait_for_function("document.visibilityState === 'visible'")
            await a.evaluate(RECORD_JS)

            # ~30 s of traffic in both rooms (each message waited for, never a fixed sleep)
            loop = asyncio.get_running_loop()
            end = loop.time() + SOAK_S
            sent = {r1_id: 0, r2_id: 0}
            third_done = False
            while loop.time() < end:
                for room, rid in ((room1, r1_id), (room2, r2_id)):
                    text = f"{rid[:4]} #{sent[rid]}"
                    await room.send(text)
                    sent[rid] += 1
                    await a.wait_for_function(HAS_TEXT_JS, arg=[rid, text], timeout=WAIT_MS)
                if not third_done and loop.time() > end - SOAK_S / 2:
                    # a third tab, opened and closed: nothing changes
                    c = await context.new_page()
                    await c.goto(base_url + "/")
                    await ready(c)
                    await c.locator("#elsewhere").wait_for(state="visible")
                    out["c_owner"] = await c.evaluate(OWNER_JS)
                    await c.close()
                    await a.bring_to_front()
                    third_done = True
            out["sent"] = sent
            out["log_a"] = await a.evaluate("window.__log")
            out["unread"] = await a.evaluate(UNREAD_JS)
            out["shown_unread"] = await a.evaluate(SHOWN_UNREAD_JS)
            out["a_owner"] = await a.evaluate(OWNER_JS)
            out["b_still_elsewhere"] = await b.locator("#elsewhere").is_visible()
            out["replaced"] = await replaced_closes(base_url) - replaced_before
            out["connections_a_after"] = await a.evaluate("window.ephemesh.shell.hub.connections")
            # switching to room 1 reads it: its unread count goes to 0
            await a.locator(f'#room-list .room-open[data-room="{r1_id}"]').click()
            await a.wait_for_function(
                "id => window.ephemesh.shell.unread(window.ephemesh.shell.rooms.get(id)) === 0", arg=r1_id
            )

            # B takes over: A stops and shows the notice; B runs both rooms and delivers.
            await b.bring_to_front()
            await b.get_by_role("button", name="Use ephemesh in this tab").click()
            await b.wait_for_function(OWNER_JS)
            await a.locator("#elsewhere").wait_for(state="visible")
            out["a_owner_after"] = await a.evaluate(OWNER_JS)
            await b.wait_for_function(OPEN_JS, arg=[r1_id, 1], timeout=WAIT_MS)
            await b.wait_for_function(OPEN_JS, arg=[r2_id, 1], timeout=WAIT_MS)
            out["rooms_b"] = await b.evaluate(ROOMS_JS)
            await room1.send("after the handover")
            await b.wait_for_function(HAS_TEXT_JS, arg=[r1_id, "after the handover"], timeout=WAIT_MS)
            await room2.wait_for(lambda: len(room2.online_members()) == 1, WAIT_S)
            return out
        finally:
            await context.close()
            await py1.close()
            await py2.close()

    return run


def test_two_tabs_two_rooms_one_identity(harness: BrowserHarness, tmp_path: Path) -> None:
    if not harness.real_signaling:
        pytest.skip("needs the real signaling server")
    out = harness.run(_scenario(tmp_path), timeout=240)
    assert sorted(out["rooms_a"]) == out["rooms_a"]
    assert len(out["rooms_a"]) == 2
    assert out["connections_a"] == 1  # one signaling connection for both rooms
    assert out["b_owner"] is False
    assert out["b_forwarded"] is True
    assert out["c_owner"] is False
    # no flip: A's connection stayed online, no banner, never the "elsewhere" notice
    assert out["log_a"] == [["online", True, True]], out["log_a"]
    assert out["a_owner"] is True
    assert out["b_still_elsewhere"] is True
    assert out["replaced"] == 0
    assert out["connections_a_after"] == 1
    assert min(out["sent"].values()) >= 5
    # room 2 was shown all along (read); room 1's messages arrived unseen
    r1, r2 = sorted(out["sent"])
    shown = out["current_a"]
    hidden = r1 if shown == r2 else r2
    assert out["unread"] == {shown: 0, hidden: out["sent"][hidden]}
    assert out["shown_unread"] == out["unread"]
    assert out["a_owner_after"] is False
    assert sorted(out["rooms_b"]) == sorted(out["rooms_a"])
