"""Fixtures shared by the whole suite: a real signaling server on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signaling.app import start_server
from signaling.config import SignalingConfig


@pytest.fixture
async def signaling_url() -> AsyncIterator[str]:
    """A fresh signaling server (web client included) for one test; its http:// base URL."""
    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
