"""LAN discovery with no server: DNS-SD over mDNS (python-zeroconf, asyncio API).

Rules (names: :mod:`peer.core.lan`; wire format: PROTOCOL.md, "LAN discovery"):
- One :class:`LanDiscovery` per peer process, started by the first room joined with ``lan=True``. It
  runs the signaling app (:func:`signaling.app.start_server`, the same code, limits and hardening as
  ``ephemesh serve``) on this host's LAN address, port 0: the *LAN endpoint*. Signaling over it is the
  usual protocol; the endpoint only relays payloads that are encrypted for the room and signed by
  their sender, so it needs no authentication of its own, and peers of a room authenticate each other
  exactly as through any server.
- For each LAN room it announces one service instance (``_ephemesh._tcp.local.``) named by the room's
  rotating opaque token, SRV/A pointing at the LAN endpoint, TXT ``v=1`` and nothing else; the SRV host
  name is ``<instance>.local.`` (never this machine's host name). At every epoch change the instance
  is renamed (withdrawn, announced under a fresh nonce).
- It browses the service type; an instance whose name matches a LAN room (previous/current/next epoch)
  and is not ours is resolved (at most ``MAX_RESOLVES`` at once, each bounded by ``RESOLVE_MS``) and its
  endpoint handed to ``on_found(room_id, url)``; the room adds it to its bounded server list
  (:mod:`peer.net.bootstrap`) and joins there. When that instance says goodbye (the member left),
  ``on_lost(room_id, url)`` and the room stops using that endpoint. Anything else is ignored.
- mDNS runs only on the LAN address chosen (``interfaces=[host]``, IPv4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from zeroconf import IPVersion, ServiceInfo, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peer.core.invite import Invite
from peer.core.lan import EPOCH_MS, NONCE_LEN, SERVICE_TYPE, TXT, LanMatcher, epoch_of, instance_name

log = logging.getLogger(__name__)

MAX_RESOLVES: Final = 8
RESOLVE_MS: Final = 3000
FoundFn = Callable[[str, str], None]
LostFn = Callable[[str, str], None]


@dataclass
class _Room:
    invite: Invite
    matcher: LanMatcher
    info: ServiceInfo | None = None
    epoch: int | None = None  # of the name announced now
    found: dict[str, str] = field(default_factory=dict)  # instance name -> endpoint handed on
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one (re)announcement at a time


def lan_address() -> str:
    """This host's first non-loopback IPv4 address (``$EPHEMESH_LAN_HOST`` chooses another)."""
    chosen = os.environ.get("EPHEMESH_LAN_HOST")
    if chosen:
        return chosen
    from signaling.config import interface_addresses

    found = interface_addresses()
    if not found:
        raise OSError("no LAN address on this host (LAN discovery needs one)")
    return found[0]


class LanDiscovery:
    def __init__(
        self,
        on_found: FoundFn,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
        on_lost: LostFn | None = None,
    ) -> None:
        self.host = host or lan_address()
        self._on_found = on_found
        self._on_lost = on_lost
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        self._own: set[str] = set()
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._runner: Any = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolving = 0
        self._rotator: asyncio.Task[None] | None = None
        self.announced = 0
        self._announcement = asyncio.Event()

    @property
    def url(self) -> str:
        """The LAN endpoint, for members to connect to (and for a browser on this network)."""
        return f"http://{self.host}:{self.port}"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def start(self) -> None:
        if self._zc is not None:
            return
        from signaling.app import start_server
        from signaling.config import SignalingConfig, default_web_root

        config = SignalingConfig(host=self.host, port=0, web_root=default_web_root(), test_pages=False)
        self._runner, self.port = await start_server(config)
        self._zc = AsyncZeroconf(interfaces=[self.host], ip_version=IPVersion.V4Only)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        self._rotator = asyncio.create_task(self._rotate(), name="lan-rotate")
        log.info("LAN discovery on %s (endpoint port %d)", self.host, self.port)

    async def add_room(self, invite: Invite) -> None:
        """Announce ``invite``'s room and hand on the endpoints of its members found from now on."""
        await self.start()
        if invite.room_id in self._rooms:
            return
        room = _Room(invite, LanMatcher(invite))
        self._rooms[invite.room_id] = room
        # announcing probes the name first (~1 s): do it in the background, browsing does not wait for it
        self._spawn(self._announce_quietly(room))
        assert self._zc is not None
        # instances seen before this room was added: check them now
        for record in list(self._zc.zeroconf.cache.entries_with_name(SERVICE_TYPE)):
            alias = getattr(record, "alias", None)  # PTR records: type -> instance
            if isinstance(alias, str):
                self._consider(alias)

    async def _announce(self, room: _Room) -> None:
        async with room.lock:
            now = self._now_ms()
            if room.epoch == epoch_of(now):
                return  # named for this epoch already (a rename raced the first announcement)
            await self._register(room, instance_name(room.invite, now, os.urandom(NONCE_LEN)))
            room.epoch = epoch_of(now)

    async def _register(self, room: _Room, label: str) -> None:
        assert self._zc is not None
        info = ServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            properties=dict(TXT),
            server=f"{label}.local.",
        )
        old, room.info = room.info, info
        self._own.add(label)
        if old is not None:
            await self._zc.async_unregister_service(old)
            self._own.discard(old.name[: -len(SERVICE_TYPE) - 1])
        await (await self._zc.async_register_service(info))
        self.announced += 1
        self._announcement.set()

    async def wait_announced(self, count: int) -> None:
        """Wait until ``count`` announcements (first ones and renames) have been made."""
        while self.announced < count:
            self._announcement.clear()
            await self._announcement.wait()

    async def _announce_quietly(self, room: _Room) -> None:
        try:
            await self._announce(room)
        except Exception as exc:  # the network went away: the next epoch tries again
            log.info("LAN announcement failed: %s", type(exc).__name__)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rotate(self) -> None:
        """Rename every announcement just after each epoch change."""
        while True:
            now = self._now_ms()
            await asyncio.sleep(((epoch_of(now) + 1) * EPOCH_MS - now) / 1000 + 0.05)  # the epoch timer
            for room in list(self._rooms.values()):
                await self._announce_quietly(room)

    def _on_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            self._consider(name)
        elif state_change is ServiceStateChange.Removed:  # a goodbye: that member left the LAN
            for room in self._rooms.values():
                url = room.found.pop(name, None)
                if url is not None and url not in room.found.values() and self._on_lost is not None:
                    self._on_lost(room.invite.room_id, url)

    def _consider(self, name: str) -> None:
        if not name.endswith("." + SERVICE_TYPE):
            return
        label = name[: -len(SERVICE_TYPE) - 1]
        if label in self._own:
            return
        now = self._now_ms()
        rooms = [r for r in self._rooms.values() if name not in r.found and r.matcher.matches(label, now)]
        if not rooms or self._resolving >= MAX_RESOLVES:
            return
        self._resolving += 1
        self._spawn(self._resolve(name, rooms))

    async def _resolve(self, name: str, rooms: list[_Room]) -> None:
        try:
            if self._zc is None:
                return
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(self._zc.zeroconf, RESOLVE_MS) or not info.port:
                return
            addrs = info.parsed_addresses(IPVersion.V4Only)
            if not addrs:
                return
            url = f"http://{addrs[0]}:{info.port}"
            for room in rooms:
                if url != self.url and name not in room.found:
                    known = url in room.found.values()
                    room.found[name] = url
                    if not known:
                        self._on_found(room.invite.room_id, url)
        finally:
            self._resolving -= 1

    async def close(self) -> None:
        if self._rotator is not None:
            self._rotator.cancel()
            with contextlib.suppress(BaseException):
                await self._rotator
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_all_services()
            await self._zc.async_close()
            self._zc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
