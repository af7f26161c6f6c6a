"""Attachments at rest in the browser (IndexedDB), with a Python peer (real aiortc, Chromium, signaling):

- a fetched file's blobs are in IndexedDB, and nothing at rest in any of the page's databases holds its
  file key (raw or base64url), its name or a plaintext sample, before or after expiry;
- when its message expires, its blobs leave IndexedDB and its message key leaves the room store;
- an unsent file's blobs leave IndexedDB;
- a file whose message expired while the page was closed is erased from IndexedDB when it opens again;
- limits: a file over the room's quota is refused with the reason under it, and a file over the per-file
  limit is refused before sending with a banner that says so;
- a room left in this browser leaves none of its files' blobs behind.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.crypto import b64u_encode
from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness
from .pages import (
    DONE_JS,
    OPEN_JS,
    READY_JS,
    SCAN_JS,
    STATE,
    close_all,
    need_signaling,
    open_page,
    wait_async,
)

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
WAIT_S = 60.0
GONE_JS = f"id => !{STATE}.messages.some((m) => m.id === id) && !{STATE}.attachments[id]"
# [fileId, blobId] of every blob record (and of every size record) in IndexedDB, after pending writes
STORED_JS = """async () => {
  await window.ephemesh.app.files.settled();
  const db = await new Promise((res, rej) => { const r = indexedDB.open('ephemesh-blobs'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
  const keys = (name) => new Promise((res, rej) => { const r = db.transaction(name).objectStore(name).getAllKeys(); r.onsuccess = () => res(r.result.map((k) => [k[1], k[2]])); r.onerror = () => rej(r.error); });
  const out = { blobs: await keys('blobs'), sizes: await keys('sizes') };
  db.close();
  return out;
}"""
# the message keys the page's room store holds: [sender, seq] of each
MSGKEYS_JS = """async () => {
  const db = await new Promise((res, rej) => { const r = indexedDB.open('ephemesh-rooms'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
  const keys = await new Promise((res, rej) => { const r = db.transaction('msgkeys').objectStore('msgkeys').getAllKeys(); r.onsuccess = () => res(r.result.map((k) => [k[1], k[2]])); r.onerror = () => rej(r.error); });
  db.close();
  return keys;
}"""


def _file_ids(stored: dict[str, list[list[str]]], file_id: str) -> tuple[int, int]:
    return (
        sum(1 for f, _ in stored["blobs"] if f == file_id),
        sum(1 for f, _ in stored["sizes"] if f == file_id),
    )


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py")
        page: Page | None = None
        out: dict[str, Any] = {}
        try:
            room = await py.join(invite)
            page = await open_page(browser, invite.url())
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            await room.wait_for(lambda: len(room.online_members()) == 1, WAIT_S)

            # a short-lived file: fetched, stored as ciphertext only, erased at expiry
            name = "quarterly-secret-report.bin"
            plain = os.urandom(300_000)
            src = tmp / name
            src.write_bytes(plain)
            msg = await room.send_file(src, ttl=12)
            assert msg.file is not None
            ref = msg.file
            await page.wait_for_function(DONE_JS, arg=msg.id, timeout=WAIT_MS)
            needles = [b64u_encode(ref.key), b64u_encode(plain[1000:1032]), b64u_encode(name.encode())]
            texts = [b64u_encode(ref.key), name]
            stored = await page.evaluate(STORED_JS)
            out["held_before"] = _file_ids(stored, ref.file_id)
            out["scan_before"] = await page.evaluate(SCAN_JS, [needles, texts])
            sender, seq = msg.id.rsplit(":", 1)
            out["msgkey_before"] = [sender, int(seq)] in await page.evaluate(MSGKEYS_JS)
            await page.wait_for_function(GONE_JS, arg=msg.id, timeout=WAIT_MS)
            stored = await page.evaluate(STORED_JS)
            out["held_after"] = _file_ids(stored, ref.file_id)
            out["scan_after"] = await page.evaluate(SCAN_JS, [needles, texts])
            out["msgkey_after"] = [sender, int(seq)] in await page.evaluate(MSGKEYS_JS)

            # an unsent file leaves IndexedDB
            src2 = tmp / "unsent.bin"
            src2.write_bytes(os.urandom(100_000))
            msg2 = await room.send_file(src2)
            assert msg2.file is not None
            await page.wait_for_function(DONE_JS, arg=msg2.id, timeout=WAIT_MS)
            out["unsent_before"] = _file_ids(await page.evaluate(STORED_JS), msg2.file.file_id)
            assert await room.unsend(msg2.id)
            await page.wait_for_function(GONE_JS, arg=msg2.id, timeout=WAIT_MS)
            out["unsent_after"] = _file_ids(await page.evaluate(STORED_JS), msg2.file.file_id)

            # a file that expires while the page is closed is erased when it opens again
            src3 = tmp / "while-closed.bin"
            src3.write_bytes(os.urandom(100_000))
            msg3 = await room.send_file(src3, ttl=8)
            assert msg3.file is not None
            await page.wait_for_function(DONE_JS, arg=msg3.id, timeout=WAIT_MS)
            out["closed_before"] = _file_ids(await page.evaluate(STORED_JS), msg3.file.file_id)
            await page.goto("about:blank")  # the page is closed (its context, hence IndexedDB, stays)
            # real time must pass the message's signed expiry while the page is away (not a synchronisation)
            await asyncio.sleep(max(0.0, msg3.expires_at / 1000 + 1 - time.time()))
            await page.goto(invite.url())
            await page.wait_for_function(READY_JS, timeout=WAIT_MS)
            # the start-up erasure runs once the room is open (the room is set before it finishes)
            await wait_async(
                page,
                "async (f) => { const s = await (" + STORED_JS + ")();"
                " return !s.blobs.some(([x]) => x === f) && !s.sizes.some(([x]) => x === f); }",
                msg3.file.file_id,
                timeout_ms=WAIT_MS,
            )
            out["closed_after"] = _file_ids(await page.evaluate(STORED_JS), msg3.file.file_id)

            # limits: over the room quota (lowered on the page) the download is refused and says why
            await page.evaluate("window.ephemesh.app.files.limits.roomQuota = 150000")
            src4 = tmp / "over-quota.bin"
            src4.write_bytes(os.urandom(200_000))
            msg4 = await room.send_file(src4)
            failed = page.locator(f"#messages li[data-id='{msg4.id}'] .attachment-failed")
            await failed.wait_for(timeout=WAIT_MS)
            out["quota_text"] = await failed.text_content()
            assert msg4.file is not None
            out["quota_stored"] = _file_ids(await page.evaluate(STORED_JS), msg4.file.file_id)
            # over the per-file limit (lowered on the page) the send is refused with a banner
            await page.evaluate("window.ephemesh.app.files.limits.maxFile = 1000")
            out["sent_over_limit"] = await page.evaluate(
                "async () => (await window.ephemesh.app.sendFile(new Blob([new Uint8Array(2000)]), 'big.bin', 'application/octet-stream')) !== null"
            )
            out["banner"] = await page.locator("#error-text").text_content()

            # a room left in this browser keeps none of its files
            await page.evaluate(
                "Object.assign(window.ephemesh.app.files.limits, { roomQuota: 1e9, maxFile: 1e8 })"
            )
            src5 = tmp / "kept.bin"
            src5.write_bytes(os.urandom(100_000))
            msg5 = await room.send_file(src5)
            assert msg5.file is not None
            await page.wait_for_function(DONE_JS, arg=msg5.id, timeout=WAIT_MS)
            out["left_before"] = _file_ids(await page.evaluate(STORED_JS), msg5.file.file_id)
            await page.evaluate("id => window.ephemesh.shell.leaveRoom(id)", invite.room_id)
            await wait_async(
                page, "async () => (await (" + STORED_JS + ")()).blobs.length === 0", timeout_ms=WAIT_MS
            )
            out["left_after"] = _file_ids(await page.evaluate(STORED_JS), msg5.file.file_id)
            return out
        finally:
            await close_all([page], py)

    return run


def test_browser_attachments_at_rest_erasure_and_limits(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    r = harness.run(_scenario(tmp_path), timeout=110)
    n_blobs = -(-300_000 // 16_384) + 2  # chunks, manifest, index
    assert r["held_before"] == (n_blobs, n_blobs)
    assert r["scan_before"]["values"] > n_blobs
    assert r["scan_before"]["found"] == []  # no key, no name, no plaintext at rest, even before expiry
    assert r["msgkey_before"]  # the only place the file key lives: the message, under its stored key
    assert r["held_after"] == (0, 0)
    assert r["scan_after"]["found"] == []
    assert not r["msgkey_after"]
    assert r["unsent_before"][0] > 0
    assert r["unsent_after"] == (0, 0)
    assert r["closed_before"][0] > 0
    assert r["closed_after"] == (0, 0)
    assert "quota" in r["quota_text"]
    assert "150,000" in r["quota_text"]
    assert r["quota_stored"] == (0, 0)
    assert not r["sent_over_limit"]
    assert "over the 1,000-byte limit per file" in r["banner"]
    assert r["left_before"][0] > 0
    assert r["left_after"] == (0, 0)
