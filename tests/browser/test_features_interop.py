"""Messenger features across languages: two browser pages and a Python ``Peer`` in one room.

Display names both ways, a page edit seen by Python, Python's reaction counted on the page, a page
reaction and reply seen by Python, Python's typing indicator on the page, SEEN receipts from the pages
counted by Python, erasure receipts both ways after expiry (pages -> Python ``erased_on``, Python and the
other page -> the sender page's "erased on N of M"), and a page unsend through the UI. The UI is driven
like a person would (buttons, the keyboard). Every wait is on a condition. The screenshots
``docs/img/web-desktop.png`` and ``docs/img/web-phone.png`` come from here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.invite import Invite
from peer.node import Peer

from .harness import ARTIFACTS, REPO, BrowserHarness

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000
WAIT_S = 30.0

STATE = "window.ephemesh.store.getState()"
COUNT_OPEN_JS = f"n => Object.values({STATE}.members).filter((m) => m.link === 'open').length === n"
HAS_TEXT_JS = f"t => {STATE}.messages.some((m) => m.text === t)"
LACKS_TEXT_JS = f"t => !{STATE}.messages.some((m) => m.text === t)"
MSG_ID_JS = f"t => {STATE}.messages.find((m) => m.text === t).id"


async def _page(browser: Browser, url: str, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport, bypass_csp=True)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("window.ephemesh !== undefined && window.ephemesh.app.room !== null")
    return page


def _item(page: Page, text: str) -> Any:
    return page.locator("#messages li.msg", has_text=text)


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        peer = Peer(home=tmp / "py")
        pages: list[Page] = []
        out: dict[str, Any] = {}
        try:
            room = await peer.join(invite)
            desk = await _page(browser, invite.url(), DESKTOP)
            phone = await _page(browser, invite.url(), PHONE)
            pages = [desk, phone]
            desk_id, phone_id = [await p.evaluate("window.ephemesh.identity.peerId") for p in pages]
            out["ids"] = [peer.peer_id, desk_id, phone_id]
            for page in pages:
                await page.wait_for_function(COUNT_OPEN_JS, arg=2, timeout=WAIT_MS)
            await room.wait_for(lambda: len(room.online_members()) == 2, WAIT_S)

            # Display names: the desktop uses the members panel form, the phone the app API, Python its own.
            await desk.fill("#room-name-input", "Ada")
            await desk.press("#room-name-input", "Enter")
            await phone.evaluate("window.ephemesh.app.setDisplayName('Grace')")
            await room.set_name("Pyro")
            await room.wait_for(
                lambda: room.display_name(desk_id) == "Ada" and room.display_name(phone_id) == "Grace", WAIT_S
            )
            await desk.locator("#member-list li", has_text="Pyro").wait_for(timeout=WAIT_MS)
            await desk.locator("#member-list li", has_text="Grace").wait_for(timeout=WAIT_MS)
            out["names_py"] = [room.display_name(desk_id), room.display_name(phone_id)]
            out["desk_member_text"] = await desk.locator(
                f"#member-list li[data-peer='{peer.peer_id}']"
            ).inner_text()
            out["desk_stored_name"] = await desk.evaluate(
                "k => localStorage.getItem('ephemesh.name.' + k)", invite.room_id
            )

            # Python speaks; both pages show it under Python's name and mark it seen (SEEN to Python only).
            hello = await room.send("Hello from Python 🐍")
            for page in pages:
                await (
                    _item(page, "Hello from Python")
                    .locator(".from", has_text="Pyro")
                    .wait_for(timeout=WAIT_MS)
                )
            await room.wait_for(lambda: room.seen_by(hello.id) == {desk_id, phone_id}, WAIT_S)
            out["seen_by"] = sorted(room.seen_by(hello.id))

            # The desktop sends with a typo, then edits it with the Edit button and the keyboard.
            await desk.fill("#composer-input", "Hi Pyro, nice mesage")
            await desk.press("#composer-input", "Enter")
            await room.wait_for(
                lambda: any(m.text == "Hi Pyro, nice mesage" for m in room.messages()), WAIT_S
            )
            await _item(desk, "nice mesage").locator("button[data-action='edit']").click()
            await desk.fill("#composer-input", "Hi Pyro, nice message")
            await desk.press("#composer-input", "Enter")
            await room.wait_for(
                lambda: any(m.text == "Hi Pyro, nice message" and m.edited for m in room.messages()), WAIT_S
            )
            await phone.wait_for_function(HAS_TEXT_JS, arg="Hi Pyro, nice message", timeout=WAIT_MS)
            desk_msg = next(m for m in room.messages() if m.text == "Hi Pyro, nice message")
            out["edited"] = [desk_msg.sender == desk_id, desk_msg.edited, len(room.messages())]

            # Python reacts; the pages count it. The phone reacts through the picker (keyboard reachable).
            await room.react(desk_msg.id, "👍")
            await _item(desk, "nice message").locator(".chip", has_text="👍 1").wait_for(timeout=WAIT_MS)
            await _item(phone, "nice message").locator("button[data-action='picker']").click()
            await phone.keyboard.press("Enter")  # focus moved to the first emoji of the picker: 👍
            await _item(desk, "nice message").locator(".chip", has_text="👍 2").wait_for(timeout=WAIT_MS)
            await room.wait_for(
                lambda: any(
                    m.id == desk_msg.id
                    and dict(m.reactions).get("👍") == tuple(sorted([peer.peer_id, phone_id]))
                    for m in room.messages()
                ),
                WAIT_S,
            )
            await _item(desk, "Hello from Python").locator("button[data-action='picker']").click()
            await _item(desk, "Hello from Python").locator(".picker button", has_text="🎉").click()
            await room.wait_for(
                lambda: any(
                    m.id == hello.id and m.reactions == (("🎉", (desk_id,)),) for m in room.messages()
                ),
                WAIT_S,
            )

            # The phone replies to Python's message through the Reply button.
            await _item(phone, "Hello from Python").locator("button[data-action='reply']").click()
            await phone.locator("#compose-context", has_text="Replying to Pyro").wait_for(timeout=WAIT_MS)
            await phone.fill("#composer-input", "Welcome, Pyro!")
            await phone.press("#composer-input", "Enter")
            await room.wait_for(
                lambda: any(m.text == "Welcome, Pyro!" and m.reply_to == hello.id for m in room.messages()),
                WAIT_S,
            )
            await (
                _item(desk, "Welcome, Pyro!")
                .locator(".quote", has_text="Hello from Python")
                .wait_for(timeout=WAIT_MS)
            )

            # Typing from Python shows on the page, and clears when it stops.
            await room.set_typing(True)
            await desk.locator("#typing", has_text="Pyro is typing…").wait_for(timeout=WAIT_MS)
            await room.set_typing(False)
            await desk.wait_for_function(
                "document.getElementById('typing').textContent === ''", timeout=WAIT_MS
            )
            # Typing from a page reaches Python.
            await phone.type("#composer-input", "x")
            await room.wait_for(lambda: phone_id in room.typing_members(), WAIT_S)
            await phone.fill("#composer-input", "")
            await phone.dispatch_event("#composer-input", "input")
            await room.wait_for(lambda: phone_id not in room.typing_members(), WAIT_S)

            # Erasure receipts: a 5 s message from Python and one from the desktop expire everywhere; the
            # pages report to Python, and Python + the phone report to the desktop ("erased on 2 of 2").
            await desk.evaluate("window.ephemesh.store.dispatch({type: 'set-ttl', ttlS: 5})")
            short_py = await room.send("py: gone in 5 s", ttl=5)
            await desk.fill("#composer-input", "web: gone in 5 s")
            await desk.press("#composer-input", "Enter")
            await desk.evaluate("window.ephemesh.store.dispatch({type: 'set-ttl', ttlS: 3600})")
            await room.wait_for(lambda: any(m.text == "web: gone in 5 s" for m in room.messages()), WAIT_S)
            for page in pages:
                await page.wait_for_function(LACKS_TEXT_JS, arg="py: gone in 5 s", timeout=WAIT_MS)
            await room.wait_for(lambda: room.erased_on(short_py.id) == {desk_id, phone_id}, WAIT_S)
            out["erased_on"] = sorted(room.erased_on(short_py.id))
            await desk.locator("#messages li.ghost", has_text="erased on 2 of 2").wait_for(timeout=WAIT_MS)
            out["ghost_text"] = await desk.locator("#messages li.ghost").inner_text()

            # Unsend through the UI: gone from Python and the other page.
            await desk.fill("#composer-input", "oops, wrong room")
            await desk.press("#composer-input", "Enter")
            await room.wait_for(lambda: any(m.text == "oops, wrong room" for m in room.messages()), WAIT_S)
            await _item(desk, "oops, wrong room").locator("button[data-action='unsend']").click()
            await room.wait_for(
                lambda: not any(m.text == "oops, wrong room" for m in room.messages()), WAIT_S
            )
            await phone.wait_for_function(LACKS_TEXT_JS, arg="oops, wrong room", timeout=WAIT_MS)

            # Python's SEEN and reactions on the desktop's message show on the desktop.
            await room.mark_seen([desk_msg.id])
            await _item(desk, "nice message").locator(".seen", has_text="seen by").wait_for(timeout=WAIT_MS)
            out["desk_seen_text"] = await _item(desk, "nice message").locator(".seen").inner_text()
            await room.set_typing(True)
            await desk.locator("#typing", has_text="Pyro is typing…").wait_for(timeout=WAIT_MS)
            await phone.locator("#typing", has_text="Pyro is typing…").wait_for(timeout=WAIT_MS)
            for page in pages:
                await page.evaluate("window.ephemesh.store.dispatch({type: 'tick', now: Date.now()})")
            await desk.screenshot(
                path=str(ARTIFACTS / "features-desktop-1280x800.png"), animations="disabled"
            )
            await phone.screenshot(path=str(ARTIFACTS / "features-phone-390x844.png"), animations="disabled")
            out["js_errors"] = [await p.evaluate("window.ephemesh.app.room.errorSummary()") for p in pages]
            out["py_errors"] = [(p, c) for p, c, _ in room.core.error_summary()]
            return out
        finally:
            for page in pages:
                await page.context.close()
            await peer.close()

    return run


def test_names_edits_reactions_typing_seen_and_receipts_across_languages(
    harness: BrowserHarness, artifacts: Path, tmp_path: Path
) -> None:
    if not harness.real_signaling:
        pytest.skip("signaling.app is not available")
    r = harness.run(_scenario(tmp_path), timeout=110)
    py_id, desk_id, phone_id = r["ids"]
    assert r["names_py"] == ["Ada", "Grace"]
    assert "Pyro" in r["desk_member_text"]
    assert py_id[:8] in r["desk_member_text"]
    assert r["desk_stored_name"] == "Ada"
    assert r["seen_by"] == sorted([desk_id, phone_id])
    assert r["edited"][:2] == [True, True]
    assert r["erased_on"] == sorted([desk_id, phone_id])
    assert "erased on 2 of 2" in r["ghost_text"]
    assert "seen by 2" in r["desk_seen_text"]  # the phone (automatically) and Python (mark_seen)
    # ``unknown-sender`` is not a fault: an envelope overtook its author's ADD (via another member) and
    # is asked for again once the ADD is in. Anything else would be a real interop error.
    transient = {"unknown-sender"}
    assert [[e for e in errs if e[1] not in transient] for errs in r["js_errors"]] == [[], []]
    assert [e for e in r["py_errors"] if e[1] not in transient] == []
    if os.environ.get("EPHEMESH_UPDATE_DOCS") == "1":  # refresh the screenshots the docs show
        docs = REPO / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifacts / "features-desktop-1280x800.png", docs / "web-desktop.png")
        shutil.copyfile(artifacts / "features-phone-390x844.png", docs / "web-phone.png")
