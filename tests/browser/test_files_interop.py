"""Attachments between browser pages and a Python peer (real aiortc, real Chromium, real signaling):
Python -> browser and browser -> Python transfers verified byte for byte, a pasted image shown inline
on the other page (thumbnail, then the image), a voice note recorded with Chromium's fake microphone and
played back on the other page, and an unsend that takes the file away from every page."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
WAIT_S = 60.0
COUNT_OPEN_JS = """n => Object.values(window.ephemesh.store.getState().members)
  .filter((m) => m.link === 'open').length === n"""
FILE_DONE_JS = """name => Object.values(window.ephemesh.store.getState().attachments)
  .some((a) => a.name === name && a.done && a.url)"""
DIGEST_JS = """async name => {
  const a = Object.values(window.ephemesh.store.getState().attachments).find((x) => x.name === name);
  const buf = await (await fetch(a.url)).arrayBuffer();
  return [...new Uint8Array(await crypto.subtle.digest('SHA-256', buf))].map((b) => b.toString(16).padStart(2, '0')).join('');
}"""
SEND_BLOB_JS = """async ([name, size]) => {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 9)) & 255;
  const m = await window.ephemesh.app.sendFile(new Blob([data]), name, 'application/octet-stream');
  return [m.id, [...new Uint8Array(await crypto.subtle.digest('SHA-256', data))].map((b) => b.toString(16).padStart(2, '0')).join('')];
}"""
PASTE_IMAGE_JS = """async () => {
  const c = new OffscreenCanvas(400, 300);
  const g = c.getContext('2d');
  g.fillStyle = '#c33'; g.fillRect(0, 0, 400, 300); g.fillStyle = '#3c3'; g.fillRect(100, 75, 200, 150);
  const blob = await c.convertToBlob({ type: 'image/png' });
  const dt = new DataTransfer();
  dt.items.add(new File([blob], 'image.png', { type: 'image/png' }));
  document.getElementById('composer-input').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
}"""


async def _page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, permissions=["microphone"]
    )
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
    return page


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        peer = Peer(home=tmp / "py")
        pages: list[Page] = []
        try:
            room = await peer.join(invite)
            pages = [await _page(browser, invite.url()), await _page(browser, invite.url())]
            for page in pages:
                await page.wait_for_function(COUNT_OPEN_JS, arg=2, timeout=WAIT_MS)
            await room.wait_for(lambda: len(room.online_members()) == 2, WAIT_S)
            a, b = pages

            # Python -> browsers: both pages fetch it (from Python, and from each other), same bytes
            src = tmp / "from-python.bin"
            data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(40_000))  # 1.28 MB
            src.write_bytes(data)
            await room.send_file(src)
            for page in pages:
                await page.wait_for_function(FILE_DONE_JS, arg="from-python.bin", timeout=WAIT_MS)
                assert await page.evaluate(DIGEST_JS, "from-python.bin") == hashlib.sha256(data).hexdigest()

            # browser -> Python: verified and saved by the Python peer
            msg_id, digest = await a.evaluate(SEND_BLOB_JS, ["from-browser.bin", 700_000])
            await room.wait_for(lambda: any(m.id == msg_id for m in room.messages()), WAIT_S)
            out = await room.attachment(msg_id).save(tmp / "saved.bin", timeout=WAIT_S)
            assert hashlib.sha256(out.read_bytes()).hexdigest() == digest

            # a file over page B's auto-fetch size waits for its download button, which shows progress
            await b.evaluate("window.ephemesh.app.files.autoFetch = 100000")
            big = tmp / "big.bin"
            big_data = b"".join(hashlib.sha256(b"big" + i.to_bytes(4, "big")).digest() for i in range(60_000))
            big.write_bytes(big_data)
            await room.send_file(big)
            # (by its file: page B may still be assembling from-browser.bin, whose button reads "Downloading… 100%")
            button = b.locator("#messages button[data-action='fetch-file'][aria-label='Download big.bin']")
            await button.wait_for(timeout=WAIT_MS)
            assert not await b.evaluate(FILE_DONE_JS, "big.bin")  # nothing fetched before the click
            await b.evaluate(
                """() => { window.__progress = []; window.ephemesh.store.subscribe((s) => {
                  const a = Object.values(s.attachments).find((x) => x.name === 'big.bin');
                  const bar = document.querySelector('#messages progress.attachment-progress');
                  if (a) window.__progress.push([a.bytes, bar ? bar.value : null]); }); }"""
            )
            await button.click()
            await b.wait_for_function(FILE_DONE_JS, arg="big.bin", timeout=WAIT_MS)
            progress = await b.evaluate("window.__progress")
            assert any(0 < n < len(big_data) for n, _ in progress)  # the bar moved through the download
            assert any(v is not None and 0 < v < 100 for _, v in progress)
            assert await b.evaluate(DIGEST_JS, "big.bin") == hashlib.sha256(big_data).hexdigest()
            assert await b.locator("#messages a.attachment-save", has_text="Save").count() >= 1

            # a pasted image on page A shows inline on page B
            await a.evaluate(PASTE_IMAGE_JS)
            await b.wait_for_function(
                """() => [...document.querySelectorAll('#messages img.attachment-image')]
                    .some((i) => i.complete && i.naturalWidth === 400 && i.alt.startsWith('pasted'))""",
                timeout=WAIT_MS,
            )
            py_img = next(m for m in room.messages() if m.file is not None and m.file.mime == "image/png")
            assert py_img.file is not None

            # a voice note recorded on page A (fake microphone) plays on page B
            await a.click("#record-button")
            await a.wait_for_function(
                "document.getElementById('record-button').getAttribute('aria-pressed') === 'true'"
            )
            await a.wait_for_timeout(700)  # the recording's length (not a synchronisation)
            await a.click("#record-button")
            await b.wait_for_function(
                "document.querySelector('#messages audio.attachment-audio') !== null", timeout=WAIT_MS
            )
            played = await b.evaluate(
                """async () => {
                  const audio = document.querySelector('#messages audio.attachment-audio');
                  audio.muted = true;
                  await audio.play();
                  await new Promise((res) => { const t = () => audio.currentTime > 0 ? res() : setTimeout(t, 20); t(); });
                  return [audio.currentTime > 0, audio.error === null];
                }"""
            )
            assert played == [True, True]
            voice = await b.evaluate(
                "() => Object.values(window.ephemesh.store.getState().attachments).find((a) => a.mime.startsWith('audio/'))"
            )
            assert voice["durationMs"] >= 500
            assert voice["done"]

            # the Python sender unsends its file: it leaves every page
            first = next(
                m for m in room.messages() if m.file is not None and m.file.name == "from-python.bin"
            )
            assert await room.unsend(first.id)
            for page in pages:
                await page.wait_for_function(
                    """name => !Object.values(window.ephemesh.store.getState().attachments).some((a) => a.name === name)
                      && !window.ephemesh.store.getState().messages.some((m) => m.file && m.file.name === name)""",
                    arg="from-python.bin",
                    timeout=WAIT_MS,
                )
                held = await page.evaluate(
                    "() => [...window.ephemesh.app.files.blobs.values()].filter((b) => !window.ephemesh.app.files.files.has(b.file)).length"
                )
                assert held == 0
            return {"ok": True}
        finally:
            for page in pages:
                await page.context.close()
            await peer.close()

    return run


def test_files_between_browsers_and_python(harness: BrowserHarness, tmp_path: Path) -> None:
    if not harness.real_signaling:
        pytest.skip("needs the real signaling server")
    assert harness.run(_scenario(tmp_path), timeout=240) == {"ok": True}
