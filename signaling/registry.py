"""Sans-IO room registry: connections, authentication, rooms, limits and timers.

No asyncio, no sockets, no clock: the transport calls :meth:`Registry.connect`,
:meth:`Registry.handle`, :meth:`Registry.disconnect` and :meth:`Registry.tick` with the current time
(Unix seconds, float) and performs the :data:`Delivery` list each returns, in order.

Connection states and the frames each accepts::

    AWAIT_AUTH --auth ok--> OPEN --close delivery / disconnect--> CLOSED
    AWAIT_AUTH: auth                      (anything else: not-authenticated)
    OPEN:       join, leave, signal, ping (auth again: bad-frame)
    CLOSED:     nothing; every input is ignored

Rules:
- Every frame, valid or not, counts as activity. No frame for ``idle_timeout_s`` closes the connection
  (``idle-timeout``, 4000); no successful auth within ``auth_timeout_s`` closes it (``auth-timeout``, 1008).
- The token bucket is charged before parsing; a frame without a token is answered ``rate-limited``.
- Each error frame sent to a connection counts; above ``max_errors`` it is closed with 1008
  (``too-many-errors``). A failed auth closes at once with 1008.
- A peer id authenticating again REPLACES its older connection: the old one gets ``replaced`` and is
  closed (4001); its memberships are dropped (others see ``peer-left``). The new one joins afresh.
- A :class:`Close` delivery always comes after the frames destined for that connection and the registry
  forgets the connection at once (memberships dropped, ``peer-left`` sent), so the transport only has
  to flush and close.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from peer.core.errors import ProtocolError
from signaling import protocol
from signaling.config import SignalingConfig
from signaling.turn import welcome_ice

CLOSE_POLICY = 1008
CLOSE_IDLE = 4000
CLOSE_REPLACED = 4001
CLOSE_SLOW = 4002


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` (a JSON object) to connection ``conn_id``."""

    conn_id: int
    frame: protocol.ServerFrame


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn_id`` with WebSocket close ``code`` after flushing what precedes it."""

    conn_id: int
    code: int
    reason: str


Delivery = Send | Close


class State(enum.Enum):
    AWAIT_AUTH = "await-auth"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(slots=True)
class _Conn:
    conn_id: int
    nonce: bytes
    connected_at: float
    last_activity: float
    tokens: float
    last_refill: float
    state: State = State.AWAIT_AUTH
    peer: str | None = None
    rooms: set[str] = field(default_factory=set)
    errors: int = 0


@dataclass(slots=True)
class Stats:
    """Counters for ``/metrics`` (monotonic totals)."""

    connections_total: int = 0
    authenticated_total: int = 0
    frames_total: int = 0
    signals_total: int = 0
    errors_total: Counter[str] = field(default_factory=Counter)
    closes_total: Counter[str] = field(default_factory=Counter)


class Registry:
    """All signaling state of one server instance; see the module docstring for the rules."""

    def __init__(self, config: SignalingConfig) -> None:
        self._config = config
        self._limits = config.limits
        self._conns: dict[int, _Conn] = {}
        self._by_peer: dict[str, int] = {}
        self._rooms: dict[str, dict[str, int]] = {}  # room -> peer id -> conn id
        self.stats = Stats()

    # ---------------------------------------------------------------------------------- queries

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def peers_in(self, room: str) -> list[str]:
        return sorted(self._rooms.get(room, {}))

    def peer_of(self, conn_id: int) -> str | None:
        conn = self._conns.get(conn_id)
        return conn.peer if conn else None

    def conn_of(self, peer: str) -> int | None:
        """The connection ``peer`` is authenticated on, if any."""
        return self._by_peer.get(peer)

    # ---------------------------------------------------------------------------------- inputs

    def connect(self, conn_id: int, nonce: bytes, now: float) -> list[Delivery]:
        """A transport connection opened; returns the challenge."""
        if conn_id in self._conns:
            raise ValueError(f"connection {conn_id} already registered")
        if len(nonce) != protocol.NONCE_BYTES:
            raise ValueError("nonce must be 32 bytes")
        self._conns[conn_id] = _Conn(
            conn_id=conn_id,
            nonce=nonce,
            connected_at=now,
            last_activity=now,
            tokens=float(self._limits.rate_burst),
            last_refill=now,
        )
        self.stats.connections_total += 1
        cfg = self._config
        return [Send(conn_id, protocol.challenge(nonce, cfg.heartbeat_s, cfg.idle_timeout_s))]

    def disconnect(self, conn_id: int, now: float) -> list[Delivery]:
        """The transport connection is gone (any reason). Idempotent."""
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return []
        return self._drop(conn)

    def kill(self, conn_id: int, code: str, close_code: int, now: float) -> list[Delivery]:
        """The transport gave up on a connection (e.g. ``slow-consumer``): forget it, tell its rooms."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return []
        return self._close(conn, code, "connection dropped", close_code)

    def refuse(self, conn_id: int, code: str, message: str, room: str | None = None) -> list[Delivery]:
        """The transport refused a signal ``conn_id`` sent (e.g. ``recipient-busy``): an error frame that
        counts against that connection's error budget like any other."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.state is not State.OPEN:
            return []
        return self._error(conn, code, message, "signal", room)

    def handle(self, conn_id: int, data: str | bytes, now: float) -> list[Delivery]:
        """One WebSocket message (``bytes`` for a binary frame) from ``conn_id``."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.state is State.CLOSED:
            return []
        self.stats.frames_total += 1
        conn.last_activity = now
        if not self._take_token(conn, now):
            return self._error(conn, "rate-limited", "slow down")
        try:
            frame = protocol.parse_frame(data, self._limits.max_frame_bytes, self._limits.max_payload_chars)
        except protocol.FrameError as exc:
            return self._error(conn, exc.code, exc.message, exc.ref)
        if conn.state is State.AWAIT_AUTH:
            if isinstance(frame, protocol.Auth):
                return self._auth(conn, frame, now)
            return self._error(conn, "not-authenticated", "authenticate first", _type_of(frame))
        match frame:
            case protocol.Join(room):
                return self._join(conn, room)
            case protocol.Leave(room):
                return self._leave(conn, room)
            case protocol.Signal(room, to, payload):
                return self._signal(conn, room, to, payload)
            case protocol.Ping():
                return [Send(conn_id, protocol.pong(int(now * 1000)))]
            case protocol.Auth():
                return self._error(conn, "bad-frame", "already authenticated", "auth")
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    def tick(self, now: float) -> list[Delivery]:
        """Enforce auth and idle timeouts."""
        out: list[Delivery] = []
        cfg = self._config
        for conn in list(self._conns.values()):
            if conn.state is State.CLOSED:
                continue
            if conn.state is State.AWAIT_AUTH and now - conn.connected_at >= cfg.auth_timeout_s:
                out += self._close(conn, "auth-timeout", "no auth in time", CLOSE_POLICY)
            elif now - conn.last_activity >= cfg.idle_timeout_s:
                out += self._close(conn, "idle-timeout", "no frame in time", CLOSE_IDLE)
        return out

    # ---------------------------------------------------------------------------------- frames

    def _auth(self, conn: _Conn, frame: protocol.Auth, now: float) -> list[Delivery]:
        try:
            peer = protocol.verify_auth(frame.pubkey, frame.sig, conn.nonce)
        except ProtocolError as exc:
            return self._close(conn, "auth-failed", exc.message, CLOSE_POLICY, ref="auth")
        out: list[Delivery] = []
        old_id = self._by_peer.get(peer)
        if old_id is not None:
            out += self._close(self._conns[old_id], "replaced", "same peer connected again", CLOSE_REPLACED)
        conn.state = State.OPEN
        conn.peer = peer
        self._by_peer[peer] = conn.conn_id
        self.stats.authenticated_total += 1
        lim = self._limits
        welcome: protocol.ServerFrame = {
            "type": "welcome",
            "peer": peer,
            "limits": {
                "max_frame_bytes": lim.max_frame_bytes,
                "max_payload_chars": lim.max_payload_chars,
                "max_rooms": lim.max_rooms_per_conn,
                "max_room_peers": lim.max_peers_per_room,
                "rate_per_s": lim.rate_per_s,
                "rate_burst": lim.rate_burst,
            },
        }
        welcome.update(welcome_ice(self._config, peer, now))
        out.append(Send(conn.conn_id, welcome))
        return out

    def _join(self, conn: _Conn, room: str) -> list[Delivery]:
        assert conn.peer is not None
        members = self._rooms.get(room)
        if room in conn.rooms and members is not None:
            return [Send(conn.conn_id, protocol.joined(room, sorted(p for p in members if p != conn.peer)))]
        if len(conn.rooms) >= self._limits.max_rooms_per_conn:
            return self._error(conn, "too-many-rooms", "room limit reached", "join", room)
        if members is not None and len(members) >= self._limits.max_peers_per_room:
            return self._error(conn, "room-full", "room is full", "join", room)
        if members is None:
            members = self._rooms[room] = {}
        out: list[Delivery] = [
            Send(other, protocol.peer_joined(room, conn.peer)) for other in members.values()
        ]
        present = sorted(members)
        members[conn.peer] = conn.conn_id
        conn.rooms.add(room)
        out.insert(0, Send(conn.conn_id, protocol.joined(room, present)))
        return out

    def _leave(self, conn: _Conn, room: str) -> list[Delivery]:
        if room not in conn.rooms:
            return self._error(conn, "not-in-room", "not a member of this room", "leave", room)
        out: list[Delivery] = [Send(conn.conn_id, protocol.left(room))]
        out += self._remove_from_room(conn, room)
        return out

    def _signal(self, conn: _Conn, room: str, to: str, payload: str) -> list[Delivery]:
        assert conn.peer is not None
        if room not in conn.rooms:
            return self._error(conn, "not-in-room", "not a member of this room", "signal", room)
        target = self._rooms[room].get(to)
        if target is None or to == conn.peer:
            return self._error(conn, "unknown-peer", "no such peer in this room", "signal", room)
        self.stats.signals_total += 1
        return [Send(target, protocol.signal(room, conn.peer, payload))]

    # ---------------------------------------------------------------------------------- helpers

    def _take_token(self, conn: _Conn, now: float) -> bool:
        lim = self._limits
        elapsed = max(0.0, now - conn.last_refill)
        conn.tokens = min(float(lim.rate_burst), conn.tokens + elapsed * lim.rate_per_s)
        conn.last_refill = now
        if conn.tokens < 1.0:
            return False
        conn.tokens -= 1.0
        return True

    def _error(
        self, conn: _Conn, code: str, message: str, ref: str | None = None, room: str | None = None
    ) -> list[Delivery]:
        self.stats.errors_total[code] += 1
        conn.errors += 1
        out: list[Delivery] = [Send(conn.conn_id, protocol.error(code, message, ref, room))]
        if conn.errors > self._limits.max_errors:
            out += self._close(conn, "too-many-errors", "too many errors", CLOSE_POLICY)
        return out

    def _close(
        self, conn: _Conn, code: str, message: str, close_code: int, ref: str | None = None
    ) -> list[Delivery]:
        """Send a final error, forget the connection, then close it."""
        if code not in ("too-many-errors",):
            self.stats.errors_total[code] += 1
        self.stats.closes_total[code] += 1
        out: list[Delivery] = [Send(conn.conn_id, protocol.error(code, message, ref))]
        self._conns.pop(conn.conn_id, None)
        out += self._drop(conn)
        out.append(Close(conn.conn_id, close_code, code))
        return out

    def _drop(self, conn: _Conn) -> list[Delivery]:
        conn.state = State.CLOSED
        out: list[Delivery] = []
        for room in sorted(conn.rooms):
            out += self._remove_from_room(conn, room)
        if conn.peer is not None and self._by_peer.get(conn.peer) == conn.conn_id:
            del self._by_peer[conn.peer]
        return out

    def _remove_from_room(self, conn: _Conn, room: str) -> list[Delivery]:
        assert conn.peer is not None
        conn.rooms.discard(room)
        members = self._rooms.get(room, {})
        members.pop(conn.peer, None)
        if not members:
            self._rooms.pop(room, None)
            return []
        return [Send(other, protocol.peer_left(room, conn.peer)) for other in members.values()]


def _type_of(frame: protocol.ClientFrame) -> str:
    return {
        protocol.Auth: "auth",
        protocol.Join: "join",
        protocol.Leave: "leave",
        protocol.Signal: "signal",
        protocol.Ping: "ping",
    }[type(frame)]
