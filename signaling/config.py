"""Configuration of the signaling server.

Every bound the server enforces on remote input lives here, with its default, so a test can shrink it
(a 50 ms idle timeout, a 2-peer room) and an operator can read them in one place. The values the
clients need to know are announced in the ``challenge`` and ``welcome`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

    def __post_init__(self) -> None:
        if self.redis_heartbeat_s <= 0 or self.redis_ttl_s <= 2 * self.redis_heartbeat_s:
            raise ValueError("redis_ttl_s must exceed twice redis_heartbeat_s (> 0)")

    @property
    def redis_dead_bound_s(self) -> float:
        """Upper bound (before scheduling delays) for the other instances to drop a dead one's peers."""
        return self.redis_ttl_s + self.redis_heartbeat_s

    @property
    def sweep_interval_s(self) -> float:
        """How often the timer sweep runs: a quarter of the shortest timeout, within [10 ms, 1 s]."""
        shortest = min(self.idle_timeout_s, self.auth_timeout_s, self.stall_timeout_s)
        return max(0.01, min(1.0, shortest / 4))
