"""Transport factories for the conformance suite.

Each factory is an async context manager yielding a connected ``(a, b)`` transport pair and cleaning
up afterwards. Add an implementation by adding an entry to ``TRANSPORT_FACTORIES`` (e.g. ``"aiortc"``);
every test in ``test_transport.py`` then runs against it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from peer.net.rtc import rtc_pair
from peer.net.transport import MemoryTransport, Transport
from peer.testing import sim_id

TransportPair = tuple[Transport, Transport]
PairFactory = Callable[[], AbstractAsyncContextManager[TransportPair]]


@contextlib.asynccontextmanager
async def memory_pair() -> AsyncIterator[TransportPair]:
    a, b = MemoryTransport.pair(sim_id("alice"), sim_id("bob"))
    try:
        yield a, b
    finally:
        await a.close()


@contextlib.asynccontextmanager
async def aiortc_pair() -> AsyncIterator[TransportPair]:
    """Two real aiortc peer connections in this process, SDP exchanged directly (no signaling)."""
    a, b = await rtc_pair(sim_id("alice"), sim_id("bob"))
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


TRANSPORT_FACTORIES: dict[str, PairFactory] = {"memory": memory_pair, "aiortc": aiortc_pair}


@pytest.fixture(params=sorted(TRANSPORT_FACTORIES))
async def transport_pair(request: pytest.FixtureRequest) -> AsyncIterator[TransportPair]:
    async with TRANSPORT_FACTORIES[request.param]() as pair:
        yield pair
