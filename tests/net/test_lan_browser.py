"""A browser joins a room whose only reachable member is a Python peer found by mDNS: browsers cannot do
mDNS, so the page is loaded from that member's LAN endpoint (``keep --lan`` serves the web client and
signaling there) and reaches the rest of the room through it.

Hosts (the session's ``lans``, ``tests/net/lan_topology.py``, one bridge): h1 runs ``keep --lan`` (its LAN endpoint), h2 a
``listen --lan`` member that found h1 by mDNS, h3 headless Chromium (the NAT suite's wrapper trick:
Playwright launches ``ip netns exec <h3> chromium``). No signaling server anywhere; the invite lists
none. The page's origin is plain http on a LAN address, so Chromium is told to treat exactly that
origin as secure (WebCrypto needs a secure context; docs/deploy.md says to use https in real life).
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from peer.core.invite import Invite
from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, _LoopThread
from tests.net.conftest import Procs
from tests.net.lan_topology import Lans
from tests.net.test_lan import event

pytestmark = [pytest.mark.timeout(180), pytest.mark.browser]

STATE = "window.ephemesh.store.getState()"
WAIT_MS = 30_000


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium (Debian package chromium)")


def test_browser_joins_through_a_lan_members_endpoint(lans: Lans, procs: Procs, tmp_path: Path) -> None:
    invite = Invite.new(None)
    url = invite.url()
    keeper = procs.ephemesh("h1", "keeper", "keep", url, "--lan", merge_stderr=True)
    lan_url = keeper.expect(lambda s: s.startswith("lan endpoint: "), 40).split()[-1]
    assert lan_url.startswith(f"http://{lans.hosts['h1']}:")
    bob = procs.ephemesh("h2", "bob", "listen", url, "--lan", "--json", "--name", "bob")
    bob_id = event(bob, lambda e: e["event"] == "ready")["peer"]

    wrapper = tmp_path / "chromium-h3"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lans.ns("h3")} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    loop = _LoopThread()

    async def scenario() -> tuple[float, str]:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(wrapper),
                headless=True,
                args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={lan_url}"],
            )
            try:
                page = await (await browser.new_context(bypass_csp=True)).new_page()
                t0 = time.monotonic()
                await page.goto(f"{lan_url}/#{invite.fragment()}")
                await page.wait_for_function(
                    f"window.ephemesh && window.ephemesh.app.mesh && {STATE}.self", timeout=WAIT_MS
                )
                me = str(await page.evaluate(f"() => {STATE}.self"))
                await page.wait_for_function(
                    f"p => {{ const m = {STATE}.members[p]; return m && m.link === 'open'; }}",
                    arg=bob_id,
                    timeout=WAIT_MS,
                )
                linked = time.monotonic() - t0
                assert await page.evaluate("t => window.ephemesh.app.sendText(t)", "hello from the browser")
                got = event(bob, lambda e: e["event"] == "message" and e["text"] == "hello from the browser")
                assert got["sender"] == me
                reply = procs.ephemesh("h2", "bob-send", "send", url, "hello browser", home="bob")
                assert reply.popen.wait(timeout=60) == 0
                await page.wait_for_function(
                    f"t => {STATE}.messages.some((m) => m.text === t)", arg="hello browser", timeout=WAIT_MS
                )
                return linked, me
            finally:
                await browser.close()

    try:
        linked, _me = loop.run(scenario(), 150)
    finally:
        loop.stop()
    print(f"\nbrowser via a LAN member's endpoint: page load -> linked with the other member {linked:.2f} s")
