"""Every JSON vector in tests/vectors/ (made by the Python core) must pass in the browser's JS core."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Browser

from .harness import REPO, BrowserHarness

pytestmark = pytest.mark.browser

VECTORS = REPO / "tests" / "vectors"
FILES = sorted(p.stem for p in VECTORS.glob("*.json"))
# Vector files whose JS mirror is not written yet. xfail(strict): the day one passes, this list must shrink.
NOT_YET_MIRRORED: set[str] = set()


def _all_vectors() -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text()) for p in VECTORS.glob("*.json")}


def _runner(name: str, vectors: dict[str, Any]) -> Any:
    async def scenario(browser: Browser, base_url: str) -> list[dict[str, Any]]:
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(f"{base_url}/test.html?manual")
            result: list[dict[str, Any]] = await page.evaluate(
                """async ([name, all]) => {
                  const { runVectorFile } = await import('/js/test/vectors.js');
                  return runVectorFile(name, all);
                }""",
                [name, vectors],
            )
            return result
        finally:
            await context.close()

    return scenario


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="JS mirror not written yet"))
        if n in NOT_YET_MIRRORED
        else n
        for n in FILES
    ],
)
def test_vector_file_passes_in_browser(harness: BrowserHarness, name: str) -> None:
    results = harness.run(_runner(name, _all_vectors()))
    assert results, "no checks ran"
    assert [r for r in results if not r["ok"]] == []


def test_vectors_exist() -> None:
    assert FILES, "tests/vectors/*.json is empty"
