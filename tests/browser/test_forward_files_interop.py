"""Forwarding attachments between a browser page and a Python peer (real aiortc, real Chromium, real
signaling), both directions, each into another room:

- browser -> Python room: Pyro sends an image (with a thumbnail) in room one; the page forwards it to
  room two through the Forward button and dialog; Pyro sees it in room two marked forwarded from Pyro,
  sent by the page, under a NEW key and manifest, fetches it from the page and it matches byte for byte
  with the thumbnail carried over; its expiry is no later than the original's.
- Python -> browser room: the page sends a file in room one; Pyro forwards it to room two; the page
  shows it there marked forwarded and fetches and verifies it.
- an attachment whose message expired cannot be forwarded from the page (a clear banner, nothing sent).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.files import open_manifest
from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness
from .pages import OPEN_JS, ROOM_STATE, close_all, need_signaling, open_background_room, open_page

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
WAIT_S = 60.0
ROOM_FILE_DONE_JS = f"""([room, name]) => Object.values({ROOM_STATE}.attachments)
  .some((a) => a.name === name && a.done && a.url)"""
ROOM_DIGEST_JS = f"""async ([room, name]) => {{
  const a = Object.values({ROOM_STATE}.attachments).find((x) => x.name === name);
  const buf = await (await fetch(a.url)).arrayBuffer();
  return [...new Uint8Array(await crypto.subtle.digest('SHA-256', buf))].map((b) => b.toString(16).padStart(2, '0')).join('');
}}"""
SEND_BLOB_JS = """async ([name, size]) => {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 13 + (i >> 7)) & 255;
  const m = await window.ephemesh.app.sendFile(new Blob([data]), name, 'application/pdf');
  return [m.id, [...new Uint8Array(await crypto.subtle.digest('SHA-256', data))].map((b) => b.toString(16).padStart(2, '0')).join('')];
}"""


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        one, two = Invite.new(base_url, ttl_s=3600), Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py", name="Pyro")
        out: dict[str, Any] = {}
        page: Page | None = None
        try:
            room, other = await py.join(one), await py.join(two)
            page = await open_page(browser, one.url())
            page_id = await page.evaluate("window.ephemesh.identity.peerId")
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            await page.wait_for_function(
                f"() => window.ephemesh.store.getState().names['{py.peer_id}'] === 'Pyro'", timeout=WAIT_MS
            )
            await open_background_room(page, two, WAIT_MS)
            await other.wait_for(lambda: page_id in other.online_members(), WAIT_S)
            await page.evaluate(f"window.ephemesh.shell.show({one.room_id!r})")

            # browser -> Python room: the page forwards Pyro's image through the Forward dialog
            src = tmp / "sunset.png"
            data = b"".join(hashlib.sha256(b"sun" + i.to_bytes(4, "big")).digest() for i in range(9_000))
            src.write_bytes(data)
            thumb = b"\x89PNG a small thumbnail"
            sent = await room.send_file(src, thumb=thumb, thumb_mime="image/png")
            assert sent.file is not None
            item = page.locator("#messages li.msg", has_text="sunset.png")
            await item.wait_for(timeout=WAIT_MS)
            await item.get_by_role("button", name="Forward").click()
            await page.locator(f'#forward-list button[data-forward-room="{two.room_id}"]').click()
            await other.wait_for(lambda: any(m.file for m in other.messages()), WAIT_S)
            fwd = next(m for m in other.messages() if m.file)
            assert fwd.file is not None
            out["browser_fwd"] = {
                "from": fwd.forwarded_from,
                "by_page": fwd.sender == page_id,
                "same_file": (fwd.file.name, fwd.file.size, fwd.file.mime)
                == (sent.file.name, sent.file.size, sent.file.mime),
                "new_key": fwd.file.key != sent.file.key,
                "new_manifest": fwd.file.manifest != sent.file.manifest,
                "expiry_ok": fwd.expires_at <= sent.expires_at,
            }
            saved = await other.attachment(fwd.id).save(tmp / "got.png", timeout=WAIT_S)
            out["browser_fwd"]["bytes_ok"] = saved.read_bytes() == data
            blob = py.blobs.get(other.room_id, fwd.file.manifest)
            assert blob is not None
            out["browser_fwd"]["thumb"] = open_manifest(fwd.file.key, blob, fwd.file).thumb == thumb
            out["browser_fwd"]["no_old_blobs"] = py.blobs.held(other.room_id, sent.file.file_id) == set()

            # Python -> browser room: the page's file, forwarded by Pyro, shows in room two on the page
            msg_id, digest = await page.evaluate(SEND_BLOB_JS, ["minutes.pdf", 300_000])
            await room.wait_for(lambda: room.core.message(msg_id) is not None, WAIT_S)
            mine = await room.forward(msg_id, other, timeout=WAIT_S)
            await page.wait_for_function(ROOM_FILE_DONE_JS, arg=[two.room_id, "minutes.pdf"], timeout=WAIT_MS)
            out["py_fwd_digest_ok"] = (
                await page.evaluate(ROOM_DIGEST_JS, [two.room_id, "minutes.pdf"]) == digest
            )
            out["py_fwd_shown"] = await page.evaluate(
                f"""([room, id]) => {{
                  const m = {ROOM_STATE}.messages.find((x) => x.id === id);
                  return [m.forwardedFrom, m.file.name];
                }}""",
                [two.room_id, mine.id],
            )
            await page.evaluate(f"window.ephemesh.shell.show({two.room_id!r})")
            marked = page.locator("#messages li.msg", has_text="minutes.pdf").locator(".forwarded")
            await marked.wait_for(timeout=WAIT_MS)
            out["py_fwd_mark"] = await marked.text_content()
            await page.evaluate(f"window.ephemesh.shell.show({one.room_id!r})")

            # an expired attachment cannot be forwarded (banner; nothing sent)
            short = tmp / "soon.bin"
            short.write_bytes(b"soon gone" * 100)
            gone = await room.send_file(short, ttl=3)
            await page.locator("#messages li.msg", has_text="soon.bin").wait_for(timeout=WAIT_MS)
            held = await page.evaluate(f"() => window.ephemesh.app.room.message({gone.id!r})")
            await page.locator("#messages li.msg", has_text="soon.bin").wait_for(
                state="detached", timeout=WAIT_MS
            )
            out["expired"] = await page.evaluate(
                """async ([two, msg]) => {
                  const { forwardAttachment } = await import('/js/ui/forward_files.js');
                  const target = window.ephemesh.shell.rooms.get(two).app;
                  try { await forwardAttachment(window.ephemesh.app, target, msg, 'Pyro'); return 'sent'; }
                  catch (e) { return e.message; }
                }""",
                [two.room_id, held],
            )
            out["other_count"] = len(other.messages())
            return out
        finally:
            await close_all([page], py)

    return run


def test_forward_attachments_between_browser_and_python(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    r = harness.run(_scenario(tmp_path), timeout=200)
    assert r["browser_fwd"] == {
        "from": "Pyro",
        "by_page": True,
        "same_file": True,
        "new_key": True,
        "new_manifest": True,
        "expiry_ok": True,
        "bytes_ok": True,
        "thumb": True,
        "no_old_blobs": True,
    }
    assert r["py_fwd_digest_ok"]
    assert r["py_fwd_shown"][1] == "minutes.pdf"
    assert r["py_fwd_shown"][0]  # the page's display name or id prefix, as Pyro saw it
    assert r["py_fwd_mark"].startswith("Forwarded from")
    assert "expired" in r["expired"]
    assert r["other_count"] == 2  # the two forwards; the expired one was refused
