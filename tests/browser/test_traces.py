"""The recorded room traces (tests/vectors/traces/, made by the Python core) replay byte for byte
against the JS core in real Chromium: the behavioural contract between the two implementations."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Browser

from .harness import REPO, BrowserHarness

pytestmark = pytest.mark.browser

TRACES = REPO / "tests" / "vectors" / "traces"
NAMES = sorted(p.stem for p in TRACES.glob("*.json"))


def _replay(doc: dict[str, Any], *, sabotage: str | None = None) -> Any:
    """Replay ``doc`` in a fresh page; ``sabotage`` names a JS behaviour to break first (drift check)."""

    async def scenario(browser: Browser, base_url: str) -> dict[str, Any]:
        context = await browser.new_context()
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base_url}/test.html?manual")
            result: dict[str, Any] = await page.evaluate(
                """async ([doc, sabotage]) => {
                  const { replayTrace } = await import('/js/test/traces.js');
                  if (sabotage === 'no-parking') {
                    const { Parking } = await import('/js/core/room/parking.js');
                    Parking.prototype.park = function () {};  // refused envelopes are simply dropped
                  } else if (sabotage === 'eager-relay') {
                    const { SyncEngine } = await import('/js/core/sync.js');
                    const original = SyncEngine.prototype.onEnvelopes;
                    SyncEngine.prototype.onEnvelopes = function (s, items, now) {
                      this.config = { ...this.config, announceDelayMs: -1 };  // push instead of announce
                      return original.call(this, s, items, now);
                    };
                  }
                  return replayTrace(doc);
                }""",
                [doc, sabotage],
            )
            result["page_errors"] = errors
            return result
        finally:
            await context.close()

    return scenario


@pytest.mark.parametrize("name", NAMES)
def test_trace_replays_against_js(harness: BrowserHarness, name: str) -> None:
    doc = json.loads((TRACES / f"{name}.json").read_text())
    result = harness.run(_replay(doc))
    assert result["page_errors"] == []
    assert result["problems"] == []
    assert result["steps"] == len(doc["steps"] if "steps" in doc else doc["ops"])


@pytest.mark.parametrize(("sabotage", "trace"), [("no-parking", "parking"), ("eager-relay", "sync_frames")])
def test_a_js_behaviour_change_fails_the_trace(harness: BrowserHarness, sabotage: str, trace: str) -> None:
    """Drift check: break one behaviour in the JS core only and its trace goes red at a precise step."""
    doc = json.loads((TRACES / f"{trace}.json").read_text())
    result = harness.run(_replay(doc, sabotage=sabotage))
    assert result["page_errors"] == []
    assert len(result["problems"]) >= 1
    assert result["steps"] < len(doc["steps"])
