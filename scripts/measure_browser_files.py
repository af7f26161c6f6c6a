"""Browser attachment throughput, with the page's CPU profile: Python -> browser and browser -> browser.

    .venv/bin/python scripts/measure_browser_files.py --size-mb 20

Starts the browser test harness (headless Chromium + the signaling server on 127.0.0.1:0), then
1. a Python peer sends SIZE; one page downloads it (MB/s, and the page's top self-time functions);
2. that page sends SIZE; a second page downloads it (MB/s, both pages' profiles).
Blobs go through the pages' IndexedDB as in the app. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import Browser, CDPSession, Page

from bench.common import start_page_profile
from peer.core.invite import Invite
from peer.node import Peer
from tests.browser.harness import start_harness

STATE = "window.ephemesh.store.getState()"
READY_JS = "window.ephemesh !== undefined && window.ephemesh.app.room !== null"
OPEN_JS = f"n => Object.values({STATE}.members).filter((m) => m.link === 'open').length === n"
SEND_JS = """async (size) => {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(size, i + 65536)));
  const m = await window.ephemesh.app.sendFile(new Blob([data]), 'probe.bin', 'application/octet-stream');
  await window.ephemesh.app.files.settled();
  return m.id;
}"""


async def _page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(READY_JS)
    return page


async def _profile(page: Page) -> CDPSession:
    cdp: CDPSession = await start_page_profile(page, 500)
    return cdp


async def _top(cdp: CDPSession, n: int = 6) -> str:
    prof: Any = (await cdp.send("Profiler.stop"))["profile"]
    nodes = {node["id"]: node["callFrame"] for node in prof["nodes"]}
    own: Counter[str] = Counter()
    for sample, delta in zip(prof["samples"], prof["timeDeltas"], strict=True):
        cf = nodes[sample]
        own[f"{cf['functionName'] or '(anon)'} {cf['url'].split('/')[-1]}:{cf['lineNumber']}".strip()] += (
            delta
        )
    total = sum(own.values()) or 1
    return " | ".join(f"{k} {100 * v / total:.0f}%" for k, v in own.most_common(n))


def _scenario(size: int, tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> None:
        invite = Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py")
        pages: list[Page] = []
        try:
            room = await py.join(invite)
            pages = [await _page(browser, invite.url()), await _page(browser, invite.url())]
            for page in pages:
                await page.wait_for_function(OPEN_JS, arg=2, timeout=60_000)
                await page.evaluate("window.ephemesh.app.files.autoFetch = 0")  # only the fetches measured
            a, b = pages
            src = tmp / "probe.bin"
            src.write_bytes(os.urandom(size))
            msg = await room.send_file(src)
            await a.wait_for_function(f"id => {STATE}.messages.some((m) => m.id === id)", arg=msg.id)
            cdp = await _profile(a)
            t0 = time.monotonic()
            assert await a.evaluate("id => window.ephemesh.app.fetchFile(id)", msg.id)
            print(f"python -> browser: {size / 1e6 / (time.monotonic() - t0):.2f} MB/s")
            print(f"  receiving page: {await _top(cdp)}")
            await py.close()  # the second page can fetch from page A only
            mid = await a.evaluate(SEND_JS, size)
            await b.wait_for_function(f"id => {STATE}.messages.some((m) => m.id === id)", arg=mid)
            cdps = [await _profile(a), await _profile(b)]
            t0 = time.monotonic()
            assert await b.evaluate("id => window.ephemesh.app.fetchFile(id)", mid)
            print(f"browser -> browser: {size / 1e6 / (time.monotonic() - t0):.2f} MB/s")
            print(f"  serving page: {await _top(cdps[0])}")
            print(f"  receiving page: {await _top(cdps[1])}")
        finally:
            for page in pages:
                await page.context.close()
            await py.close()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=20.0)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    harness, close = start_harness()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            harness.run(_scenario(int(args.size_mb * 1e6), Path(tmp)), timeout=900)
    finally:
        close()


if __name__ == "__main__":
    main()
