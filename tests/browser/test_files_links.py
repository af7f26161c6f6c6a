"""The page's files channel when the link is formed by a Python offer (real aiortc, real Chromium).

Chromium 156 has a quirk that stalled downloads: a message sent on a data channel the page *received*
(``ondatachannel``), from the task that delivered it or a microtask of it, goes out but stays counted in
``bufferedAmount`` for good. The page's transfer pump sends only when ``bufferedAmount`` is 0, so a
download that was waiting when such a link came up sent one WANT and then nothing, forever (the 50 MB
reload test failed so in CI whenever the Python peer had the lower id and offered).

- the quirk itself, without ephemesh: aiortc offers, the page sends on the received channel at once and,
  on another link, from the next task; only the second count comes back to 0;
- the user-facing case: a download waiting for a holder (the only one went offline) completes when that
  holder comes back and offers the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness
from .pages import DIGEST_JS, DONE_JS, HAS_MESSAGE_JS, OPEN_JS, READY_JS, home_below

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
WAIT_S = 60.0
# The page answers an aiortc offer and sends 37 bytes on the received "files" channel: at once in
# ondatachannel ("now") or from the next task ("next"); it reports what it received.
ANSWER_JS = """async ([offer, when]) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const res = { got: 0 };
  pc.ondatachannel = (ev) => {
    if (ev.channel.label !== 'files') return;
    const ch = ev.channel;
    const send = () => ch.send(new Uint8Array(37));
    const go = () => (when === 'now' ? send() : setTimeout(send, 0));
    if (ch.readyState === 'open') go(); else ch.onopen = go;
    ch.onmessage = () => { res.got += 1; };
    window.quirk = { pc, ch, res };
  };
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((r) => {
    if (pc.iceGatheringState === 'complete') r();
    else pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
  });
  return { sdp: pc.localDescription.sdp, type: pc.localDescription.type };
}"""


async def _buffered_after_echo(page: Page, when: str) -> int:
    """aiortc offers; the page sends on the received channel (``when``); once aiortc has the message and
    the page has aiortc's reply, the page's ``bufferedAmount`` (the message has left: it was answered)."""
    pc = RTCPeerConnection()
    try:
        pc.createDataChannel("chat")
        files = pc.createDataChannel("files")
        got = asyncio.Event()
        files.on("message", lambda _m: got.set())
        await pc.setLocalDescription(await pc.createOffer())
        answer = await page.evaluate(ANSWER_JS, [{"sdp": pc.localDescription.sdp, "type": "offer"}, when])
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        await asyncio.wait_for(got.wait(), WAIT_S)
        files.send(b"r" * 100)
        await page.wait_for_function("window.quirk.res.got >= 1", timeout=WAIT_MS)
        # the count of a message that left comes back in a later task: wait for it (what the page does:
        # as long as the test allows; the quirk: a short while, then report what is still counted)
        with contextlib.suppress(PlaywrightTimeout):
            await page.wait_for_function(
                "window.quirk.ch.bufferedAmount === 0", timeout=WAIT_MS if when == "next" else 2_000
            )
        return int(await page.evaluate("window.quirk.ch.bufferedAmount"))
    finally:
        await page.evaluate("window.quirk && window.quirk.pc.close()")
        await pc.close()


def test_chromium_counts_a_send_from_the_datachannel_task_for_good(harness: BrowserHarness) -> None:
    async def run(browser: Browser, base_url: str) -> tuple[int, int]:
        page = await browser.new_page()
        try:
            await page.goto("about:blank")  # no ephemesh here: the platform alone
            return await _buffered_after_echo(page, "next"), await _buffered_after_echo(page, "now")
        finally:
            await page.close()

    later, at_once = harness.run(run, timeout=90)
    assert later == 0  # what web/js/net/files.js does: a received channel starts on the next task
    # the quirk (Chromium 156). If this fails, Chromium fixed it; the deferral in files.js may stay.
    print("bufferedAmount after a send in the ondatachannel task:", at_once)


def test_a_download_waiting_for_a_holder_completes_when_the_holder_comes_back_and_offers(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    if not harness.real_signaling:
        pytest.skip("needs the real signaling server")

    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        context = await browser.new_context(bypass_csp=True)
        holder: Peer | None = None
        try:
            page = await context.new_page()
            await page.goto(invite.url())
            await page.wait_for_function(READY_JS)
            await page.evaluate("window.ephemesh.app.files.autoFetch = 0")  # fetch on request only
            page_id = await page.evaluate("window.ephemesh.identity.peerId")
            home = home_below(tmp_path, page_id)
            data = os.urandom(2_000_000)
            src = tmp_path / "two.bin"
            src.write_bytes(data)

            holder = Peer(home=home)
            room = await holder.join(invite)
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            msg = await room.send_file(src)
            await page.wait_for_function(HAS_MESSAGE_JS, arg=msg.id, timeout=WAIT_MS)
            await holder.close()  # the only holder goes offline...
            holder = None
            await page.wait_for_function(OPEN_JS, arg=0, timeout=WAIT_MS)
            await page.evaluate(
                "id => { void window.ephemesh.app.fetchFile(id); }", msg.id
            )  # ...the user asks

            holder = Peer(home=home)  # ...and it comes back: it has the lower id, so it offers the link
            await holder.join(invite)
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            await page.wait_for_function(DONE_JS, arg=msg.id, timeout=WAIT_MS)
            return {
                "ok": await page.evaluate(DIGEST_JS, msg.id) == hashlib.sha256(data).hexdigest(),
                "offered_by_python": holder.peer_id < page_id,
            }
        finally:
            await context.close()
            if holder is not None:
                await holder.close()

    r = harness.run(run, timeout=180)
    assert r["offered_by_python"]
    assert r["ok"]
