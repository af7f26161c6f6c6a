"""The in-browser unit suite (web/test.html): RFC vectors and rejection rules, run in real Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser

from .harness import BrowserHarness

pytestmark = pytest.mark.browser


async def _run_page_suite(browser: Browser, base_url: str) -> dict[str, Any]:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{base_url}/test.html")
        await page.wait_for_function("window.__ephemeshTestReport !== undefined", timeout=30_000)
        report: dict[str, Any] = await page.evaluate("window.__ephemeshTestReport")
        report["page_errors"] = errors
        return report
    finally:
        await context.close()


def test_in_browser_unit_suite_passes(harness: BrowserHarness) -> None:
    report = harness.run(_run_page_suite)
    failures = [r for r in report["results"] if not r["ok"]]
    assert report["page_errors"] == []
    assert failures == []
    names = " ".join(r["name"] for r in report["results"])
    for required in (
        "RFC 8032 test 1",
        "RFC 8032 test 3",
        "RFC 7748 5.2",
        "RFC 7748 6.1",
        "RFC 5869",
        "AES-256-GCM",
    ):
        assert required in names
