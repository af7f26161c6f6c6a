"""Python client of the ephemesh signaling protocol v1 (see docs/signaling.md).

Rules:
- :meth:`SignalingClient.connect` returns only once the server has welcomed us, after checking that the
  peer id it assigned is the one our public key implies; any failure raises :class:`SignalingError`.
- The client owns two tasks, a reader and a heartbeat (``ping`` every ``heartbeat_s``); both are
  cancelled and awaited by :meth:`close`. The connection is dropped when no frame arrives for the
  server's ``idle_timeout_s``.
- ``join``/``leave`` are request/response and run one at a time; a server error about them raises
  :class:`SignalingError`. ``signal`` is fire-and-forget: a refusal arrives as a :class:`ServerError`
  event.
- Events are frozen dataclasses delivered in order through a bounded queue; a consumer that stops
  reading eventually stops the reader (back-pressure) rather than growing memory. The last event is
  always :class:`Disconnected`, after which :meth:`next_event` keeps returning it.
- Server frames are remote input: malformed ones end the connection (fail closed); unknown frame types
  are ignored for forward compatibility. What a server announces is clamped to sane ranges, so a
  hostile or broken one cannot make us flood it or drop at once: ``heartbeat_s`` to
  [``MIN_HEARTBEAT_S``, ``MAX_HEARTBEAT_S``] and at most half of ``idle_timeout_s``, itself clamped to
  [``MIN_IDLE_S``, ``MAX_IDLE_S``]; ``welcome.turn`` is kept only if well-formed (bounded URLs and
  strings, ``ttl_s`` clamped); ``welcome.limits`` keeps at most 32 numeric entries; a room's peer list
  at most ``MAX_PEERS`` ids.
- A connection closed because the same identity connected elsewhere ends with
  ``Disconnected(replaced=True)``: the owner should back off, not reconnect at once (two processes or
  devices with one identity would otherwise kick each other off forever).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from peer.core.errors import ProtocolError

log = logging.getLogger("ephemesh.net.signaling")

AUTH_CONTEXT: Final = b"ephemesh-signaling-auth-v1\x00"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_EVENT_QUEUE = 1024
CLOSE_REPLACED: Final = 4001
MIN_HEARTBEAT_S: Final = 1.0
MAX_HEARTBEAT_S: Final = 300.0
MIN_IDLE_S: Final = 5.0
MAX_IDLE_S: Final = 3600.0
MAX_PEERS: Final = 512
_MAX_TURN_URLS: Final = 8
_MAX_TURN_STR: Final = 512
_MAX_LIMITS: Final = 32
_MAX_ICE_SERVERS: Final = 16


class SignalingError(Exception):
    """The signaling server refused us or could not be reached. ``code`` is stable, ``message`` human."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class PeerJoined:
    room: str
    peer: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    room: str
    peer: str


@dataclass(frozen=True, slots=True)
class SignalReceived:
    room: str
    sender: str
    payload: str


@dataclass(frozen=True, slots=True)
class ServerError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str
    #: the server closed us because the same identity connected again (elsewhere)
    replaced: bool = False


SignalingEvent = PeerJoined | PeerLeft | SignalReceived | ServerError | Disconnected


# ------------------------------------------------------------------------------------------ helpers


def ws_url(url: str) -> str:
    """Accept ``ws(s)://host/ws`` as is; map ``http(s)://host[:port][/]`` to ``ws(s)://host[:port]/ws``."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise SignalingError("bad-url", "expected ws://, wss://, http:// or https:// URL")
    path = parts.path
    if parts.scheme in ("http", "https") and path in ("", "/"):
        path = "/ws"
    return urlunsplit((scheme, parts.netloc, path or "/ws", parts.query, ""))


def _id(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or _HEX32.fullmatch(value) is None:
        raise ProtocolError("bad-frame", f"'{name}' is not an id")
    return value


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise ProtocolError("bad-frame", f"'{name}' is not a string")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ProtocolError("bad-frame", f"'{name}' is not a positive number")
    return float(value)


def clamp_timing(heartbeat_s: float, idle_timeout_s: float) -> tuple[float, float]:
    """The heartbeat and idle timeout we actually use for what a server announced."""
    idle = min(max(idle_timeout_s, MIN_IDLE_S), MAX_IDLE_S)
    heartbeat = min(max(heartbeat_s, MIN_HEARTBEAT_S), MAX_HEARTBEAT_S, idle / 2)
    return heartbeat, idle


def _clean_turn(turn: object) -> dict[str, Any] | None:
    """``welcome.turn`` if well-formed, bounded, with ``ttl_s`` clamped; else None (no TURN)."""
    if not isinstance(turn, dict):
        return None
    urls = turn.get("urls")
    urls = [urls] if isinstance(urls, str) else urls
    if (
        not isinstance(urls, list)
        or not 0 < len(urls) <= _MAX_TURN_URLS
        or not all(isinstance(u, str) and 0 < len(u) <= _MAX_TURN_STR for u in urls)
    ):
        return None
    out: dict[str, Any] = {"urls": list(urls)}
    for name in ("username", "credential"):
        value = turn.get(name)
        if value is not None:
            if not isinstance(value, str) or len(value) > _MAX_TURN_STR:
                return None
            out[name] = value
    ttl = turn.get("ttl_s")
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        out["ttl_s"] = min(max(float(ttl), 60.0), 7 * 86400.0)
    policy = turn.get("policy")
    if policy in ("relay", "all"):
        out["policy"] = policy
    return out


def _clean_limits(limits: object) -> dict[str, Any]:
    if not isinstance(limits, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in list(limits.items())[:_MAX_LIMITS]:
        if (
            isinstance(key, str)
            and len(key) <= 64
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            out[key] = min(max(value, 0), 1 << 30)
    return out


def _decode(text: str) -> dict[str, Any]:
    if len(text) > 1 << 20:
        raise ProtocolError("too-large", "server frame too large")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad-json", "server frame is not JSON") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError("bad-frame", "server frame is not a typed object")
    return value


def _b64u_decode(text: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("bad-frame", "invalid base64url") from exc
    return data


def _b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------------------------------ client


class SignalingClient:
    """An authenticated connection to a signaling server. Create with :meth:`connect`."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        own_session: bool,
        peer_id: str,
        welcome: dict[str, Any],
        heartbeat_s: float,
        idle_timeout_s: float,
        request_timeout_s: float = 10.0,
    ) -> None:
        self._ws = ws
        self._session = session
        self._own_session = own_session
        self._peer_id = peer_id
        self._turn: dict[str, Any] | None = _clean_turn(welcome.get("turn"))
        ice = welcome.get("ice_servers")  # each entry is validated where it is used (peer/net/rtc.py)
        self._ice_servers: list[dict[str, Any]] | None = (
            [e for e in ice[:_MAX_ICE_SERVERS] if isinstance(e, dict)] if isinstance(ice, list) else None
        )
        self._limits: dict[str, Any] = _clean_limits(welcome.get("limits"))
        self._heartbeat_s, self._idle_timeout_s = clamp_timing(heartbeat_s, idle_timeout_s)
        self._replaced = False
        self._request_timeout_s = request_timeout_s
        self._events: asyncio.Queue[SignalingEvent] = asyncio.Queue(_EVENT_QUEUE)
        self._request_lock = asyncio.Lock()
        self._pending: tuple[str, str, asyncio.Future[dict[str, Any]]] | None = None
        self._disconnected: Disconnected | None = None
        self._closed = False
        self._rooms: set[str] = set()
        self._tasks = {
            asyncio.create_task(self._read_loop(), name="signaling-reader"),
            asyncio.create_task(self._heartbeat_loop(), name="signaling-heartbeat"),
        }

    # ---------------------------------------------------------------------------------- connect

    @classmethod
    async def connect(
        cls,
        url: str,
        public_key: bytes,
        sign: Callable[[bytes], bytes],
        session: aiohttp.ClientSession | None = None,
        *,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
    ) -> SignalingClient:
        """Connect, answer the challenge with ``sign(context + nonce)`` and wait for ``welcome``.

        ``connect_timeout_s`` bounds the whole handshake; ``request_timeout_s`` each later join/leave.
        """
        target = ws_url(url)
        own = session is None
        sess = session if session is not None else aiohttp.ClientSession()
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(connect_timeout_s):
                try:
                    ws = await sess.ws_connect(target, autoping=True, max_msg_size=1 << 20)
                except (aiohttp.ClientError, OSError) as exc:
                    raise SignalingError("connect-failed", type(exc).__name__) from exc
                challenge = await cls._receive_frame(ws)
                if challenge["type"] != "challenge" or challenge.get("v") != 1:
                    raise SignalingError("protocol", "expected a v1 challenge")
                nonce = _b64u_decode(_str(challenge, "nonce"))
                if len(nonce) != 32:
                    raise SignalingError("protocol", "bad challenge nonce")
                heartbeat_s = _number(challenge, "heartbeat_s")
                idle_s = _number(challenge, "idle_timeout_s")
                signature = sign(AUTH_CONTEXT + nonce)
                await ws.send_str(
                    json.dumps(
                        {"type": "auth", "pubkey": _b64u_encode(public_key), "sig": _b64u_encode(signature)}
                    )
                )
                welcome = await cls._receive_frame(ws)
                if welcome["type"] == "error":
                    raise SignalingError(_str(welcome, "code"), str(welcome.get("message", "")))
                if welcome["type"] != "welcome":
                    raise SignalingError("protocol", "expected welcome")
                peer_id = _id(welcome, "peer")
                if peer_id != hashlib.sha256(public_key).digest()[:16].hex():
                    raise SignalingError("protocol", "server assigned a peer id that is not ours")
        except BaseException as exc:
            if ws is not None:
                await ws.close()
            if own:
                await sess.close()
            if isinstance(exc, TimeoutError):
                raise SignalingError("timeout", "no welcome in time") from exc
            if isinstance(exc, ProtocolError):
                raise SignalingError("protocol", exc.code) from exc
            raise
        return cls(ws, sess, own, peer_id, welcome, heartbeat_s, idle_s, request_timeout_s)

    @staticmethod
    async def _receive_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise SignalingError("connection-closed", f"server closed the connection ({ws.close_code})")
        return _decode(msg.data)

    # ---------------------------------------------------------------------------------- properties

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def ice_servers(self) -> list[dict[str, Any]] | None:
        """``welcome.ice_servers`` (STUN and TURN, RTCIceServer-shaped; validated by peer.net.rtc)."""
        return self._ice_servers

    @property
    def ice(self) -> list[dict[str, Any]] | dict[str, Any] | None:
        """What to configure ICE with: ``ice_servers``, else the legacy ``turn`` object."""
        return self._ice_servers if self._ice_servers is not None else self._turn

    @property
    def turn(self) -> dict[str, Any] | None:
        """TURN credentials from ``welcome`` (``urls``, ``username``, ``credential``, ``ttl_s``) or None."""
        return self._turn

    @property
    def limits(self) -> dict[str, Any]:
        return self._limits

    @property
    def closed(self) -> bool:
        return self._disconnected is not None or self._closed

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._rooms)

    # ---------------------------------------------------------------------------------- requests

    async def join(self, room_id: str) -> list[str]:
        """Join a room; return the peer ids already present."""
        reply = await self._request("join", room_id, {"type": "join", "room": room_id})
        peers = reply.get("peers")
        if not isinstance(peers, list) or not all(isinstance(p, str) and _HEX32.fullmatch(p) for p in peers):
            raise SignalingError("protocol", "bad joined frame")
        if len(peers) > MAX_PEERS:
            log.warning("signaling server listed %d peers in a room; keeping %d", len(peers), MAX_PEERS)
        self._rooms.add(room_id)
        return list(peers[:MAX_PEERS])

    async def leave(self, room_id: str) -> None:
        await self._request("leave", room_id, {"type": "leave", "room": room_id})
        self._rooms.discard(room_id)

    async def signal(self, room_id: str, to: str, payload: str) -> None:
        """Relay ``payload`` (opaque, already encrypted and signed) to peer ``to`` in ``room_id``."""
        await self._send({"type": "signal", "room": room_id, "to": to, "payload": payload})

    async def ping(self) -> None:
        await self._send({"type": "ping"})

    async def _request(self, kind: str, room: str, frame: dict[str, Any]) -> dict[str, Any]:
        async with self._request_lock:
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending = (kind, room, future)
            try:
                await self._send(frame)
                async with asyncio.timeout(self._request_timeout_s):
                    return await future
            except TimeoutError as exc:
                raise SignalingError("timeout", f"no answer to {kind}") from exc
            finally:
                self._pending = None

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            raise SignalingError("closed", "connection is closed")
        try:
            await self._ws.send_str(json.dumps(frame, separators=(",", ":")))
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise SignalingError("closed", "connection is closed") from exc

    # ---------------------------------------------------------------------------------- events

    async def next_event(self, timeout: float | None = None) -> SignalingEvent:
        """The next event; raises ``TimeoutError`` after ``timeout`` seconds. Sticky once disconnected."""
        if self._events.empty() and self._disconnected is not None:
            return self._disconnected
        async with asyncio.timeout(timeout):
            return await self._events.get()

    async def events(self) -> AsyncIterator[SignalingEvent]:
        """Iterate events until (and including) :class:`Disconnected`."""
        while True:
            event = await self.next_event()
            yield event
            if isinstance(event, Disconnected):
                return

    # ---------------------------------------------------------------------------------- tasks

    async def _read_loop(self) -> None:
        reason = "closed"
        try:
            while True:
                try:
                    msg = await self._ws.receive(timeout=self._idle_timeout_s)
                except TimeoutError:
                    reason = "idle-timeout"
                    return
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    reason = f"closed ({self._ws.close_code})" if self._ws.close_code else "closed"
                    self._replaced = self._replaced or self._ws.close_code == CLOSE_REPLACED
                    return
                try:
                    await self._on_frame(_decode(msg.data))
                except ProtocolError as exc:
                    log.warning("signaling server sent a bad frame: %s", exc.code)
                    reason = f"protocol-error: {exc.code}"
                    return
        finally:
            await self._finish(reason)

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "signal":
            await self._events.put(
                SignalReceived(_id(frame, "room"), _id(frame, "from"), _str(frame, "payload"))
            )
        elif kind == "peer-joined":
            await self._events.put(PeerJoined(_id(frame, "room"), _id(frame, "peer")))
        elif kind == "peer-left":
            await self._events.put(PeerLeft(_id(frame, "room"), _id(frame, "peer")))
        elif kind in ("joined", "left"):
            self._resolve("join" if kind == "joined" else "leave", frame)
        elif kind == "error":
            code, message = _str(frame, "code"), str(frame.get("message", ""))[:200]
            if code == "replaced":
                self._replaced = True
            ref = frame.get("ref")
            pending = self._pending
            if pending is not None and ref == pending[0] and not pending[2].done():
                pending[2].set_exception(SignalingError(code, message))
            else:
                await self._events.put(ServerError(code, message))
        # "pong" and unknown types: activity only

    def _resolve(self, kind: str, frame: dict[str, Any]) -> None:
        room = _id(frame, "room")
        pending = self._pending
        if pending is not None and pending[0] == kind and pending[1] == room and not pending[2].done():
            pending[2].set_result(frame)

    async def _heartbeat_loop(self) -> None:
        with contextlib.suppress(SignalingError):
            while True:
                await asyncio.sleep(self._heartbeat_s)  # a timer, not synchronisation
                await self.ping()

    async def _finish(self, reason: str) -> None:
        if self._disconnected is not None:
            return
        self._disconnected = Disconnected(reason, replaced=self._replaced)
        pending = self._pending
        if pending is not None and not pending[2].done():
            pending[2].set_exception(SignalingError("closed", reason))
        if not self._ws.closed:
            await self._ws.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(self._disconnected)

    # ---------------------------------------------------------------------------------- close

    async def close(self) -> None:
        """Close the connection and stop every task the client owns. Idempotent (a call after one that was
        cancelled half way still closes what that one left open)."""
        if self._closed:
            if self._own_session and not self._session.closed:
                await self._session.close()
            return
        self._closed = True
        try:
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks)
            if self._disconnected is None:
                self._disconnected = Disconnected("closed by us")
            if not self._ws.closed:
                await self._ws.close()
        finally:  # also when our caller is cancelled half way (its loop being stopped): no session leaks
            if self._own_session and not self._session.closed:
                await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
