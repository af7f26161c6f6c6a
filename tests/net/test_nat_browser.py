"""Headless Chromium inside the homes: browser↔browser and browser↔Python across the two NATs.

Chromium runs in a home namespace: Playwright launches a wrapper (``ip netns exec <home> chromium``) as
its executable, and the wrapper keeps Playwright's pipes, so the browser is driven as usual while all its
traffic leaves through the home router. The server is reached at a non-localhost http origin, which
browsers do not treat as secure: the browsers are told to treat exactly the TURN server's origin as
secure (``--unsafely-treat-insecure-origin-as-secure``), and the other origin shows the page's
"needs https or localhost" explanation (tested here too).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, _LoopThread
from tests.net.conftest import PLAIN, WITH_TURN, Net

pytestmark = [pytest.mark.timeout(180), pytest.mark.browser]

WAIT_MS = 30_000
STATE = "window.ephemesh.store.getState()"


@dataclass
class Browsers:
    loop: _LoopThread
    by_home: dict[str, Browser]

    def run(self, coro: Any, timeout: float = 90.0) -> Any:
        return self.loop.run(coro, timeout)


@pytest.fixture(scope="session")
def browsers(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browsers]:
    work = tmp_path_factory.mktemp("chromium")
    loop = _LoopThread()
    owned: dict[str, Any] = {}

    async def setup() -> dict[str, Browser]:
        pw: Playwright = await async_playwright().start()
        owned["pw"] = pw
        out = {}
        for home in ("home-a", "home-b"):
            wrapper = work / f"chromium-{home}"
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {net.topo.ns(home)} {CHROMIUM} "$@"\n')
            wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
            out[home] = await pw.chromium.launch(
                executable_path=str(wrapper),
                headless=True,
                args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={WITH_TURN}"],
            )
        return out

    async def teardown() -> None:
        for browser in owned.get("browsers", {}).values():
            await browser.close()
        pw = owned.get("pw")
        if pw is not None:
            await pw.stop()

    try:
        owned["browsers"] = loop.run(setup(), 60)
        yield Browsers(loop, owned["browsers"])
    finally:
        try:
            loop.run(teardown(), 30)
        finally:
            loop.stop()


async def open_room(browser: Browser, invite: str) -> tuple[Page, str]:
    page = await (await browser.new_context(bypass_csp=True)).new_page()  # string predicates need eval
    await page.goto(invite)
    await page.wait_for_function(
        f"window.ephemesh && window.ephemesh.app.mesh && {STATE}.self", timeout=WAIT_MS
    )
    return page, str(await page.evaluate(f"() => {STATE}.self"))


async def wait_text(page: Page, text: str) -> None:
    await page.wait_for_function(
        f"t => {STATE}.messages.some((m) => m.text === t)", arg=text, timeout=WAIT_MS
    )


async def member(page: Page, peer: str, path: str | None = None) -> dict[str, Any]:
    """The member once reachable (and, with ``path``, once its link settled on that path: Chromium may
    start on a relay and move to a hole-punched pair a moment later; the UI follows it)."""
    await page.wait_for_function(
        f"([p, want]) => {{ const m = {STATE}.members[p]; return m && m.link === 'open' && m.path && (!want || m.path === want); }}",
        arg=[peer, path],
        timeout=WAIT_MS,
    )
    result: dict[str, Any] = await page.evaluate(f"p => {STATE}.members[p]", peer)
    return result


@pytest.mark.parametrize(("mode", "expected"), [("cone", "direct"), ("symmetric", "relayed")])
def test_browser_browser_across_two_nats(net: Net, browsers: Browsers, mode: str, expected: str) -> None:
    net.nat(mode)
    invite = net.new_invite(WITH_TURN)

    async def scenario() -> tuple[float, str, str]:
        a, _ = await open_room(browsers.by_home["home-a"], invite)
        t0 = time.monotonic()
        b, peer_b = await open_room(browsers.by_home["home-b"], invite)
        text = f"browser to browser {t0}"
        assert await b.evaluate("t => window.ephemesh.app.sendText(t)", text)
        await wait_text(a, text)
        elapsed = time.monotonic() - t0
        peer_a = str(await a.evaluate(f"() => {STATE}.self"))
        at_a, at_b = await member(a, peer_b, expected), await member(b, peer_a, expected)
        # the sender's own message stops being pending once delivered
        await b.locator("#messages li.mine .delivered").first.wait_for(timeout=WAIT_MS)
        assert await a.locator("#conn-state").text_content() == "connected"
        for page in (a, b):
            await page.context.close()
        return elapsed, at_a["path"], at_b["path"]

    elapsed, path_a, path_b = browsers.run(scenario())
    assert path_a == path_b == expected
    net.figures[f"browser-browser {expected} ({mode})"] = elapsed


@pytest.mark.parametrize(("mode", "expected"), [("cone", "direct"), ("symmetric", "relayed")])
def test_browser_python_across_two_nats(net: Net, browsers: Browsers, mode: str, expected: str) -> None:
    net.nat(mode)
    invite = net.new_invite(WITH_TURN)
    agent = net.agents["home-b"]
    room = agent.join(invite)

    async def scenario() -> tuple[float, str]:
        t0 = time.monotonic()
        a, _ = await open_room(browsers.by_home["home-a"], invite)
        text = f"browser to python {t0}"
        assert await a.evaluate("t => window.ephemesh.app.sendText(t)", text)
        got = agent.next(lambda e: e["ev"] == "message" and e["text"] == text, 30)
        elapsed = got["t"] - (time.time() - (time.monotonic() - t0))
        at_a = await member(a, agent.peer_id)
        await a.context.close()
        return elapsed, at_a["path"]

    elapsed, path_a = browsers.run(scenario())
    assert path_a == expected
    link = agent.next(
        lambda e: e["ev"] == "link" and e["room"] == room and e["state"] in ("direct", "relayed"), 30
    )
    assert link["state"] == expected
    net.figures[f"browser-python {expected} ({mode})"] = elapsed


def test_plain_http_from_another_machine_explains_https(net: Net, browsers: Browsers) -> None:
    async def scenario() -> str:
        page = await (await browsers.by_home["home-a"].new_context()).new_page()
        await page.goto(PLAIN + "/")
        banner = page.locator("#error-text")
        await banner.wait_for(timeout=WAIT_MS)
        text = str(await banner.text_content())
        assert await page.locator("#create-room").is_disabled()
        await page.context.close()
        return text

    text = browsers.run(scenario())
    assert "https://" in text
    assert "localhost" in text
