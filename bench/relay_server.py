"""The centralised baseline: a plain aiohttp WebSocket relay, ``python -m bench.relay_server``.

``GET /ws?room=R``: every binary frame a client sends is forwarded to every *other* client of room R.
No auth, no crypto, no bounds: the cheapest honest relay aiohttp can be, so that the gap to it is what
P2P costs. Forwarding uses ``send_bytes`` without awaiting each client in turn (one task per client
drains its queue). Prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from aiohttp import WSMsgType, web

from bench.common import raise_fd_limit

ROOMS: web.AppKey[dict[str, set[asyncio.Queue[bytes]]]] = web.AppKey("rooms", dict)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    room = request.query.get("room", "")
    members = request.app[ROOMS].setdefault(room, set())
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    members.add(queue)  # before the handshake completes, so a connected client never misses a frame
    await ws.prepare(request)

    async def writer() -> None:
        while True:
            data = await queue.get()
            await ws.send_bytes(data)

    task = asyncio.create_task(writer())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                for q in members:
                    if q is not queue:
                        q.put_nowait(msg.data)
    finally:
        members.discard(queue)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    return ws


def create_app() -> web.Application:
    app = web.Application()
    app[ROOMS] = {}
    app.router.add_get("/ws", ws_handler)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    raise_fd_limit()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
