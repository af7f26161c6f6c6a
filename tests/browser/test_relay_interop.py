"""Signaling through the mesh between a browser page and Python peers (real Chromium, real aiortc).

A page W and two Python peers P and Q join through a signaling server of their own; the server stops.
1. The page relays: P and Q forget each other and their link drops; W is their only common neighbour,
   so their offer/answer goes through the page and they link again and chat.
2. The page receives relayed payloads: W's link to Q drops and both forget each other; P's reach gossip
   names Q to the page (and W to Q), and their signaling goes through P. The page and Q link again
   and chat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer, RoomHandle
from signaling.app import start_server
from signaling.config import SignalingConfig

from .harness import WEB_DIR, BrowserHarness

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
WAIT_S = 30.0
OPEN_JS = "p => window.ephemesh.store.getState().members[p]?.link === 'open'"
NOT_OPEN_JS = "p => window.ephemesh.store.getState().members[p]?.link !== 'open'"
HAS_TEXT_JS = "t => window.ephemesh.store.getState().messages.some((m) => m.text === t)"
COUNTERS_JS = "() => [window.ephemesh.app.signalsRelayed, window.ephemesh.app.signalsReceivedRelayed]"
SERVER_GONE_JS = "() => window.ephemesh.app.present.size === 0"


async def _has(room: RoomHandle, text: str) -> None:
    await room.wait_for(lambda: any(m.text == text for m in room.messages()), WAIT_S)


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, _base_url: str) -> dict[str, Any]:
        runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0, web_root=WEB_DIR))
        server = f"http://127.0.0.1:{port}"
        invite = Invite.new(server, ttl_s=3600)
        peers = [Peer(home=tmp / n, reconnect_initial=60.0) for n in ("p", "q")]
        page: Page | None = None
        try:
            p, q = [await x.join(invite) for x in peers]
            context = await browser.new_context(bypass_csp=True)
            page = await context.new_page()
            await page.goto(invite.url())
            await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
            w: str = await page.evaluate("window.ephemesh.identity.peerId")
            for other in (p.peer_id, q.peer_id):
                await page.wait_for_function(OPEN_JS, arg=other, timeout=WAIT_MS)
            for r in (p, q):
                await r.wait_for(lambda r=r: len(r.online_members()) == 2, WAIT_S)
            await p.wait_for(lambda: server in p.reach_hints(), WAIT_S)  # the page announced its server
            await runner.cleanup()
            await page.wait_for_function(SERVER_GONE_JS, timeout=WAIT_MS)
            for r in (p, q):
                await r.wait_for(lambda r=r: not r.server_present, WAIT_S)
            assert p.mesh is not None
            assert q.mesh is not None

            # 1. the page relays P <-> Q
            before = await page.evaluate(COUNTERS_JS)
            p.mesh.peer_left(q.peer_id)
            q.mesh.peer_left(p.peer_id)
            p.mesh.drop_link(q.peer_id)
            await p.wait_for(lambda: q.peer_id not in p.online_members(), WAIT_S)
            await p.wait_for(lambda: q.peer_id in p.online_members(), WAIT_S)
            await q.wait_for(lambda: p.peer_id in q.online_members(), WAIT_S)
            msg = await p.send("P to Q, introduced by the page")
            await _has(q, msg.text)
            relayed_by_page = [p.signals_received_relayed, q.signals_received_relayed]

            # 2. the page receives relayed payloads from Q through P
            q.mesh.peer_left(w)
            await page.evaluate("p => window.ephemesh.app.mesh.removePeer(p)", q.peer_id)
            await page.wait_for_function(NOT_OPEN_JS, arg=q.peer_id, timeout=WAIT_MS)
            await q.wait_for(lambda: w not in q.online_members(), WAIT_S)
            await page.wait_for_function(OPEN_JS, arg=q.peer_id, timeout=WAIT_MS)
            await q.wait_for(lambda: w in q.online_members(), WAIT_S)
            reply = await q.send("Q to the page, through P's relay")
            await page.wait_for_function(HAS_TEXT_JS, arg=reply.text, timeout=WAIT_MS)
            await page.evaluate("t => window.ephemesh.app.sendText(t)", "page to Q again")
            await _has(q, "page to Q again")
            after = await page.evaluate(COUNTERS_JS)
            info = q.link(w)
            return {
                "before": before,
                "after": after,
                "relayed_by_page": relayed_by_page,
                "q_received_relayed": q.signals_received_relayed,
                "q_link": None if info is None else info.state.value,
                "errors": [r.core.error_summary() for r in (p, q)],
            }
        finally:
            if page is not None:
                await page.context.close()
            for x in peers:
                await x.close()
            await runner.cleanup()

    return run


def test_browser_relays_and_receives_relayed_signaling(harness: BrowserHarness, tmp_path: Path) -> None:
    if not harness.real_signaling:
        pytest.skip("signaling.app is not available")
    r = harness.run(_scenario(tmp_path), timeout=150)
    assert r["relayed_by_page"][0] > 0  # P and Q opened payloads that only the page could have carried
    assert r["relayed_by_page"][1] > 0
    sent_before, got_before = r["before"]
    sent_after, got_after = r["after"]
    assert got_after > got_before  # the page opened payloads relayed to it by P
    assert sent_after > sent_before  # and sent its own through P
    assert r["q_link"] in ("direct", "relayed")
    assert r["errors"] == [[], []]
