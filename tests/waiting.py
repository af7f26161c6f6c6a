"""Waiting on a condition that has no event to wait on (a counter in another process, a gauge).

``poll`` checks ``predicate`` every ``POLL_S`` until it holds or ``timeout`` passes (``TimeoutError``).
Prefer an event where the code under test offers one; use this for what is only observable by asking.
``holds_for`` is the converse: the test fails as soon as ``violated`` is true within the window, and
passes only if it never was — a bound checked over time, not a sleep.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_S = 0.05

Predicate = Callable[[], bool] | Callable[[], Awaitable[bool]]


async def _check(predicate: Predicate) -> bool:
    result = predicate()
    if inspect.isawaitable(result):
        return bool(await result)
    return bool(result)


async def poll(predicate: Predicate, timeout: float) -> None:
    """The deadline is checked between checks, never by cancelling one mid-way (a check may hold a
    resource, e.g. an HTTP session to read a counter, that a cancellation would leak)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _check(predicate):
        if loop.time() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(POLL_S)


async def holds_for(violated: Predicate, window: float) -> None:
    """Fail (``AssertionError``) the moment ``violated`` holds during ``window`` seconds."""
    try:
        await poll(violated, window)
    except TimeoutError:
        return
    raise AssertionError("the bound was violated within the observation window")
