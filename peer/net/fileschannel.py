"""The attachment transfer channel: a second aiortc data channel (``ephemesh-files``) beside the chat one.

aiortc has ONE send FIFO per connection, shared by every channel, and no stream priority: a chat
message queued behind megabytes of chunks waits for all of them (field notes: p50 49-131 ms, p99 up
to 945 ms behind a 1 MiB buffered file). So this channel never queues more than one frame inside
aiortc: :meth:`FilesLink.send` waits until the channel's ``bufferedAmount`` is back to 0 (aiortc
moves a message from the channel queue to SCTP's outbound queue only once that queue is empty), and
and while SCTP's outbound queue (every channel's, not yet on the wire) holds more than
:data:`OUTBOUND_LIMIT` chunks, it waits too (polled every :data:`POLL_S`: aiortc has no event for it).
A chat message then waits for about one 16 KiB frame, whatever the transfer's rate. The downloader's
request window (``FileLimits.window``) keeps enough frames in flight to fill the link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiortc import RTCDataChannel

from peer.net.transport import TransportClosed

FILES_LABEL = "ephemesh-files"
OUTBOUND_LIMIT = 16  # SCTP chunks (~1,200 bytes each) queued ahead of the wire before we add a frame
POLL_S = 0.001
PACING = True  # bench/transfer.py --no-pacing turns it off to measure what it buys

_CLOSED = object()


class FilesLink:
    """Send and receive transfer frames on one ``ephemesh-files`` channel (paced, see the module doc)."""

    def __init__(self, channel: RTCDataChannel, outbound: Callable[[], int] | None = None) -> None:
        self._channel = channel
        self._outbound = outbound
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._open = asyncio.Event()
        self._closed = asyncio.Event()
        self._low = asyncio.Event()
        self._low.set()
        channel.bufferedAmountLowThreshold = 0
        if channel.readyState == "open":
            self._open.set()

        @channel.on("open")
        def _on_open() -> None:
            self._open.set()

        @channel.on("message")
        def _on_message(message: bytes | str) -> None:
            self._queue.put_nowait(message.encode() if isinstance(message, str) else message)

        @channel.on("close")
        def _on_close() -> None:
            self.mark_closed()

        @channel.on("bufferedamountlow")
        def _on_low() -> None:
            self._low.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def mark_closed(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._open.set()
            self._low.set()
            self._queue.put_nowait(_CLOSED)

    async def wait_open(self) -> bool:
        await self._open.wait()
        return not self.closed and self._channel.readyState == "open"

    async def send(self, data: bytes) -> None:
        if self.closed or self._channel.readyState != "open":
            raise TransportClosed("files channel closed")
        while PACING:
            if self._channel.bufferedAmount > 0:
                self._low.clear()
                await self._low.wait()
            elif self._outbound is not None and self._outbound() > OUTBOUND_LIMIT:
                await asyncio.sleep(POLL_S)  # a pacing timer: aiortc signals nothing when SCTP drains
            else:
                break
            if self.closed:
                raise TransportClosed("files channel closed")
        self._channel.send(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)
                return
            assert isinstance(item, bytes)
            yield item

    def close(self) -> None:
        self.mark_closed()
        with contextlib.suppress(Exception):  # closing a dead channel
            self._channel.close()
