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
import secrets
import socket
import time
from collections import deque
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


@dataclass(eq=False)
class _Outbox:
    conn_id: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    nonce: bytes = b""
    queue: asyncio.Queue[str | Close] = field(default_factory=asyncio.Queue)
    frames: int = 0
    writer: asyncio.Task[None] | None = None
    closing: bool = False
    dead: bool = False


class Hub:
    """Owns the outboxes and performs the registry's deliveries."""

    def __init__(self, registry: Registry, config: SignalingConfig, clock: Clock = time.time) -> None:
        self.registry = registry
        self._max_frames = config.limits.send_queue_frames
        self._outboxes: dict[int, _Outbox] = {}
        self._ids = itertools.count(1)
        self.clock = clock
        self._limits = config.limits
        self.bus: RedisBus | None = None

    def __len__(self) -> int:
        return len(self._outboxes)

    @property
    def local_connections(self) -> int:
        """Connections of this instance (the registry also holds other instances' peers as ghosts)."""
        ghosts = self.bus.ghost_count if self.bus is not None else 0
        return self.registry.connection_count - ghosts

    def backlog_of(self, peer_id: str) -> int:
        """Frames queued (not yet written) for ``peer_id``'s connection; 0 if not connected."""
        for box in self._outboxes.values():
            if self.registry.peer_of(box.conn_id) == peer_id:
                return box.frames
        return 0

    def open(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> _Outbox:
        box = _Outbox(next(self._ids), ws, transport)
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
                box.queue.put_nowait(item)
                continue
            if box.frames >= self._max_frames:
                log.info("closing connection: slow-consumer")
                self._abort(box)
                pending.extend(self.registry.kill(box.conn_id, "slow-consumer", CLOSE_SLOW, self.clock()))
                continue
            box.frames += 1
            box.queue.put_nowait(_encode(item))

    def _abort(self, box: _Outbox) -> None:
        box.dead = True
        if box.writer is not None:
            box.writer.cancel()
        if isinstance(box.transport, asyncio.Transport):
            box.transport.abort()

    async def _write_loop(self, box: _Outbox) -> None:
        try:
            while True:
                item = await box.queue.get()
                if isinstance(item, Close):
                    box.closing = True
                    await box.ws.close(code=item.code, message=item.reason.encode())
                    return
                box.frames -= 1
                await box.ws.send_str(item)
        except ConnectionError:
            return


HUB_KEY = web.AppKey("hub", Hub)


def _encode(item: Send) -> str:
    return json.dumps(item.frame, separators=(",", ":"), ensure_ascii=False)


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
    app = web.Application(middlewares=[_security_headers])
    registry = Registry(config)
    app[CONFIG_KEY] = config
    app[REGISTRY_KEY] = registry
    app[HUB_KEY] = Hub(registry, config, clock)
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


async def start_server(config: SignalingConfig) -> tuple[web.AppRunner, int]:
    """Start serving ``config`` on ``config.host:config.port`` (port 0 = any); return runner and port.

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
            await web.TCPSite(runner, chosen.host, chosen.port).start()
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
    web.run_app(
        create_app(config), host=config.host, port=config.port, access_log=None, print=_announce_listening
    )


def _announce_listening(text: str) -> None:
    """Log aiohttp's "Running on ..." line: it is written once the sockets listen (tests wait for it)."""
    log.info("%s", text.splitlines()[0].strip("= ") if text.strip() else "listening")
