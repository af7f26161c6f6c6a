"""Three ways to fan a message out to a group, behind one interface, plus a delivery tracker.

- :class:`EphemeshGroup` — real :class:`peer.node.Peer` objects (aiortc mesh, handshake, sender keys,
  signatures, SQLite) joined to one room through a signaling server in its own process.
- :class:`RawMeshGroup` — baseline (b): a raw aiortc full mesh, one data channel per pair, no protocol,
  no application crypto: the sender writes the 200 bytes to each of its channels.
- :class:`RelayGroup` — baseline (a): aiohttp WebSocket clients of :mod:`bench.relay_server` (its own
  process); the server forwards each frame to the other members.

Rules: a message counts as delivered when the *last* other member has it (decrypted and shown, for
ephemesh: a ``MessageReceived`` event on the room's event stream). Every group first sends one warm-up
message per member, excluded from the figures, so one-time costs (sender-chain set-up, first-packet
paths) do not pollute the steady-state samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Protocol

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from bench.common import payload_text, tag_of
from peer.core.invite import Invite
from peer.core.room import MessageReceived
from peer.node import Peer, RoomHandle

WARMUP_BASE = 1_000_000_000


class Tracker:
    """Counts deliveries per tag; a tag is done when ``n - 1`` members have it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._pending: dict[int, list[float]] = {}  # tag -> [t_sent, remaining]
        self.latencies: list[float] = []
        self.last_done = 0.0
        self._changed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def sent(self, tag: int) -> None:
        self._pending[tag] = [time.perf_counter(), float(self.n - 1)]

    def received(self, tag: int) -> None:
        entry = self._pending.get(tag)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            now = time.perf_counter()
            del self._pending[tag]
            if tag < WARMUP_BASE:
                self.latencies.append(now - entry[0])
            self.last_done = now
            self._changed.set()

    async def wait_below(self, limit: int, timeout: float) -> None:
        """Wait until fewer than ``limit`` messages are in flight (``limit=1``: all delivered)."""
        async with asyncio.timeout(timeout):
            while len(self._pending) >= limit:
                self._changed.clear()
                await self._changed.wait()


class Group(Protocol):
    name: str
    n: int

    async def start(self, tracker: Tracker) -> None: ...
    async def send(self, i: int, tag: int) -> None: ...
    async def close(self) -> None: ...


async def warm_up(group: Group, tracker: Tracker, timeout: float = 60.0) -> None:
    for i in range(group.n):
        tracker.sent(WARMUP_BASE + i)
        await group.send(i, WARMUP_BASE + i)
    await tracker.wait_below(1, timeout)


class EphemeshGroup:
    """``n`` Peers in this process, in one room, through the signaling server at ``server``."""

    name = "ephemesh"

    def __init__(self, n: int, server: str, home: Path, size: int = 200, form_timeout: float = 60.0) -> None:
        self.n = n
        self.size = size
        self._server = server
        self._home = home
        self._form_timeout = form_timeout
        self.peers: list[Peer] = []
        self.rooms: list[RoomHandle] = []
        self._readers: list[asyncio.Task[None]] = []
        self.formation_s = 0.0

    async def start(self, tracker: Tracker) -> None:
        invite = Invite.new(self._server).url()
        self.peers = [Peer(home=self._home / f"p{i}") for i in range(self.n)]
        t0 = time.perf_counter()
        self.rooms = list(await asyncio.gather(*(p.join(invite) for p in self.peers)))
        await wait_formed(self.rooms, self._form_timeout)
        self.formation_s = time.perf_counter() - t0
        for room in self.rooms:
            self._readers.append(asyncio.create_task(self._read(room, tracker)))

    @staticmethod
    async def _read(room: RoomHandle, tracker: Tracker) -> None:
        async for ev in room.events():
            if isinstance(ev, MessageReceived):
                tracker.received(tag_of(ev.message.text))

    async def send(self, i: int, tag: int) -> None:
        await self.rooms[i].send(payload_text(tag, self.size), ttl=3600)

    async def close(self) -> None:
        for t in self._readers:
            t.cancel()
        for t in self._readers:
            with contextlib.suppress(BaseException):
                await t
        for p in self.peers:
            await p.close()


async def wait_formed(rooms: list[RoomHandle], timeout: float) -> None:
    """Wait until every room sees all ``len(rooms) - 1`` others online."""
    want = len(rooms) - 1
    for room in rooms:
        await room.wait_for(lambda r=room: len(r.online_members()) >= want, timeout)


class RawMeshGroup:
    """Baseline (b): a full mesh of raw aiortc data channels in this process."""

    name = "raw-aiortc"

    def __init__(self, n: int, size: int = 200) -> None:
        self.n = n
        self.size = size
        self.pcs: list[RTCPeerConnection] = []
        self.channels: list[list[RTCDataChannel]] = [[] for _ in range(n)]
        self.formation_s = 0.0

    async def start(self, tracker: Tracker) -> None:
        t0 = time.perf_counter()
        pairs = [(i, j) for i in range(self.n) for j in range(i + 1, self.n)]
        await asyncio.gather(*(self._connect(i, j, tracker) for i, j in pairs))
        self.formation_s = time.perf_counter() - t0

    async def _connect(self, i: int, j: int, tracker: Tracker) -> None:
        a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs += [a, b]
        opened_a, opened_b = asyncio.Event(), asyncio.Event()
        ch_a = a.createDataChannel("bench")

        def on_message(message: bytes | str) -> None:
            tracker.received(tag_of(message))

        ch_a.on("message", on_message)
        ch_a.on("open", opened_a.set)

        @b.on("datachannel")
        def on_channel(ch: RTCDataChannel) -> None:
            ch.on("message", on_message)
            self.channels[j].append(ch)
            opened_b.set()

        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        async with asyncio.timeout(30):
            await opened_a.wait()
            await opened_b.wait()
        self.channels[i].append(ch_a)

    async def send(self, i: int, tag: int) -> None:
        data = payload_text(tag, self.size).encode()
        for ch in self.channels[i]:
            ch.send(data)

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


class RelayGroup:
    """Baseline (a): WebSocket clients of the relay server at ``url`` (``ws://host:port``)."""

    name = "ws-relay"

    def __init__(self, n: int, url: str, size: int = 200, room: str = "bench") -> None:
        self.n = n
        self.size = size
        self._url = f"{url}/ws?room={room}"
        self._session: aiohttp.ClientSession | None = None
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task[None]] = []
        self.formation_s = 0.0

    async def start(self, tracker: Tracker) -> None:
        t0 = time.perf_counter()
        self._session = aiohttp.ClientSession()
        self.sockets = list(
            await asyncio.gather(*(self._session.ws_connect(self._url) for _ in range(self.n)))
        )
        self.formation_s = time.perf_counter() - t0
        for ws in self.sockets:
            self._readers.append(asyncio.create_task(self._read(ws, tracker)))

    @staticmethod
    async def _read(ws: aiohttp.ClientWebSocketResponse, tracker: Tracker) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                tracker.received(tag_of(msg.data))

    async def send(self, i: int, tag: int) -> None:
        await self.sockets[i].send_bytes(payload_text(tag, self.size).encode())

    async def close(self) -> None:
        for t in self._readers:
            t.cancel()
        for ws in self.sockets:
            await ws.close()
        for t in self._readers:
            with contextlib.suppress(BaseException):
                await t
        if self._session is not None:
            await self._session.close()
