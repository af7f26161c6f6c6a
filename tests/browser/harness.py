"""Browser test harness: one asyncio loop in a dedicated thread owns Chromium and the page server.

Rules:
- Playwright's async API and the aiohttp server both live on the harness loop, never on the loop that
  pytest-asyncio gives to async tests, so the two can never clash. Tests are plain sync functions that
  hand a coroutine to :meth:`BrowserHarness.run`, which waits for it with a timeout.
- Chromium is the Debian binary (``/usr/bin/chromium``); nothing is ever downloaded.
- The page server is the real ``signaling.app`` (``start_server(SignalingConfig(...))`` on 127.0.0.1:0,
  serving ``web/``) when that module exists; otherwise a tiny static aiohttp app serves ``web/`` and the
  tests that need signaling are skipped (``BrowserHarness.real_signaling`` is False).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from playwright.async_api import Browser, Playwright, async_playwright

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
WEB_DIR = REPO / "web"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # a fake microphone/camera and no permission prompt (voice notes); used only by getUserMedia callers
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="browser-harness", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def real_signaling_available() -> bool:
    """True when the project's signaling server exposes ``start_server``."""
    if importlib.util.find_spec("signaling.app") is None:
        return False
    module = importlib.import_module("signaling.app")
    return hasattr(module, "start_server")


async def _start_real_server() -> tuple[web.AppRunner, int]:
    app_module: Any = importlib.import_module("signaling.app")
    config_module: Any = importlib.import_module("signaling.config")
    config = config_module.SignalingConfig(host="127.0.0.1", port=0, web_root=WEB_DIR)
    runner, port = await app_module.start_server(config)
    return runner, int(port)


async def _start_static_server() -> tuple[web.AppRunner, int]:
    app = web.Application()

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/", WEB_DIR, show_index=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner, port


@dataclass
class BrowserHarness:
    """What a browser test gets: a shared Chromium, the page server's URL, and a way to run coroutines."""

    browser: Browser
    base_url: str
    real_signaling: bool
    _loop: _LoopThread

    def run(self, scenario: Callable[[Browser, str], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run ``scenario(browser, base_url)`` on the harness loop and return its result."""

        async def wrapper() -> T:
            return await scenario(self.browser, self.base_url)

        return self._loop.run(wrapper(), timeout)


@dataclass
class _Owned:
    playwright: Playwright
    browser: Browser
    runner: web.AppRunner


def start_harness() -> tuple[BrowserHarness, Callable[[], None]]:
    """Start the loop thread, the page server and Chromium; return the harness and its closer."""
    loop = _LoopThread()
    real = real_signaling_available()

    async def setup() -> tuple[_Owned, int]:
        runner, port = await (_start_real_server() if real else _start_static_server())
        pw = await async_playwright().start()
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        return _Owned(pw, browser, runner), port

    owned, port = loop.run(setup(), timeout=60)
    harness = BrowserHarness(owned.browser, f"http://127.0.0.1:{port}", real, loop)

    async def teardown() -> None:
        await owned.browser.close()
        await owned.playwright.stop()
        await owned.runner.cleanup()
        # whatever a test left running on this loop (e.g. an aiortc connection whose bounded close timed
        # out: aioice's consent check draws from the global `random` every ~5 s) stops here, not in the
        # middle of later tests (Hypothesis fails a test whose strategies see `random` change)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=10)

    def close() -> None:
        try:
            loop.run(teardown(), timeout=30)
        finally:
            loop.stop()

    return harness, close
