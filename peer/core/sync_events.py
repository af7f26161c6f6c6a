"""The sync engine's configuration, events and per-neighbour session record (see :mod:`peer.core.sync`;
the session record is shared by the engine and its serving part, :mod:`peer.core.sync_serve`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peer.core import wire
from peer.core.log import DEFAULT_SKEW_MS, Key, LogEntry, RangeSet, Tombstone


@dataclass(frozen=True, slots=True)
class SyncConfig:
    heartbeat_ms: int = 1_000
    dead_after_ms: int = 4_000
    want_timeout_ms: int = 2_000
    resync_ms: int = 5_000
    max_want_keys: int = 4_096
    max_want_attempts: int = 8
    #: keys looked at per WANT frame (CPU bound per frame)
    max_serve_keys: int = 8_192
    #: per neighbour and per ``want_timeout_ms`` window, at most this many keys / bytes are served (pacing);
    #: what is not served now is served when the neighbour asks again after its own ``want_timeout_ms``
    max_serve_keys_per_window: int = 16_384
    max_serve_bytes_per_window: int = 8 * 1024 * 1024
    #: tombstones for keys we never held (they only save a WANT), per neighbour and in total
    max_foreign_tombstones_per_neighbour: int = 1_024
    max_foreign_tombstones: int = 8_192
    skew_ms: int = DEFAULT_SKEW_MS
    #: An entry whose Lamport stamp is this far ahead of our clock is refused (clock exhaustion attack).
    max_lamport_jump: int = 2**32
    #: an entry received straight from its author is not pushed on to other neighbours (in a full mesh
    #: they got it from the author too); instead a HELLO goes to them this long after (lazy relay)
    announce_delay_ms: int = 250
    #: the equivocation check (peer.core.sync_check): checks in progress per neighbour, HASH_WANT pages
    #: answered (and asked) and hash items served per neighbour and ``want_timeout_ms`` window, keys
    #: WANTed per page of differing hashes
    max_checks_per_neighbour: int = 4
    max_hash_pages_per_window: int = 32
    max_hash_items_per_window: int = 8_192
    max_check_wants: int = 256
    #: digests not found in the cache, computed per neighbour and window (for our DIGESTS or to compare)
    max_digests_per_window: int = 16


# -- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryAdded:
    entry: LogEntry


@dataclass(frozen=True, slots=True)
class EntryExpired:
    key: Key


@dataclass(frozen=True, slots=True)
class EntryDeleted:
    key: Key


@dataclass(frozen=True, slots=True)
class EntryVoided:
    """Two different validly signed envelopes under ``key``: the key is void (see :meth:`Log.void`);
    ``neighbour`` showed us the second one (the author, ``key[0]``, is the one to blame)."""

    key: Key
    neighbour: str


@dataclass(frozen=True, slots=True)
class Acked:
    neighbour: str
    sender: str
    seq: int


@dataclass(frozen=True, slots=True)
class NeighbourReady:
    neighbour: str


@dataclass(frozen=True, slots=True)
class NeighbourTimedOut:
    neighbour: str


@dataclass(frozen=True, slots=True)
class ProtocolErrorEvent:
    neighbour: str
    code: str


@dataclass(frozen=True, slots=True)
class EnvelopeRefused:
    """``validate`` refused an envelope from ``neighbour``; ``data`` is the envelope as received."""

    neighbour: str
    code: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OpaqueFrame:
    neighbour: str
    type: wire.FrameType
    body: bytes


Event = (
    EntryAdded
    | EntryExpired
    | EntryDeleted
    | EntryVoided
    | Acked
    | NeighbourReady
    | NeighbourTimedOut
    | ProtocolErrorEvent
    | EnvelopeRefused
    | OpaqueFrame
)


@dataclass(eq=False)
class Session:
    neighbour: str
    last_heard: int
    next_ping: int
    next_hello: int
    ready: bool = False
    rejected: bool = False
    retry_at: int | None = None
    ping_nonce: int = 0
    remote_have: dict[str, RangeSet] = field(default_factory=dict)
    control: list[bytes] = field(default_factory=list)
    #: queued output, keyed so one key is queued at most once (dedupe of what is already being served)
    envs: dict[Key, bytes] = field(default_factory=dict)
    #: both signed versions of a voided (equivocated) key, so the neighbour voids it too
    voids: dict[Key, tuple[bytes, bytes]] = field(default_factory=dict)
    tombs: dict[Key, Tombstone] = field(default_factory=dict)
    acks: dict[str, RangeSet] = field(default_factory=dict)

    def has(self, key: Key) -> bool:
        rs = self.remote_have.get(key[0])
        return rs is not None and key[1] in rs

    def mark(self, key: Key) -> None:
        self.remote_have.setdefault(key[0], RangeSet()).add(key[1])
