"""A harness for sans-IO Rooms: linked pairwise, frames delivered in order per link, a fake clock.

Each room may run on its own skewed clock (``offset_ms``): every call into a room passes that room's
``now``, so clock-skew behaviour is tested deterministically.
"""

from __future__ import annotations

from collections import deque

from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.log import LogEntry
from peer.core.room import PersistBatch, Room, RoomEvent, Snapshot
from peer.testing import FakeClock


class Net:
    """Rooms linked pairwise; frames delivered in order per link; a fake clock drives timers."""

    def __init__(self, invite: Invite, clock: FakeClock) -> None:
        self.invite = invite
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.offsets: dict[str, int] = {}
        self.links: set[frozenset[str]] = set()
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.events: dict[str, list[RoomEvent]] = {}
        self.persisted: dict[str, list[PersistBatch]] = {}

    def now(self, room: Room | str) -> int:
        """``room``'s own clock: the true time plus its offset."""
        pid = room if isinstance(room, str) else room.peer_id
        return self.clock.now + self.offsets.get(pid, 0)

    def add(
        self,
        identity: Identity,
        *,
        keeper: bool = False,
        snapshot: Snapshot | None = None,
        offset_ms: int = 0,
    ) -> Room:
        self.offsets[identity.peer_id] = offset_ms
        room = Room(identity, self.invite, self.now(identity.peer_id), keeper=keeper, snapshot=snapshot)
        self.rooms[room.peer_id] = room
        self.events.setdefault(room.peer_id, [])
        self.persisted.setdefault(room.peer_id, [])
        return room

    def link(self, a: Room, b: Room) -> None:
        a.learn_bundle(b.identity.public_bundle())
        b.learn_bundle(a.identity.public_bundle())
        self.links.add(frozenset((a.peer_id, b.peer_id)))
        a.link_up(b.peer_id, self.now(a))
        b.link_up(a.peer_id, self.now(b))

    def unlink(self, a: Room, b: Room) -> None:
        self.links.discard(frozenset((a.peer_id, b.peer_id)))
        self.events[a.peer_id] += a.link_down(b.peer_id, self.now(a))
        self.events[b.peer_id] += b.link_down(a.peer_id, self.now(b))

    def remove(self, room: Room) -> None:
        """Take a room offline (its persisted batches stay in ``persisted`` for a restart)."""
        for other in list(self.rooms.values()):
            if frozenset((room.peer_id, other.peer_id)) in self.links:
                self.unlink(room, other)
        self.persisted[room.peer_id].append(room.take_persist())
        del self.rooms[room.peer_id]

    def flush(self) -> None:
        for pid, room in self.rooms.items():
            self.persisted[pid].append(room.take_persist())
            for to, data in room.data_to_send():
                if frozenset((pid, to)) in self.links:
                    self.queue.append((pid, to, data))

    def pump(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            self.flush()
            if not self.queue:
                return
            while self.queue:
                src, dst, data = self.queue.popleft()
                if dst in self.rooms:
                    self.events[dst] += self.rooms[dst].receive(src, data, self.now(dst))
        raise AssertionError("network did not settle")

    def tick(self, ms: int, step: int = 250) -> None:
        end = self.clock.now + ms
        while self.clock.now < end:
            self.clock.advance(min(step, end - self.clock.now))
            for room in list(self.rooms.values()):
                when = room.next_timer()
                if when is not None and when <= self.now(room):
                    self.events[room.peer_id] += room.handle_timer(self.now(room))
            self.pump()


def texts(room: Room) -> list[tuple[str, str]]:
    return [(m.sender, m.text) for m in room.messages()]


def snapshot_of(batches: list[PersistBatch]) -> Snapshot:
    """What a store that applied ``batches`` in order would hand back (mirrors ``apply_batch``)."""
    snap = Snapshot()
    envs: dict[tuple[str, int], LogEntry] = {}
    erased: dict[tuple[str, int], int] = {}
    for b in batches:
        for e in b.envelopes:
            if e.key not in erased:
                envs.setdefault(e.key, e)
        for sender, seq, _key_exp, key in b.message_keys:
            snap.message_keys[(sender, seq)] = key
        for sender, seq, until in b.erased:
            envs.pop((sender, seq), None)
            snap.message_keys.pop((sender, seq), None)
            erased[(sender, seq)] = max(until, erased.get((sender, seq), 0))
        snap.states.update(b.states)
    snap.envelopes = list(envs.values())
    snap.tombstones = [(s, q, u) for (s, q), u in erased.items()]
    return snap


def ready_pair(net: Net, first: Identity | None = None) -> tuple[Room, Room]:
    """Two rooms, ``first``'s (else a fresh identity's) and a fresh one's, linked and past the handshake."""
    a, b = net.add(first or Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(1000)
    return a, b


def self_adds(net: Net, n: int) -> list[bytes]:
    """The self-ADD envelopes (lamport 1) of ``n`` fresh identities holding the invite (never linked to
    anyone): fake members, made in a separate net on the same clock."""
    other = Net(net.invite, net.clock)
    out = []
    for _ in range(n):
        room = other.add(Identity.generate())
        (entry,) = [e for e in room.sync.log.ordered() if e.sender == room.peer_id]
        out.append(entry.data)
    return out
