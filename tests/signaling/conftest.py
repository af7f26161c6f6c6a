"""Fixtures for the signaling tests: identities, configs, and a raw-frame WebSocket peer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import nacl.signing
import pytest
from aiohttp.test_utils import TestClient

from signaling.app import create_app
from signaling.config import Limits, SignalingConfig
from signaling.protocol import auth_message, b64u_decode, b64u_encode, peer_id_from_public_key

WAIT = 5.0  # upper bound for anything a test waits on; never a synchronisation delay


@dataclass(frozen=True)
class Identity:
    key: nacl.signing.SigningKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.signing.SigningKey.generate())

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self.key.sign(message).signature)


def room(n: int) -> str:
    return f"{n:032x}"


def make_config(**limits: Any) -> SignalingConfig:
    """Defaults, except fast timers are left to the test; ``limits`` override :class:`Limits`."""
    return SignalingConfig(limits=replace(Limits(), **limits))


class RawPeer:
    """A WebSocket speaking raw frames, with waits bounded by :data:`WAIT`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.challenge: dict[str, Any] = {}
        self.peer_id = ""

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=WAIT)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
        value = json.loads(msg.data)
        assert isinstance(value, dict)
        return value

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == kind, frame
        for name, value in fields.items():
            assert frame.get(name) == value, (name, frame)
        return frame

    async def expect_error(self, code: str, ref: str | None = None) -> dict[str, Any]:
        frame = await self.expect("error", code=code)
        if ref is not None:
            assert frame.get("ref") == ref, frame
        return frame

    async def expect_closed(self, code: int | None = None) -> None:
        """Read until the server closes; assert the close code if given."""
        while True:
            msg = await self.ws.receive(timeout=WAIT)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        if code is not None:
            assert self.ws.close_code == code

    async def auth(self, ident: Identity) -> dict[str, Any]:
        nonce = b64u_decode(self.challenge["nonce"])
        await self.send(
            {
                "type": "auth",
                "pubkey": b64u_encode(ident.public_key),
                "sig": b64u_encode(ident.sign(auth_message(nonce))),
            }
        )
        welcome = await self.expect("welcome", peer=ident.peer_id)
        self.peer_id = ident.peer_id
        return welcome

    async def join(self, room_id: str) -> list[str]:
        await self.send({"type": "join", "room": room_id})
        frame = await self.expect("joined", room=room_id)
        peers = frame["peers"]
        assert isinstance(peers, list)
        return peers

    async def signal(self, room_id: str, to: RawPeer, payload: str) -> None:
        await self.send({"type": "signal", "room": room_id, "to": to.peer_id, "payload": payload})
        await to.expect("signal", room=room_id, payload=payload, **{"from": self.peer_id})


Connect = Callable[[], Awaitable[RawPeer]]
ServerFactory = Callable[[SignalingConfig], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def server(aiohttp_client: Any) -> ServerFactory:
    """``await server(config)`` -> a TestClient bound to a real 127.0.0.1 socket."""

    async def make(config: SignalingConfig) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
        return client

    return make


@pytest.fixture
async def connector() -> AsyncIterator[Callable[[TestClient[Any, Any]], Awaitable[RawPeer]]]:
    """``await connector(client)`` -> a RawPeer that has read its challenge; all closed at teardown."""
    peers: list[RawPeer] = []

    async def connect(client: TestClient[Any, Any]) -> RawPeer:
        peer = RawPeer(await client.ws_connect("/ws"))
        peer.challenge = await peer.expect("challenge", v=1)
        peers.append(peer)
        return peer

    yield connect
    await asyncio.gather(*(p.ws.close() for p in peers), return_exceptions=True)
