"""Delivery that means delivery (sans-IO, fake clock): a member's HELLO holdings count as delivery of our
entries it covers, whoever it got them from; an entry relayed to a member is ACKed to its author too;
each (entry, member) is reported once per session."""

from __future__ import annotations

from collections.abc import Callable

from peer.core import wire
from peer.core.sync import Acked, Event, SyncConfig
from peer.testing import Author, FakeClock, make_engine

HOUR = 3_600_000


class Mesh:
    """Engines linked by hand; every frame can be dropped before delivery."""

    def __init__(self, *names: str, config: SyncConfig | None = None) -> None:
        self.clock = FakeClock()
        self.e = {n: make_engine(n, config=config) for n in names}
        self.authors = {n: Author(e) for n, e in self.e.items()}
        self.events: dict[str, list[Event]] = {n: [] for n in names}
        self.links: set[frozenset[str]] = set()

    def id(self, name: str) -> str:
        return self.e[name].self_id

    def name(self, ident: str) -> str:
        return next(n for n, e in self.e.items() if e.self_id == ident)

    def link(self, x: str, y: str) -> None:
        self.links.add(frozenset((x, y)))
        self.e[x].connect(self.id(y), self.clock.now)
        self.e[y].connect(self.id(x), self.clock.now)

    def pump(self, drop: Callable[[str, str, bytes], bool] = lambda s, d, f: False) -> None:
        while True:
            batch = [(n, self.name(d), f) for n, e in self.e.items() for d, f in e.data_to_send()]
            if not batch:
                return
            for src, dst, frame in batch:
                if frozenset((src, dst)) in self.links and not drop(src, dst, frame):
                    self.events[dst] += self.e[dst].receive(self.id(src), frame, self.clock.now)

    def publish(self, name: str) -> tuple[str, int]:
        return self.authors[name].publish(self.clock.now, HOUR, b"hello").key

    def tick(self, ms: int, drop: Callable[[str, str, bytes], bool] = lambda s, d, f: False) -> None:
        """Advance the clock, firing every timer on the way and delivering what they send."""
        end = self.clock.now + ms
        while True:
            due = [t for e in self.e.values() if (t := e.next_timer()) is not None and t <= end]
            if not due:
                break
            self.clock.set(max(self.clock.now, min(due)))
            for n, e in self.e.items():
                t = e.next_timer()
                if t is not None and t <= self.clock.now:
                    self.events[n] += e.handle_timer(self.clock.now)
            self.pump(drop)
        self.clock.set(end)

    def acked(self, at: str, by: str) -> list[tuple[str, int]]:
        return [
            (ev.sender, ev.seq)
            for ev in self.events[at]
            if isinstance(ev, Acked) and ev.neighbour == self.id(by)
        ]


def is_hello(frame: bytes) -> bool:
    return isinstance(wire.decode_frame(frame), wire.Hello)


def is_ack(frame: bytes) -> bool:
    return isinstance(wire.decode_frame(frame), wire.Ack)


def test_a_hello_counts_as_delivery_of_what_came_from_someone_else() -> None:
    m = Mesh("author", "keeper", "member")
    m.link("author", "keeper")
    m.pump()
    key = m.publish("author")
    m.pump()
    assert m.acked("author", "keeper") == [key]
    m.link("keeper", "member")  # the member (back from a restart) is served by the keeper
    m.pump()
    assert key in m.e["member"].log
    m.link("author", "member")
    m.pump(drop=lambda s, d, f: s == "member" and is_ack(f))  # no ACK frame: only its HELLO speaks
    assert m.acked("author", "member") == [key]
    # the next anti-entropy HELLOs say the same: still once
    m.tick(2 * SyncConfig().resync_ms, drop=lambda s, d, f: s == "member" and is_ack(f))
    assert m.acked("author", "member") == [key]


def test_an_entry_relayed_to_a_member_is_acked_to_its_linked_author() -> None:
    m = Mesh("author", "keeper", "member")
    for x, y in (("author", "keeper"), ("keeper", "member"), ("author", "member")):
        m.link(x, y)
    m.pump()
    key = m.publish("author")

    # everything from the author to the member is lost: the keeper announces it (HELLO, 250 ms later)
    # and serves the member's WANT, so the member got it from someone other than its author
    def drop(s: str, d: str, f: bytes) -> bool:  # and no HELLO from the member to the author either
        return (s, d) == ("author", "member") or ((s, d) == ("member", "author") and is_hello(f))

    m.pump(drop)
    m.tick(1_000, drop)
    assert key in m.e["member"].log
    assert m.acked("author", "member") == [key]  # learnt from the member's ACK, not from a HELLO


def test_hello_acks_only_our_own_held_entries_and_are_bounded() -> None:
    m = Mesh("author", "member", config=SyncConfig(max_serve_keys=5))
    m.link("author", "member")
    m.pump()
    keys = [m.publish("author") for _ in range(12)]
    other = m.publish("member")
    m.pump(drop=lambda s, d, f: is_ack(f))  # pushes and pulls only
    assert all(k in m.e["member"].log for k in keys)
    assert m.acked("author", "member") == []
    m.tick(3 * SyncConfig().resync_ms, drop=lambda s, d, f: is_ack(f))  # HELLOs: <= 5 new keys each
    got = m.acked("author", "member")
    assert sorted(got) == sorted(keys)
    first_hello = [ev for ev in m.events["author"] if isinstance(ev, Acked)][:6]
    assert len({(ev.sender, ev.seq) for ev in first_hello}) == 6  # several HELLOs were needed
    assert len(got) == len(set(got))
    assert other not in got  # the author's HELLO-acks concern the author's entries only...
    assert m.acked("member", "author") == [other]  # ...and the member's, the member's
