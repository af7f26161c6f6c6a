"""The frame transport between two peers, and an in-memory implementation for tests.

Contract (checked by ``tests/conformance/test_transport.py`` on every implementation):
- Reliable and ordered: frames arrive whole, once, in the order sent.
- ``send`` raises ``ValueError`` for a frame above ``max_message_size`` (like aiortc) and
  ``TransportClosed`` once the transport is closed (by either side).
- ``async for frame in transport`` yields received frames until the transport is closed; frames sent
  by the other side before it closed are still delivered first.
- ``close()`` is idempotent and closes both ends; ``closed`` is then true on both and
  ``wait_closed()`` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

#: aiortc assumes this limit when the remote does not advertise one; our frames never exceed it.
DEFAULT_MAX_MESSAGE_SIZE = 65_536


class TransportClosed(ConnectionError):
    """The transport is closed; nothing more can be sent."""


@runtime_checkable
class Transport(Protocol):
    @property
    def peer_id(self) -> str:
        """Our own peer id."""
        ...

    @property
    def remote_id(self) -> str:
        """The peer id at the other end."""
        ...

    @property
    def max_message_size(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    async def send(self, data: bytes) -> None: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


_EOF = None


class MemoryTransport:
    """One end of an in-memory, in-process transport pair (asyncio; same event loop)."""

    def __init__(self, peer_id: str, remote_id: str, max_message_size: int) -> None:
        self._peer_id = peer_id
        self._remote_id = remote_id
        self._max = max_message_size
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._other: MemoryTransport | None = None

    @classmethod
    def pair(
        cls, a_id: str, b_id: str, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> tuple[MemoryTransport, MemoryTransport]:
        a = cls(a_id, b_id, max_message_size)
        b = cls(b_id, a_id, max_message_size)
        a._other, b._other = b, a
        return a, b

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def remote_id(self) -> str:
        return self._remote_id

    @property
    def max_message_size(self) -> int:
        return self._max

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise TransportClosed("transport closed")
        if len(data) > self._max:
            raise ValueError(f"message of {len(data)} bytes above max_message_size {self._max}")
        assert self._other is not None
        self._other._inbox.put_nowait(bytes(data))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._inbox.get()
            if item is _EOF:
                return
            yield item

    async def close(self) -> None:
        for end in (self, self._other):
            if end is not None and not end.closed:
                end._closed.set()
                end._inbox.put_nowait(_EOF)

    async def wait_closed(self) -> None:
        await self._closed.wait()
