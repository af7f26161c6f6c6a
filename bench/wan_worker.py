"""One peer of the WAN benchmark, run inside its own network namespace by :mod:`bench.wan`.

Protocol with the controller (stdin/stdout lines): the worker prints ``READY`` once connected to the
whole group; the controller answers ``GO <t0>`` (a ``time.monotonic()`` instant, shared by every
process on the machine); the worker sends message ``k`` at ``t0 + k * interval`` when ``k % n`` is its
index, then prints ``RESULT <json>`` with its send and receive instants once it has every other
member's messages (or after a timeout), and exits on ``EXIT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import payload_text, tag_of


async def line() -> str:
    text: str = await asyncio.to_thread(sys.stdin.readline)
    return text.strip()


class DelayLine:
    """Emulated one-way propagation delay: items come out ``delay_s`` after they went in, in order.

    Used only where the kernel has no ``sch_netem``: the delay is added in the application, at the
    sending side of each data channel (peer to peer) and on both sides of the relay (peer to server,
    server to peer), so every message crosses the same emulated distances as with netem.
    """

    def __init__(self, delay_s: float, out: Any) -> None:
        self.delay_s = delay_s
        self.out = out
        self.queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    def put(self, item: Any) -> None:
        self.queue.put_nowait((time.monotonic() + self.delay_s, item))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, item = await self.queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                fut = loop.create_future()
                loop.call_later(wait, fut.set_result, None)  # emulated propagation, not a synchronisation
                await fut
            result = self.out(item)
            if asyncio.iscoroutine(result):
                await result


def emulate_link_delay(delay_s: float) -> None:
    """Delay every data-channel frame this process sends by ``delay_s`` (order kept per link)."""
    from peer.net import rtc

    original = rtc.RtcTransport.send
    lines: dict[int, DelayLine] = {}

    async def send(self: rtc.RtcTransport, data: bytes) -> None:
        line = lines.get(id(self))
        if line is None:
            line = lines[id(self)] = DelayLine(delay_s, lambda d, t=self: original(t, d))
        line.put(data)

    rtc.RtcTransport.send = send  # type: ignore[method-assign]


async def run(args: argparse.Namespace) -> None:
    recvs: dict[int, float] = {}
    sends: dict[int, float] = {}
    mine = [k for k in range(args.messages) if k % args.n == args.index]
    expected = args.messages - len(mine)
    all_in = asyncio.Event()

    def got(tag: int) -> None:
        recvs.setdefault(tag, time.monotonic())
        if len(recvs) >= expected:
            all_in.set()

    send: Any
    closers: list[Any] = []
    readers: list[asyncio.Task[None]] = []
    if args.role == "ephemesh":
        from peer.core.room import MessageReceived
        from peer.node import Peer

        if args.emulate_peer_ms > 0:
            emulate_link_delay(args.emulate_peer_ms / 1000)

        peer = Peer(home=Path(args.home))
        closers.append(peer.close)
        room = await peer.join(args.invite)
        await room.wait_for(lambda: len(room.online_members()) >= args.n - 1, 60)

        async def read_room() -> None:
            async for ev in room.events():
                if isinstance(ev, MessageReceived):
                    got(tag_of(ev.message.text))

        readers.append(asyncio.create_task(read_room()))

        async def send(tag: int) -> None:
            await room.send(payload_text(tag), ttl=3600)
    else:
        session = aiohttp.ClientSession()
        closers.append(session.close)
        ws = await session.ws_connect(f"{args.server}/ws?room=wan")
        closers.insert(0, ws.close)

        down = DelayLine(args.emulate_server_ms / 1000, got) if args.emulate_server_ms > 0 else None
        up = DelayLine(args.emulate_server_ms / 1000, ws.send_bytes) if args.emulate_server_ms > 0 else None

        async def read_ws() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    if down is not None:
                        down.put(tag_of(msg.data))
                    else:
                        got(tag_of(msg.data))

        readers.append(asyncio.create_task(read_ws()))

        async def send(tag: int) -> None:
            if up is not None:
                up.put(payload_text(tag).encode())
            else:
                await ws.send_bytes(payload_text(tag).encode())

    print("READY", flush=True)
    go = await line()
    t0 = float(go.split()[1])
    loop = asyncio.get_running_loop()
    for k in mine:
        delay = t0 + k * args.interval - time.monotonic()
        if delay > 0:
            fut = loop.create_future()
            loop.call_later(delay, fut.set_result, None)  # a schedule, not a synchronisation
            await fut
        sends[k] = time.monotonic()
        await send(k)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 30)
    print("RESULT " + json.dumps({"index": args.index, "sends": sends, "recvs": recvs}), flush=True)
    await line()  # EXIT
    for t in readers:
        t.cancel()
    for close in closers:
        with contextlib.suppress(Exception):
            await close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["ephemesh", "relay"], required=True)
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--server", default="")
    ap.add_argument("--invite", default="")
    ap.add_argument("--home", default="")
    ap.add_argument("--emulate-peer-ms", type=float, default=0.0, help="app-level delay (no netem)")
    ap.add_argument("--emulate-server-ms", type=float, default=0.0, help="app-level delay (no netem)")
    asyncio.run(run(ap.parse_args(argv)))


if __name__ == "__main__":
    main()
