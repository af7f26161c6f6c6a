"""Configuration of the signaling server.

Every bound the server enforces on remote input lives here, with its default, so a test can shrink it
(a 50 ms idle timeout, a 2-peer room) and an operator can read them in one place. The values the
clients need to know are announced in the ``challenge`` and ``welcome`` frames.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

KIB = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection and per-room bounds.

    Rules:
    - A text frame longer than ``max_frame_bytes`` (UTF-8 bytes) is refused with ``too-large``; a frame
      longer than ``hard_frame_bytes`` is not even read: the WebSocket layer closes with 1009.
    - ``rate_per_s``/``rate_burst`` is a token bucket per connection; a frame arriving with no token is
      dropped with ``rate-limited``.
    - A connection that earns more than ``max_errors`` error frames is closed with 1008.
    - What waits for a reader is bounded three ways (see ``signaling.app``): per connection at most
      ``send_queue_frames`` frames and ``send_queue_bytes`` bytes; per (sender, recipient) at most
      ``sender_queue_bytes`` bytes and ``sender_queue_frames`` frames of that sender's signals; and all
      queues together at most ``global_queue_bytes``. A signal over a bound is refused to its sender
      (``recipient-busy`` / ``server-busy``, which count as the sender's errors), never charged to the
      recipient; a full queue first drops the newest signal of the sender holding the most of it.
      Only the server's own frames (joins, leaves, answers) can overflow a queue: that reader is then
      a slow consumer and is disconnected, as is one whose writer makes no progress for
      ``SignalingConfig.stall_timeout_s``.
    """

    max_frame_bytes: int = 128 * KIB
    max_payload_chars: int = 65536
    max_rooms_per_conn: int = 16
    max_peers_per_room: int = 256
    rate_per_s: float = 50.0
    rate_burst: int = 100
    max_errors: int = 20
    send_queue_frames: int = 256
    send_queue_bytes: int = 1024 * KIB
    sender_queue_bytes: int = 256 * KIB
    sender_queue_frames: int = 32
    global_queue_bytes: int = 64 * 1024 * KIB

    @property
    def hard_frame_bytes(self) -> int:
        """Size above which aiohttp itself refuses a message (close code 1009)."""
        return 2 * self.max_frame_bytes


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """A coturn server using the REST API shared-secret scheme (``use-auth-secret``)."""

    urls: tuple[str, ...]
    secret: str
    ttl_s: int = 3600


@dataclass(frozen=True, slots=True)
class SignalingConfig:
    """Everything ``create_app`` needs.

    Network (see ``docs/deploy.md``): ``public_url`` is the URL users reach the server by (invites,
    the host of the embedded STUN URL). With ``stun`` on, a STUN Binding responder listens on UDP
    ``stun_port`` (default: the HTTP port number; with HTTP port 0 both get one free port). ``welcome``
    hands out ``stun_urls`` when given (e.g. coturn's), else the embedded responder's
    ``stun:<public host>:<port>`` (none when the public host is unknown), plus TURN when configured.
    ``metrics`` is ``"same"`` (``/metrics`` on the main port), ``"off"``, or ``"HOST:PORT"`` (its own
    listener, e.g. ``127.0.0.1:9100``). ``test_pages`` serves the in-browser test page (``test.html``,
    ``js/test/``); production turns it off.

    Scale-out (see :mod:`signaling.redis_bus`): with ``redis_url`` set, instances sharing the Redis server
    and ``redis_prefix`` share rooms. Each refreshes its presence key every ``redis_heartbeat_s``; the key
    lives ``redis_ttl_s``, so the peers of an instance that dies vanish for the others within
    :attr:`redis_dead_bound_s`. Without ``redis_url`` the server is a single, self-contained instance.

    Connections (enforced by the site :func:`signaling.app.start_server` and :func:`signaling.app.run`
    listen on): at most ``max_connections_per_source`` open TCP connections per remote address and
    ``max_connections`` in all (``None``: the process's file limit less a reserve); one over either
    is answered ``503`` and closed at once. A request whose headers are not complete within
    ``header_timeout_s`` (also the idle keep-alive bound) is dropped.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    web_root: Path | None = None
    heartbeat_s: float = 15.0
    idle_timeout_s: float = 45.0
    auth_timeout_s: float = 10.0
    stall_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_connections: int | None = None
    max_connections_per_source: int = 64
    limits: Limits = field(default_factory=Limits)
    turn: TurnConfig | None = None
    redis_url: str | None = None
    redis_prefix: str = "ephemesh:sig:"
    redis_heartbeat_s: float = 1.0
    redis_ttl_s: float = 5.0
    public_url: str | None = None
    stun: bool = False
    stun_port: int | None = None
    stun_urls: tuple[str, ...] = ()
    metrics: str = "same"
    test_pages: bool = True

    def __post_init__(self) -> None:
        if self.redis_heartbeat_s <= 0 or self.redis_ttl_s <= 2 * self.redis_heartbeat_s:
            raise ValueError("redis_ttl_s must exceed twice redis_heartbeat_s (> 0)")
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("public_url must be an http:// or https:// URL with a host")
        if self.stun_port is not None and not 0 <= self.stun_port <= 65535:
            raise ValueError("stun_port must be within 0..65535")
        for url in self.stun_urls:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"not a STUN URL: {url!r}")
        if self.metrics not in ("same", "off"):
            metrics_address(self.metrics)  # raises ValueError when it is not HOST:PORT

    @property
    def effective_stun_port(self) -> int:
        """The UDP port of the embedded STUN responder: ``stun_port``, else the HTTP port."""
        return self.port if self.stun_port is None else self.stun_port

    @property
    def public_host(self) -> str | None:
        """The host name peers reach this server by: ``public_url``'s, else the bind address if specific."""
        if self.public_url is not None:
            return urlsplit(self.public_url).hostname
        if self.host in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
            return None
        return self.host

    @property
    def ice_stun_urls(self) -> tuple[str, ...]:
        """STUN URLs handed out in ``welcome``: the configured ones, else the embedded responder's."""
        if self.stun_urls:
            return self.stun_urls
        host = self.public_host
        if not self.stun or host is None:
            return ()
        shown = f"[{host}]" if ":" in host else host
        return (f"stun:{shown}:{self.effective_stun_port}",)

    @property
    def redis_dead_bound_s(self) -> float:
        """Upper bound (before scheduling delays) for the other instances to drop a dead one's peers."""
        return self.redis_ttl_s + self.redis_heartbeat_s

    @property
    def sweep_interval_s(self) -> float:
        """How often the timer sweep runs: a quarter of the shortest timeout, within [10 ms, 1 s]."""
        shortest = min(self.idle_timeout_s, self.auth_timeout_s, self.stall_timeout_s)
        return max(0.01, min(1.0, shortest / 4))


def metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics must be 'same', 'off' or HOST:PORT, not {text!r}")
    return host, int(port)


def default_web_root() -> Path | None:
    """The bundled browser client: the installed ``ephemesh_web`` package, else the checkout's ``web/``."""
    spec = importlib.util.find_spec("ephemesh_web")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "index.html").is_file():
            return Path(location)
    checkout = Path(__file__).resolve().parent.parent / "web"
    return checkout if (checkout / "index.html").is_file() else None


def public_urls(config: SignalingConfig, port: int) -> list[str]:
    """Where users can reach a server bound per ``config`` on ``port``, best first.

    ``public_url`` when set; else ``http://<bind address>:<port>``; for a wildcard bind, one URL per
    non-loopback IPv4 address of this host (``127.0.0.1`` only when it has none).
    """
    if config.public_url is not None:
        return [config.public_url]
    if config.host not in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
        shown = f"[{config.host}]" if ":" in config.host else config.host
        return [f"http://{shown}:{port}"]
    return [f"http://{ip}:{port}" for ip in interface_addresses()] or [f"http://127.0.0.1:{port}"]


def interface_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this host's interfaces (``ifaddr``, which aioice uses too)."""
    import ipaddress

    import ifaddr

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback and ip.ip not in found:
                found.append(ip.ip)
    return found
