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

        async def read_ws() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got(tag_of(msg.data))

        readers.append(asyncio.create_task(read_ws()))

        async def send(tag: int) -> None:
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
    asyncio.run(run(ap.parse_args(argv)))


if __name__ == "__main__":
    main()
