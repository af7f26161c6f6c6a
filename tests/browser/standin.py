"""A minimal stand-in of the signaling protocol, used only until ``signaling.app`` exists.

It implements just what the browser adapter needs (challenge/auth/welcome, join/joined, peer-joined,
peer-left, signal relay, leave, ping/pong, error) with the real authentication rule, so the browser
side is exercised against the documented protocol. It is test scaffolding, not a server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

from aiohttp import WSMsgType, web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

AUTH_CONTEXT = b"ephemesh-signaling-auth-v1\x00"
_ROOMS: web.AppKey[dict[str, dict[str, web.WebSocketResponse]]] = web.AppKey("standin_rooms", dict)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def add_standin_signaling(app: web.Application) -> None:
    """Mount the stand-in WebSocket endpoint at ``/ws``."""
    app[_ROOMS] = {}
    app.router.add_get("/ws", _ws_handler)


async def _ws_handler(request: web.Request) -> web.WebSocketResponse:
    rooms = request.app[_ROOMS]
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    nonce = os.urandom(32)
    await ws.send_json({"type": "challenge", "v": 1, "nonce": b64u(nonce), "heartbeat_s": 15, "idle_timeout_s": 45})
    peer: str | None = None
    joined: set[str] = set()
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            try:
                frame = json.loads(msg.data)
                kind = frame["type"]
            except (ValueError, KeyError, TypeError):
                await ws.send_json({"type": "error", "code": "bad-frame", "message": "not a JSON object"})
                continue
            if peer is None:
                if kind != "auth":
                    await ws.send_json({"type": "error", "code": "unauthenticated", "message": "auth first"})
                    continue
                try:
                    pub = unb64u(frame["pubkey"])
                    VerifyKey(pub).verify(AUTH_CONTEXT + nonce, unb64u(frame["sig"]))
                except (BadSignatureError, ValueError, KeyError, TypeError):
                    await ws.send_json({"type": "error", "code": "auth-failed", "message": "bad signature"})
                    break
                peer = hashlib.sha256(pub).digest()[:16].hex()
                await ws.send_json({"type": "welcome", "peer": peer, "limits": {"max_frame": 65536}})
            elif kind == "join":
                room = str(frame["room"])
                members = rooms.setdefault(room, {})
                await ws.send_json({"type": "joined", "room": room, "peers": sorted(members)})
                for other in members.values():
                    await other.send_json({"type": "peer-joined", "room": room, "peer": peer})
                members[peer] = ws
                joined.add(room)
            elif kind == "signal":
                room = str(frame["room"])
                target = rooms.get(room, {}).get(str(frame["to"]))
                if room in joined and target is not None:
                    out = {"type": "signal", "room": room, "from": peer, "payload": frame["payload"]}
                    await target.send_json(out)
                else:
                    await ws.send_json({"type": "error", "code": "no-such-peer", "message": "not here"})
            elif kind == "leave":
                room = str(frame["room"])
                await _leave(rooms, room, peer)
                joined.discard(room)
            elif kind == "ping":
                await ws.send_json({"type": "pong", "t": int(time.time() * 1000)})
    finally:
        if peer is not None:
            for room in joined:
                await _leave(rooms, room, peer)
    return ws


async def _leave(rooms: dict[str, dict[str, web.WebSocketResponse]], room: str, peer: str) -> None:
    members = rooms.get(room, {})
    members.pop(peer, None)
    for other in list(members.values()):
        if not other.closed:
            await other.send_json({"type": "peer-left", "room": room, "peer": peer})
    if not members:
        rooms.pop(room, None)
