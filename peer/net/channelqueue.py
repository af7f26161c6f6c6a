"""What every ephemesh data channel does alike: queue the frames aiortc hands over, iterate them until
the channel closes, and track aiortc's "buffered amount low" for backpressure.

Used by :class:`peer.net.rtc.RtcTransport` (the chat channel) and :class:`peer.net.fileschannel.FilesLink`
(the transfer channel); each adds its own sending rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiortc import RTCDataChannel

_CLOSED = object()


class ChannelQueue:
    """The receiving side and the close/low events of one aiortc data channel."""

    def __init__(self, channel: RTCDataChannel, low_threshold: int) -> None:
        self._channel = channel
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._low = asyncio.Event()
        self._low.set()
        channel.bufferedAmountLowThreshold = low_threshold

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

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def mark_closed(self) -> None:
        """The channel is gone: iterators end (after the frames already queued), waiters wake up."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put_nowait(_CLOSED)
            self._on_closed()

    def _on_closed(self) -> None:
        """Subclasses: wake whatever else waits on this channel."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                # put it back so a second iterator also ends
                self._queue.put_nowait(_CLOSED)
                return
            assert isinstance(item, bytes)
            yield item
