"""Fixtures for the browser suite: one Chromium and one page server for the whole package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ARTIFACTS, BrowserHarness, start_harness


@pytest.fixture(scope="package")
def harness() -> Iterator[BrowserHarness]:
    """The shared browser harness (Chromium + page server on 127.0.0.1:0), for every test of this
    package; it stops (its loop and anything left on it) before the next package's tests run."""
    h, close = start_harness()
    try:
        yield h
    finally:
        close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Directory for screenshots: ``test-artifacts/`` at the repo root (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
