"""A Python peer driven over stdin/stdout with JSON lines, run inside a network namespace by the NAT tests.

Commands (one JSON object per line on stdin)::

    {"cmd": "join", "invite": URL}                 -> {"ev": "joined", "room": ID, "t": T}
    {"cmd": "send", "room": ID, "text": S}         -> {"ev": "sent", "room": ID, "id": MSG, "t": T}
    {"cmd": "links", "room": ID}                   -> {"ev": "links", "room": ID, "links": {...}}
    {"cmd": "quit"}

Events written as they happen: ``{"ev": "ready", "peer": ID}`` once at start, ``{"ev": "message", "room",
"sender", "text", "t"}`` for every message received from another member, and ``{"ev": "link", "room",
"peer", "state", "reason", "path", "t"}`` on every link-state change. ``t`` is ``time.time()``: every
namespace shares the machine's clock, so the test can subtract times taken in different processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from peer.node import LinkChanged, MessageReceived, Peer, RoomHandle


def emit(obj: dict[str, Any]) -> None:
    obj.setdefault("t", time.time())
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def watch(room: RoomHandle, me: str) -> None:
    async for ev in room.events():
        if isinstance(ev, MessageReceived) and ev.message.sender != me:
            emit(
                {"ev": "message", "room": room.room_id, "sender": ev.message.sender, "text": ev.message.text}
            )
        elif isinstance(ev, LinkChanged):
            emit({"ev": "link", "room": room.room_id, **ev.link.to_json()})


#: more commands (``tests/net/relay_agent.py``): ``handle(peer, cmd)`` -> True if it knew ``cmd["cmd"]``
Extra = Callable[[Peer, dict[str, Any]], Awaitable[bool]]


async def main(extra: Extra | None = None) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    with tempfile.TemporaryDirectory(prefix="ephemesh-agent-") as home:
        async with Peer(home=home) as peer:
            emit({"ev": "ready", "peer": peer.peer_id})
            watchers: list[asyncio.Task[None]] = []
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "join":
                    room = await peer.join(cmd["invite"])
                    watchers.append(asyncio.create_task(watch(room, peer.peer_id)))
                    emit({"ev": "joined", "room": room.room_id})
                elif cmd["cmd"] == "send":
                    msg = await peer.rooms[cmd["room"]].send(cmd["text"])
                    emit({"ev": "sent", "room": cmd["room"], "id": msg.id})
                elif cmd["cmd"] == "links":
                    links = peer.rooms[cmd["room"]].links()
                    emit(
                        {
                            "ev": "links",
                            "room": cmd["room"],
                            "links": {p: s.to_json() for p, s in links.items()},
                        }
                    )
                elif cmd["cmd"] == "quit":
                    break
                elif extra is not None:
                    await extra(peer, cmd)
            for task in watchers:
                task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
