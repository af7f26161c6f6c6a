"""The mesh of one room: which neighbours we should be linked to, and keeping those links up.

Rules:
- We want a link to every peer the signaling server lists in the room (full mesh; a partial mesh
  caps this set later). The lower id offers; the higher id waits for the offer.
- A link that drops while its peer is still listed is re-offered with exponential backoff
  (0.5 s doubling to 15 s, jittered); the higher id re-offers nothing and just waits, but after
  ``prod_after`` seconds without a link it signals a ``"hello"`` so the lower id (which may have given
  up or restarted) re-offers at once.
- ``peer-left`` stops retrying. Signaling payloads are sealed and opened by hooks owned by the room
  (encrypted for the room, signed by the sender, covering the DTLS fingerprints).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from peer.core.errors import ProtocolError
from peer.net.rtc import OpenFn, RtcConnector, RtcTransport, SealFn

log = logging.getLogger(__name__)

LinkUp = Callable[[str, RtcTransport], None]
LinkDown = Callable[[str], None]


class RoomMesh:
    def __init__(
        self,
        local_id: str,
        seal: SealFn,
        open_: OpenFn,
        send_signal: Callable[[str, str], Awaitable[None]],
        on_link_up: LinkUp,
        on_link_down: LinkDown,
        turn: dict[str, Any] | None = None,
        connect_timeout: float = 20.0,
        max_backoff: float = 15.0,
    ) -> None:
        self.local_id = local_id
        self._on_up = on_link_up
        self._on_down = on_link_down
        self._open = open_
        self._connector = RtcConnector(
            local_id, seal, self._open_and_note, send_signal, self._link_ready, turn, connect_timeout
        )
        self._seal = seal
        self._send_signal = send_signal
        self._max_backoff = max_backoff
        self.present: set[str] = set()
        self.links: dict[str, RtcTransport] = {}
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._dialing: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- signaling input ------------------------------------------------------------------------

    def set_present(self, peers: list[str]) -> None:
        for p in peers:
            self.peer_joined(p)

    def peer_joined(self, peer: str) -> None:
        if peer == self.local_id or self._closed:
            return
        self.present.add(peer)
        self._ensure_dialer(peer)

    def peer_left(self, peer: str) -> None:
        self.present.discard(peer)
        task = self._dialers.pop(peer, None)
        if task is not None:
            task.cancel()

    async def handle_signal(self, sender: str, payload: str) -> None:
        """A signaling payload from ``sender``; bad ones are dropped with a logged protocol error."""
        try:
            await self._connector.handle_signal(sender, payload)
        except ProtocolError as exc:
            log.warning("dropped signaling payload from %s: %s", sender[:8], exc.code)

    def _open_and_note(self, sender: str, payload: str) -> tuple[str, dict[str, Any]]:
        kind, body = self._open(sender, payload)
        if kind == "hello" and sender > self.local_id and sender not in self._dialing:
            # the higher id asks us to (re)offer now (we may have given up, be backing off, or restarted)
            self.present.add(sender)
            self._kick(sender)
        return kind, body

    # -- dialing ----------------------------------------------------------------------------------------

    def _ensure_dialer(self, peer: str) -> None:
        if peer in self._dialers and not self._dialers[peer].done():
            return
        if peer in self.links and not self.links[peer].closed:
            return
        self._dialers[peer] = asyncio.create_task(self._dial_loop(peer), name=f"dial-{peer[:8]}")

    def _kick(self, peer: str) -> None:
        task = self._dialers.pop(peer, None)
        if task is not None:
            task.cancel()
        if peer not in self.links or self.links[peer].closed:
            self._dialers[peer] = asyncio.create_task(self._dial_loop(peer))

    async def _dial_loop(self, peer: str) -> None:
        delay = 0.5
        while not self._closed and peer in self.present:
            if peer in self.links and not self.links[peer].closed:
                return
            try:
                if self.local_id < peer:
                    self._dialing.add(peer)
                    try:
                        await self._connector.connect(peer)
                    finally:
                        self._dialing.discard(peer)
                    return
                # We answer; nudge the offerer in case it does not know we are here (restart, race).
                await self._send_signal(peer, self._seal(peer, "hello", {}))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("link to %s failed (%s); retrying in %.1fs", peer[:8], type(exc).__name__, delay)
            await asyncio.sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, self._max_backoff)

    def _link_ready(self, link: RtcTransport) -> None:
        peer = link.remote_id
        old = self.links.get(peer)
        self.links[peer] = link
        if old is not None and old is not link and not old.closed:
            self._spawn(old.close())
        dialer = self._dialers.pop(peer, None)
        if dialer is not None and dialer is not asyncio.current_task():
            dialer.cancel()
        self._on_up(peer, link)
        self._spawn(self._watch(peer, link))

    async def _watch(self, peer: str, link: RtcTransport) -> None:
        await link.wait_closed()
        if self.links.get(peer) is link:
            del self.links[peer]
            self._on_down(peer)
            if not self._closed and peer in self.present:
                self._ensure_dialer(peer)

    def drop_link(self, peer: str) -> None:
        """Close the link to ``peer`` (e.g. heartbeats timed out); the mesh will redial it."""
        link = self.links.get(peer)
        if link is not None:
            self._spawn(link.close())

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._dialers.values()) + list(self._watchers):
            task.cancel()
        for task in list(self._dialers.values()) + list(self._watchers):
            with contextlib.suppress(BaseException):
                await task
        self._dialers.clear()
        await self._connector.close()
        links = list(self.links.values())
        self.links.clear()
        for link in links:
            await link.close()
