"""A keeper holds a browser page's attachment (the JS member side of KEEPER / KEEP_FILE, real Chromium,
real aiortc, real signaling): the page offers the keeper its file's blob ids (never the key), sends a file while only the keeper is online and closes; Bob,
offline meanwhile, comes back and fetches it from the keeper, verified byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
WAIT_S = 60.0
SEND_BLOB_JS = """async ([name, size]) => {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + (i >> 8)) & 255;
  const m = await window.ephemesh.app.sendFile(new Blob([data]), name, 'application/octet-stream');
  return [m.id, [...new Uint8Array(await crypto.subtle.digest('SHA-256', data))].map((b) => b.toString(16).padStart(2, '0')).join('')];
}"""


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        keeper = Peer(home=tmp / "keeper")
        bob = Peer(home=tmp / "bob", name="Bob")
        bob2: Peer | None = None
        out: dict[str, Any] = {}
        try:
            kroom = await keeper.join(invite, keeper=True)
            broom = await bob.join(invite)
            await kroom.wait_for(lambda: bob.peer_id in kroom.members(), WAIT_S)  # the keeper holds bob's ADD
            await bob.close()
            context = await browser.new_context(bypass_csp=True)
            page = await context.new_page()
            await page.goto(invite.url())
            await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
            page_id = await page.evaluate("window.ephemesh.identity.peerId")
            await kroom.wait_for(lambda: page_id in kroom.online_members(), WAIT_S)
            await page.wait_for_function(
                f"() => window.ephemesh.app.room.members().includes('{bob.peer_id}')", timeout=WAIT_MS
            )
            msg_id, digest = await page.evaluate(SEND_BLOB_JS, ["from-the-page.bin", 200_000])
            # offered to the keeper by the page (blob ids only), fetched from it: 13 chunks, the manifest
            # and one index
            await kroom.wait_for(
                lambda: (
                    kroom.files.engine.downloading() == [] and msg_id in kroom.files.kept_files().values()
                ),
                WAIT_S,
            )
            fid = next(f for f, m in kroom.files.kept_files().items() if m == msg_id)
            out["no_file_item"] = kroom.files._by_file == {}  # the keeper never held the key
            await kroom.wait_for(lambda: len(keeper.blobs.held(kroom.room_id, fid)) == 15, WAIT_S)
            await context.close()  # the page leaves
            await kroom.wait_for(lambda: page_id not in kroom.online_members(), WAIT_S)

            bob2 = Peer(home=tmp / "bob", name="Bob")
            broom = await bob2.join(invite)
            await broom.wait_for(lambda: any(m.id == msg_id for m in broom.messages()), WAIT_S)
            saved = await broom.attachment(msg_id).save(tmp / "got.bin", timeout=WAIT_S)
            out["digest_ok"] = hashlib.sha256(saved.read_bytes()).hexdigest() == digest
            out["only_keeper"] = broom.online_members() == [keeper.peer_id]
            return out
        finally:
            for p in (keeper, bob, bob2):
                if p is not None:
                    await p.close()

    return run


def test_a_keeper_serves_a_browser_pages_file_after_it_left(harness: BrowserHarness, tmp_path: Path) -> None:
    if not harness.real_signaling:
        pytest.skip("needs the real signaling server")
    assert harness.run(_scenario(tmp_path), timeout=150) == {
        "digest_ok": True,
        "only_keeper": True,
        "no_file_item": True,
    }
