"""The aiohttp transport around :class:`signaling.registry.Registry`.

Rules:
- Routes: ``GET /ws`` (WebSocket), ``GET /healthz`` (JSON), ``GET /metrics`` (Prometheus text), and the
  static ``web_root`` at ``/`` (``/`` serves ``index.html``) when one is configured.
- Every connection has an outbox: an unbounded ``asyncio.Queue`` whose *frame* count is capped at
  ``limits.send_queue_frames``, drained by one writer task. Broadcasting only enqueues, so one slow
  reader never stalls a room. A frame that would exceed the cap marks the reader as a slow consumer:
  its transport is aborted (it is not reading, so a close frame would never arrive) and the registry
  tells its rooms it left.
- A :class:`~signaling.registry.Close` delivery is queued behind the frames before it; the writer
  flushes them and then closes with the requested code.
- Messages larger than ``limits.hard_frame_bytes`` are refused by aiohttp itself (close 1009); between
  ``max_frame_bytes`` and that, the registry answers ``too-large`` and the connection stays.
- With ``config.redis_url`` set, a :class:`~signaling.redis_bus.RedisBus` shares rooms with the other
  instances: it sees every delivery first (to publish local joins/leaves/closes and forward signals
  addressed to peers of other instances) and is told of every successful auth with its proof. Without
  it the app behaves as a single instance and never imports ``redis``.
- Logs carry connection counts and error codes only, never frames or payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import resource
import secrets
import signal
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from signaling import protocol
from signaling.config import SignalingConfig, metrics_address
from signaling.registry import CLOSE_SLOW, Close, Delivery, Registry, Send
from signaling.stun import StunResponder, bind_udp, start_stun

if TYPE_CHECKING:
    from signaling.redis_bus import RedisBus

log = logging.getLogger("ephemesh.signaling")

CONFIG_KEY = web.AppKey("config", SignalingConfig)
REGISTRY_KEY = web.AppKey("registry", Registry)

Clock = Callable[[], float]


@dataclass(eq=False, slots=True)
class _Item:
    data: bytes
    sender: int | None  # the local connection that sent this signal; None for the server's own frames


@dataclass(eq=False)
class _Outbox:
    """What waits for one reader: FIFO lanes, one per peer a frame is about (its signals, its joins and
    leaves, in order) and one (``None``) for everything else, drained round-robin."""

    conn_id: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    nonce: bytes = b""
    lanes: dict[str | None, deque[_Item]] = field(default_factory=dict)
    lane_bytes: Counter[str | None] = field(default_factory=Counter)
    lane_signals: Counter[str | None] = field(default_factory=Counter)
    turn: deque[str | None] = field(default_factory=deque)
    bytes: int = 0
    frames: int = 0
    progress_at: float = 0.0  # last time the writer finished a frame, or the outbox became non-empty
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    close: Close | None = None
    writer: asyncio.Task[None] | None = None
    closing: bool = False
    dead: bool = False

    def push(self, lane: str | None, item: _Item) -> None:
        queue = self.lanes.get(lane)
        if queue is None:
            queue = self.lanes[lane] = deque()
            self.turn.append(lane)
        queue.append(item)
        self.lane_bytes[lane] += len(item.data)
        if item.sender is not None:
            self.lane_signals[lane] += 1
        self.bytes += len(item.data)
        self.frames += 1
        self.wake.set()

    def pop(self) -> _Item | None:
        """The next frame, round-robin over the lanes."""
        if not self.turn:
            return None
        lane = self.turn.popleft()
        queue = self.lanes[lane]
        item = queue.popleft()
        if queue:
            self.turn.append(lane)
        else:
            del self.lanes[lane]
        self._forget(lane, item)
        return item

    def evict(self, lane: str | None) -> _Item | None:
        """Drop the newest signal of ``lane`` (the server's own frames are never dropped)."""
        queue = self.lanes.get(lane)
        if queue is None:
            return None
        for i in range(len(queue) - 1, -1, -1):
            item = queue[i]
            if item.sender is not None:
                del queue[i]
                if not queue:
                    del self.lanes[lane]
                    self.turn.remove(lane)
                self._forget(lane, item)
                return item
        return None

    def fullest(self) -> str | None:
        """The lane holding the most signal bytes (ties: the first in round-robin order)."""
        best: str | None = None
        best_bytes = -1
        for lane in self.turn:
            if self.lane_signals[lane] and self.lane_bytes[lane] > best_bytes:
                best, best_bytes = lane, self.lane_bytes[lane]
        return best

    def _forget(self, lane: str | None, item: _Item) -> None:
        n = len(item.data)
        self.bytes -= n
        self.frames -= 1
        self.lane_bytes[lane] -= n
        if self.lane_bytes[lane] <= 0:
            del self.lane_bytes[lane]
        if item.sender is not None:
            self.lane_signals[lane] -= 1
            if self.lane_signals[lane] <= 0:
                del self.lane_signals[lane]


class Hub:
    """Owns the outboxes and performs the registry's deliveries.

    Admission rules (see :class:`signaling.config.Limits`): a signal is refused to its sender when its
    lane (that sender's frames to this reader) is over ``sender_queue_bytes``/``sender_queue_frames``,
    or when every queue together is over ``global_queue_bytes``; when the reader's whole outbox is over
    ``send_queue_bytes``/``send_queue_frames`` the newest signal of the fullest lane is dropped first
    (its sender is told), unless the fullest lane is the newcomer's own. So senders that flood one
    reader are throttled, then cut by their error budget, and never get that reader dropped. Only the
    server's own frames overflowing ``send_queue_frames``, or a writer stuck for ``stall_timeout_s``,
    make a slow consumer. One frame that cannot be encoded or sent is dropped and counted; it never
    ends the writer.
    """

    def __init__(self, registry: Registry, config: SignalingConfig, clock: Clock = time.time) -> None:
        self.registry = registry
        self._max_frames = config.limits.send_queue_frames
        self._outboxes: dict[int, _Outbox] = {}
        self._ids = itertools.count(1)
        self.clock = clock
        self._limits = config.limits
        self._stall_s = config.stall_timeout_s
        self.bus: RedisBus | None = None
        self.queued_bytes = 0  # across every outbox
        self.dropped_frames = 0  # could not be encoded or sent
        self.refused_signals = 0  # over a sender's share, a reader's queue or the global cap

    def __len__(self) -> int:
        return len(self._outboxes)

    @property
    def local_connections(self) -> int:
        """Connections of this instance (the registry also holds other instances' peers as ghosts)."""
        ghosts = self.bus.ghost_count if self.bus is not None else 0
        return self.registry.connection_count - ghosts

    def _box_of(self, peer_id: str) -> _Outbox | None:
        conn = self.registry.conn_of(peer_id)
        return self._outboxes.get(conn) if conn is not None else None

    def backlog_of(self, peer_id: str) -> int:
        """Frames queued (not yet written) for ``peer_id``'s connection; 0 if not connected."""
        box = self._box_of(peer_id)
        return box.frames if box is not None else 0

    def backlog_bytes_of(self, peer_id: str) -> int:
        """Bytes queued (not yet written) for ``peer_id``'s connection; 0 if not connected."""
        box = self._box_of(peer_id)
        return box.bytes if box is not None else 0

    def open(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> _Outbox:
        box = _Outbox(next(self._ids), ws, transport, progress_at=self.clock())
        box.writer = asyncio.create_task(self._write_loop(box), name=f"signaling-writer-{box.conn_id}")
        self._outboxes[box.conn_id] = box
        log.debug("connection opened (%d open)", len(self._outboxes))
        return box

    async def finish(self, box: _Outbox) -> None:
        """The reader loop ended: forget the connection and stop its writer."""
        box.dead = True
        self.dispatch(self.registry.disconnect(box.conn_id, self.clock()))
        if self.bus is not None:
            self.bus.local_gone(box.conn_id)
        writer = box.writer
        if writer is not None and not writer.done():
            if box.closing:
                await asyncio.wait([writer], timeout=5.0)
            writer.cancel()
            await asyncio.wait([writer])
        self._outboxes.pop(box.conn_id, None)
        self._release(box)
        if not box.ws.closed:
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await box.ws.close()
        log.debug("connection closed (%d open)", len(self._outboxes))

    async def close_all(self, code: int) -> None:
        boxes = list(self._outboxes.values())
        await asyncio.gather(
            *(box.ws.close(code=code, message=b"server shutdown") for box in boxes), return_exceptions=True
        )

    def connect(self, box: _Outbox) -> None:
        """Register ``box`` with the registry under a fresh nonce and send the challenge."""
        box.nonce = secrets.token_bytes(protocol.NONCE_BYTES)
        self.dispatch(self.registry.connect(box.conn_id, box.nonce, self.clock()))

    def receive(self, box: _Outbox, data: str | bytes) -> None:
        """One message from ``box``'s peer: the registry decides, the hub delivers."""
        registry, conn_id = self.registry, box.conn_id
        was_authed = registry.peer_of(conn_id) is not None
        deliveries = registry.handle(conn_id, data, self.clock())
        peer = registry.peer_of(conn_id)
        if self.bus is not None and not was_authed and peer is not None:
            # The registry just accepted this auth frame, so it parses; other instances re-verify it.
            frame = protocol.parse_frame(data, self._limits.max_frame_bytes, self._limits.max_payload_chars)
            assert isinstance(frame, protocol.Auth)
            self.bus.local_auth(conn_id, peer, box.nonce, frame.pubkey, frame.sig)
        self.dispatch(deliveries)

    def dispatch(self, deliveries: Iterable[Delivery]) -> None:
        pending = deque(deliveries)
        while pending:
            item = pending.popleft()
            if self.bus is not None and self.bus.observe(item):
                continue
            box = self._outboxes.get(item.conn_id)
            if box is None or box.dead:
                continue
            if isinstance(item, Close):
                log.info("closing connection: %s (%d)", item.reason, item.code)
                box.close = item
                box.wake.set()
                continue
            pending.extend(self._enqueue(box, item))

    def sweep(self) -> None:
        """Drop every reader whose writer made no progress for ``stall_timeout_s`` (a timer calls this)."""
        now = self.clock()
        for box in list(self._outboxes.values()):
            if not box.dead and box.frames and now - box.progress_at >= self._stall_s:
                self.dispatch(self._slow_consumer(box))

    # ------------------------------------------------------------------------------ admission

    def _enqueue(self, box: _Outbox, item: Send) -> list[Delivery]:
        """Queue ``item`` for ``box`` or refuse it; returns deliveries the decision causes."""
        try:
            data = _encode(item)
        except (UnicodeEncodeError, ValueError, TypeError):
            self.dropped_frames += 1
            log.warning("dropped a frame that cannot be encoded")
            return []
        frame, lim = item.frame, self._limits
        kind = frame.get("type")
        subject = frame.get("from") if kind == "signal" else frame.get("peer")
        lane = subject if isinstance(subject, str) and kind in _PEER_FRAMES else None
        if box.frames == 0:
            box.progress_at = self.clock()
        if kind != "signal":
            out: list[Delivery] = []
            while box.frames >= self._max_frames:  # make room by dropping signals, never our frames
                evicted = self._evict(box, box.fullest())
                if evicted is None:
                    return out + self._slow_consumer(box)
                out += self._refused(evicted, "recipient-busy", "recipient is not keeping up")
            box.push(lane, _Item(data, None))
            self.queued_bytes += len(data)
            return out
        sender = self.registry.conn_of(subject) if isinstance(subject, str) else None
        new = _Item(data, sender if sender is not None else 0)
        n = len(data)
        if (
            box.lane_bytes[lane] + n > lim.sender_queue_bytes
            or box.lane_signals[lane] >= lim.sender_queue_frames
        ):
            return self._refused(new, "recipient-busy", "recipient is not keeping up")
        out = []
        while box.bytes + n > lim.send_queue_bytes or box.frames >= self._max_frames:
            victim_lane = box.fullest()
            if (
                victim_lane is None
                or victim_lane == lane
                or box.lane_bytes[victim_lane] <= box.lane_bytes[lane] + n
            ):
                return out + self._refused(new, "recipient-busy", "recipient is not keeping up")
            evicted = self._evict(box, victim_lane)
            assert evicted is not None
            out += self._refused(evicted, "recipient-busy", "recipient is not keeping up")
        if self.queued_bytes + n > lim.global_queue_bytes:
            return out + self._refused(new, "server-busy", "server queues are full")
        box.push(lane, new)
        self.queued_bytes += n
        return out

    def _evict(self, box: _Outbox, lane: str | None) -> _Item | None:
        evicted = box.evict(lane) if box.lane_signals[lane] else None
        if evicted is not None:
            self.queued_bytes -= len(evicted.data)
        return evicted

    def _refused(self, item: _Item, code: str, message: str) -> list[Delivery]:
        """A signal was not (or will not be) delivered: tell its sender if it is ours."""
        self.refused_signals += 1
        if item.sender is None or item.sender not in self._outboxes:
            return []  # a remote instance's peer, or gone
        return self.registry.refuse(item.sender, code, message)

    def _slow_consumer(self, box: _Outbox) -> list[Delivery]:
        log.info("closing connection: slow-consumer")
        self._abort(box)
        return self.registry.kill(box.conn_id, "slow-consumer", CLOSE_SLOW, self.clock())

    def _release(self, box: _Outbox) -> None:
        """Forget everything ``box`` still holds (it is closed)."""
        self.queued_bytes -= box.bytes
        box.lanes.clear()
        box.lane_bytes.clear()
        box.lane_signals.clear()
        box.turn.clear()
        box.bytes = box.frames = 0

    def _abort(self, box: _Outbox) -> None:
        box.dead = True
        if box.writer is not None:
            box.writer.cancel()
        self._release(box)
        if isinstance(box.transport, asyncio.Transport):
            box.transport.abort()

    async def _write_loop(self, box: _Outbox) -> None:
        while True:
            item = box.pop()
            if item is None:
                if box.close is not None:
                    box.closing = True
                    with contextlib.suppress(ConnectionError):
                        await box.ws.close(code=box.close.code, message=box.close.reason.encode())
                    return
                box.wake.clear()
                await box.wake.wait()
                continue
            self.queued_bytes -= len(item.data)
            try:
                await box.ws.send_frame(item.data, WSMsgType.TEXT)
            except ConnectionError:
                return
            except Exception:  # one bad frame never ends the writer (its queue would be lost)
                self.dropped_frames += 1
                log.exception("dropped a frame the socket refused")
            box.progress_at = self.clock()


HUB_KEY = web.AppKey("hub", Hub)

#: Frames about one peer: they share that peer's lane, so their order is kept.
_PEER_FRAMES = frozenset({"signal", "peer-joined", "peer-left"})


def _encode(item: Send) -> bytes:
    """JSON, then strict UTF-8: a frame holding a lone surrogate raises instead of reaching a socket."""
    return json.dumps(item.frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ------------------------------------------------------------------------------------------- handlers


async def _ws_handler(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config, hub = app[CONFIG_KEY], app[HUB_KEY]
    ws = web.WebSocketResponse(max_msg_size=config.limits.hard_frame_bytes, autoping=True)
    await ws.prepare(request)
    box = hub.open(ws, request.transport)
    try:
        hub.connect(box)
        async for msg in ws:
            if box.dead:
                break
            if msg.type is WSMsgType.TEXT:
                data: str | bytes = msg.data
            elif msg.type is WSMsgType.BINARY:
                data = msg.data
            else:  # ERROR (e.g. 1009 too big): aiohttp already closed the socket
                break
            hub.receive(box, data)
    finally:
        await hub.finish(box)
    return ws


async def _healthz(request: web.Request) -> web.Response:
    registry, hub = request.app[REGISTRY_KEY], request.app[HUB_KEY]
    return web.json_response({"ok": True, "connections": hub.local_connections, "rooms": registry.room_count})


async def _metrics(request: web.Request) -> web.Response:
    registry, hub = request.app[REGISTRY_KEY], request.app[HUB_KEY]
    stats = registry.stats
    p = "ephemesh_signaling_"
    lines = [
        f"# TYPE {p}connections gauge",
        f"{p}connections {hub.local_connections}",
        f"# TYPE {p}rooms gauge",
        f"{p}rooms {registry.room_count}",
        f"# TYPE {p}connections_total counter",
        f"{p}connections_total {stats.connections_total}",
        f"# TYPE {p}authenticated_total counter",
        f"{p}authenticated_total {stats.authenticated_total}",
        f"# TYPE {p}frames_total counter",
        f"{p}frames_total {stats.frames_total}",
        f"# TYPE {p}signals_total counter",
        f"{p}signals_total {stats.signals_total}",
        f"# TYPE {p}errors_total counter",
        *(f'{p}errors_total{{code="{code}"}} {n}' for code, n in sorted(stats.errors_total.items())),
        f"# TYPE {p}closes_total counter",
        *(f'{p}closes_total{{code="{code}"}} {n}' for code, n in sorted(stats.closes_total.items())),
    ]
    main = request.app.get(METRICS_OF_KEY, request.app)
    stun = main.get(STUN_KEY)
    if stun is not None:
        lines += [
            f"# TYPE {p}stun_answered_total counter",
            f"{p}stun_answered_total {stun.stats.answered}",
            f"# TYPE {p}stun_dropped_total counter",
            f'{p}stun_dropped_total{{reason="bad"}} {stun.stats.dropped_bad}',
            f'{p}stun_dropped_total{{reason="rate"}} {stun.stats.dropped_rate}',
        ]
    if hub.bus is not None:
        lines += [
            f"# TYPE {p}remote_connections gauge",
            f"{p}remote_connections {hub.bus.ghost_count}",
            f"# TYPE {p}remote_instances gauge",
            f"{p}remote_instances {len(hub.bus.instances)}",
            f"# TYPE {p}bus_bad_messages_total counter",
            f"{p}bus_bad_messages_total {hub.bus.bad_messages}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


def _index_handler(web_root: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def index(request: web.Request) -> web.StreamResponse:
        path = web_root / "index.html"
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    return index


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    hub, interval = app[HUB_KEY], app[CONFIG_KEY].sweep_interval_s

    async def sweep() -> None:
        while True:
            await asyncio.sleep(interval)  # a timer, not synchronisation
            hub.dispatch(hub.registry.tick(hub.clock()))
            hub.sweep()

    task = asyncio.create_task(sweep(), name="signaling-sweeper")
    yield
    task.cancel()
    await asyncio.wait([task])


async def _redis_bus(app: web.Application) -> AsyncIterator[None]:
    from signaling.redis_bus import RedisBus  # redis is an optional dependency

    hub = app[HUB_KEY]
    bus = hub.bus = RedisBus(app[CONFIG_KEY], hub)
    await bus.start()
    yield
    await bus.stop()
    hub.bus = None


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()


STUN_SOCKET_KEY = web.AppKey("stun_socket", socket.socket)
STUN_KEY = web.AppKey("stun", StunResponder)


async def _stun(app: web.Application) -> AsyncIterator[None]:
    """The embedded STUN responder on UDP (a socket bound by :func:`start_server`, or bound here)."""
    config = app[CONFIG_KEY]
    sock = app.get(STUN_SOCKET_KEY) or bind_udp(config.host, config.effective_stun_port)
    transport, responder = await start_stun(sock)
    app[STUN_KEY] = responder
    log.info("STUN on udp %s:%d", config.host, sock.getsockname()[1])
    yield
    transport.close()


async def _metrics_site(app: web.Application) -> AsyncIterator[None]:
    """``/metrics`` on its own listener (``config.metrics`` = ``HOST:PORT``), not on the public port."""
    host, port = metrics_address(app[CONFIG_KEY].metrics)
    mapp = web.Application()
    mapp[REGISTRY_KEY], mapp[HUB_KEY] = app[REGISTRY_KEY], app[HUB_KEY]
    mapp[METRICS_OF_KEY] = app
    mapp.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(mapp, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    app[METRICS_RUNNER_KEY] = runner
    yield
    await runner.cleanup()


METRICS_RUNNER_KEY = web.AppKey("metrics_runner", web.AppRunner)
METRICS_OF_KEY = web.AppKey("metrics_of", web.Application)


async def _on_shutdown(app: web.Application) -> None:
    await app[HUB_KEY].close_all(1001)


def create_app(config: SignalingConfig, clock: Clock = time.time) -> web.Application:
    """Build the signaling application. ``clock`` returns Unix seconds (tests may inject one)."""
    # aiohttp's keep-alive timer also ends a connection whose request headers never complete.
    app = web.Application(
        middlewares=[_security_headers], handler_args={"keepalive_timeout": config.header_timeout_s}
    )
    registry = Registry(config)
    app[CONFIG_KEY] = config
    app[REGISTRY_KEY] = registry
    app[HUB_KEY] = Hub(registry, config, clock)
    app[GUARD_KEY] = _ConnectionGuard(config.max_connections_per_source, _connection_limit(config))
    app.router.add_get("/ws", _ws_handler)
    app.router.add_get("/healthz", _healthz)
    if config.metrics == "same":
        app.router.add_get("/metrics", _metrics)
    elif config.metrics != "off":
        app.cleanup_ctx.append(_metrics_site)
    if config.web_root is not None:
        app.router.add_get("/", _index_handler(config.web_root))
        if not config.test_pages:
            app.router.add_route("*", "/test.html", _not_found)
            app.router.add_route("*", "/js/test/{tail:.*}", _not_found)
        app.router.add_static("/", config.web_root, follow_symlinks=False)
    app.cleanup_ctx.append(_sweeper)
    if config.stun:
        app.cleanup_ctx.append(_stun)
    if config.redis_url is not None:
        app.cleanup_ctx.append(_redis_bus)
    app.on_shutdown.append(_on_shutdown)
    return app


class _ConnectionGuard:
    """Counts open TCP connections per remote address and in all; refuses one over a bound.

    It wraps aiohttp's protocol factory, so a refused connection costs one ``accept`` and one short
    write: aiohttp never sees it. Half-sent requests are ended by aiohttp's keep-alive timer, which we
    set to ``header_timeout_s`` (aiohttp >= 3.10 starts it when a connection opens and does not reset it
    on partial data, so it bounds how long a request may take to send its headers).
    """

    REFUSAL = (
        b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 12\r\n\r\ntoo many con"
    )

    def __init__(self, per_source: int, total: int) -> None:
        self.per_source = per_source
        self.total = total
        self.open_by_source: Counter[str] = Counter()
        self.open = 0
        self.refused = 0

    def admit(self, source: str) -> bool:
        if self.open >= self.total or self.open_by_source[source] >= self.per_source:
            self.refused += 1
            return False
        self.open += 1
        self.open_by_source[source] += 1
        return True

    def release(self, source: str) -> None:
        self.open -= 1
        self.open_by_source[source] -= 1
        if self.open_by_source[source] <= 0:
            del self.open_by_source[source]

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner)


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol once the guard admitted the connection."""

    def __init__(self, guard: _ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._source = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._guard.admit(self._source):
            if isinstance(transport, asyncio.Transport):
                transport.write(self._guard.REFUSAL)
            transport.close()
            return
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._guard.release(self._source)
            self._inner.connection_lost(exc)
            self._inner = None

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


GUARD_KEY = web.AppKey("guard", _ConnectionGuard)


class _GuardedSite(web.TCPSite):
    """A TCP site whose connections pass the app's :class:`_ConnectionGuard` first."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: _ConnectionGuard) -> None:
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # TCPSite.start, with the guard around aiohttp's protocol factory.
        self._server = await loop.create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


def _connection_limit(config: SignalingConfig) -> int:
    if config.max_connections is not None:
        return config.max_connections
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65_536
    return max(16, soft - 128)  # a reserve for listening sockets, Redis, static files, logs


async def start_server(config: SignalingConfig) -> tuple[web.AppRunner, int]:
    """Start serving ``config`` on ``config.host:config.port`` (port 0 = any); return runner and port.

    Connections pass a per-source and total connection guard (see :class:`SignalingConfig`).
    With the embedded STUN responder on the HTTP port number (the default) and port 0, one port that is
    free for both UDP and TCP is chosen, so ``welcome`` can name it.
    """
    for _attempt in range(20):
        sock = None
        if config.stun and config.stun_port is None and config.port == 0:
            sock = bind_udp(config.host, 0)
            chosen = replace(config, port=int(sock.getsockname()[1]))
        elif config.stun:
            sock = bind_udp(config.host, config.effective_stun_port)
            chosen = config
        else:
            chosen = config
        app = create_app(chosen)
        if sock is not None:
            app[STUN_SOCKET_KEY] = sock
        runner = web.AppRunner(app, access_log=None)
        try:
            await runner.setup()
            await _GuardedSite(runner, chosen.host, chosen.port, app[GUARD_KEY]).start()
        except OSError:
            await runner.cleanup()
            if sock is not None:
                sock.close()
            if chosen.port != config.port:  # the UDP port we picked is taken for TCP: pick another
                continue
            raise
        return runner, int(runner.addresses[0][1])
    raise OSError("no port free for both TCP and UDP")


def run(
    host: str = "127.0.0.1",
    port: int = 8080,
    web_root: Path | None = None,
    *,
    config: SignalingConfig | None = None,
) -> None:
    """Serve until interrupted (blocking). Used by ``python -m signaling`` and ``ephemesh serve``.

    ``config``, when given, is used as is (its ``host``/``port``/``web_root`` win over the arguments).
    """
    if config is None:
        config = SignalingConfig(host=host, port=port, web_root=web_root)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signalled(config))


async def _serve_until_signalled(config: SignalingConfig) -> None:
    runner, port = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("Running on http://%s:%d (stop with Ctrl-C or SIGTERM)", config.host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
