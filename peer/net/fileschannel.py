"""The attachment transfer channel: a second aiortc data channel (``ephemesh-files``) beside the chat one.

aiortc has ONE send FIFO per connection, shared by every channel, and no stream priority: a chat
message queued behind megabytes of chunks waits for all of them (field notes: p50 49-131 ms, p99 up
to 945 ms behind a 1 MiB buffered file). So this channel never queues more than one frame inside
aiortc: :meth:`FilesLink.send` waits until the channel's ``bufferedAmount`` is back to 0 (aiortc
moves a message from the channel queue to SCTP's outbound queue only once that queue is empty), and
while SCTP's outbound queue (every channel's, not yet on the wire) holds more than
:data:`OUTBOUND_LIMIT` chunks, it waits too: woken by ``sctp_tuning``'s event after the transmission that
brings the queue to the limit (aiortc has no event for it; polled every :data:`POLL_S` without the tuning).
A chat message then waits for about one 16 KiB frame, whatever the transfer's rate. The downloader's
request window (``FileLimits.window``) keeps enough frames in flight to fill the link.

:data:`OUTBOUND_LIMIT` was 16; measured in pairs with ``bench/transfer.py --outbound-limit N`` (docs/
benchmarks.md), 4 gave the lowest chat round trips during a transfer (a chat message sent while the
outbound queue drains its last chunks goes ahead of the next frame) at the same throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiortc import RTCDataChannel

from peer.net import sctp_tuning
from peer.net.channelqueue import ChannelQueue
from peer.net.transport import TransportClosed

FILES_LABEL = "ephemesh-files"
OUTBOUND_LIMIT = 4  # SCTP chunks (~1,200 bytes each) queued ahead of the wire before we add a frame
POLL_S = 0.001
WAKE = True  # woken by sctp_tuning's outbound event (bench/transfer.py --without-wake polls as before)
WAKE_BOUND_S = 0.05  # the longest a woken wait lasts (a closed connection transmits nothing more)
PACING = True  # bench/transfer.py --no-pacing turns it off to measure what it buys


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FilesLink(ChannelQueue):
    """Send and receive transfer frames on one ``ephemesh-files`` channel (paced, see the module doc)."""

    def __init__(self, channel: RTCDataChannel, outbound: Callable[[], int] | None = None) -> None:
        super().__init__(channel, 0)
        self._outbound = outbound
        self._open = asyncio.Event()
        if channel.readyState == "open":
            self._open.set()

        @channel.on("open")
        def _on_open() -> None:
            self._open.set()

    def _on_closed(self) -> None:
        self._open.set()
        self._low.set()

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
                await self._outbound_drained()
            else:
                break
            if self.closed:
                raise TransportClosed("files channel closed")
        self._channel.send(data)

    async def _outbound_drained(self) -> None:
        """Until SCTP's outbound queue is at or below :data:`OUTBOUND_LIMIT`: woken by sctp_tuning's
        event after a transmission (within :data:`WAKE_BOUND_S` at most), else a poll every
        :data:`POLL_S` (aiortc signals nothing when SCTP drains)."""
        waiter = sctp_tuning.outbound_waiter(self._channel.transport, OUTBOUND_LIMIT) if WAKE else None
        if waiter is None:
            await asyncio.sleep(POLL_S)
            return
        bound = asyncio.get_running_loop().call_later(WAKE_BOUND_S, _wake, waiter)
        try:
            await waiter
        finally:
            bound.cancel()

    def close(self) -> None:
        self.mark_closed()
        with contextlib.suppress(Exception):  # closing a dead channel
            self._channel.close()
