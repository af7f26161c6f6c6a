"""Relay (a part of the room): signaling relayed through linked members, and gossip of reachability.

Two APP frame bodies travel over authenticated, READY links (see PROTOCOL.md, "Signaling through the
mesh"). Big-endian; ids are 16 raw bytes::

    RELAY 0x20 | hops u8 (1..MAX_HOPS) | id (16) | from (16) | to (16) | payload (1..MAX_RELAY_PAYLOAD)
          id = SHA-256(LABEL_RELAY || from || to || payload)[:16]; payload = a sealed signaling payload
          ("v1." + base64url, ASCII), exactly what the signaling server would have carried.
    REACH 0x21 | announcer (16) | ts u64 (ms) | ttl_s u16 (1..MAX_TTL_S) | n u8 (0..MAX_LINKS) |
          n x linked member (16, strictly increasing, never the announcer) | h u8 (0..MAX_HINTS) |
          h x (u8 len 1..16 kind [a-z0-9-] | u16 len 1..MAX_URL url, printable ASCII) | sig (64)
          sig = Ed25519 of the announcer over LABEL_REACH || room_id (16) || bytes[1:-64].

Rules:
- **Relay.** The origin seals the payload as for the server (:func:`peer.core.signal.seal_signal`) and
  hands it here; it goes to ``to`` if linked, else to the linked neighbours whose fresh REACH lists
  ``to`` (at most ``ROUTE_WIDTH``), else to at most ``FANOUT`` linked neighbours (never back to the
  neighbour it came from, nor to ``from``). A receiver: refuses malformed frames (``bad-relay``: bad
  tag/length, hops outside 1..MAX_HOPS, id not the hash, ``from == to``, ``from`` = us with an id we
  never sent), charged to the link's error budget; drops silently a frame whose id it saw in the last
  ``SEEN_TTL_MS`` (loops and duplicate paths); counts ``relay-budget`` (paced, not blamed) past a
  per-neighbour token bucket; drops ``relay-refused`` (not blamed) frames from or to a removed member;
  keeps a frame for us (``take_relayed``, at most ``MAX_INBOX``) whose payload the adapter opens with
  ``from`` as the claimed sender (the payload's signature, AEAD binding and replay cache decide); and
  forwards any other frame with ``hops - 1`` if ``hops > 1``. The relay never opens a payload.
- **Reach.** Once enabled (``enable``), we announce our linked members and reach hints to every linked
  neighbour when our set of linked members changes (at most every ``MIN_INTERVAL_MS``) and every
  ``REFRESH_MS``; a newly linked neighbour also gets every fresh announcement we hold (at most
  ``MAX_HANDOVER``). A receiver refuses malformed ones (``bad-reach``, link budget) and bad signatures;
  holds (at most ``MAX_PENDING``, newest per announcer) one by a sender not known yet and retries it
  when its ADD arrives (a newcomer hears of members before it has their ADDs); drops (not blamed) stale ones (``|now - ts| > MAX_SKEW_MS``) and any not
  newer than the one held for that announcer; counts ``reach-budget`` past a per-neighbour bucket;
  stores the newest per announcer (at most ``MAX_ANNOUNCERS``) until ``ts + ttl``; and forwards a new
  one to its linked neighbours other than the sender, the announcer and the members the announcement
  names (those had it first-hand: a full mesh forwards nothing). ``reachable()`` = members named by fresh announcements that we
  are not linked with (the adapter dials them through relayed signaling).
- **Persists** ``reach/servers``: the ``server`` hint URLs learned from members (JSON list, newest
  first, at most ``MAX_SERVERS``), so a restarting member can try them; erased with the room.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from peer.core.crypto import ed25519_verify, sha256
from peer.core.errors import ProtocolError
from peer.core.identity import Identity, PublicBundle
from peer.core.ids import id_from_bytes, id_to_bytes
from peer.core.ints import in_range
from peer.core.persist import PersistBatch

RELAY_TAG = 0x20
REACH_TAG = 0x21
LABEL_RELAY = b"ephemesh-v1 relay-id\x00"
LABEL_REACH = b"ephemesh-v1 reach\x00"
MAX_HOPS = 4
DEFAULT_HOPS = 3
MAX_RELAY_PAYLOAD = 32_768
FANOUT = 4
ROUTE_WIDTH = 2
SEEN_TTL_MS = 240_000
MAX_SEEN = 4096
MAX_INBOX = 64
MAX_LINKS = 64
MAX_HINTS = 8
MAX_KIND = 16
MAX_URL = 256
MAX_TTL_S = 600
TTL_S = 90
REFRESH_MS = 30_000
MIN_INTERVAL_MS = 2_000
MAX_SKEW_MS = 120_000
MAX_ANNOUNCERS = 256
MAX_HANDOVER = 64
MAX_PENDING = 64
MAX_SERVERS = 16
SERVERS_STATE = "reach/servers"
#: token buckets (per neighbour): burst, tokens per second
RELAY_BURST, RELAY_RATE = 32, 8
REACH_BURST, REACH_RATE = 96, 4
_KIND = re.compile(r"[a-z0-9-]{1,16}")
_URL = re.compile(r"[\x21-\x7e]{1,256}")

Hint = tuple[str, str]  # (kind, url)


@dataclass(frozen=True, slots=True)
class RelayFrame:
    hops: int
    id: bytes
    sender: str
    to: str
    payload: str


@dataclass(frozen=True, slots=True)
class Reach:
    announcer: str
    ts: int
    ttl_s: int
    links: tuple[str, ...]
    hints: tuple[Hint, ...]
    sig: bytes
    raw: bytes  # the whole APP body, forwarded as is


def relay_id(sender: str, to: str, payload: str) -> bytes:
    return sha256(LABEL_RELAY + id_to_bytes(sender) + id_to_bytes(to) + payload.encode("ascii"))[:16]


def encode_relay(hops: int, sender: str, to: str, payload: str) -> bytes:
    if not 1 <= hops <= MAX_HOPS or not payload.isascii() or not 0 < len(payload) <= MAX_RELAY_PAYLOAD:
        raise ValueError("bad relay frame")
    return (
        bytes([RELAY_TAG, hops])
        + relay_id(sender, to, payload)
        + id_to_bytes(sender)
        + id_to_bytes(to)
        + payload.encode("ascii")
    )


def decode_relay(body: bytes) -> RelayFrame:
    """Parse a RELAY body; ``ProtocolError("bad-relay")`` on anything malformed."""
    if len(body) < 2 + 48 + 1 or body[0] != RELAY_TAG or len(body) > 2 + 48 + MAX_RELAY_PAYLOAD:
        raise ProtocolError("bad-relay", "bad relay frame length or tag")
    hops = body[1]
    if not 1 <= hops <= MAX_HOPS:
        raise ProtocolError("bad-relay", "hop limit out of range")
    raw = body[50:]
    if not raw.isascii():
        raise ProtocolError("bad-relay", "payload is not ASCII")
    sender, to, payload = id_from_bytes(body[18:34]), id_from_bytes(body[34:50]), raw.decode("ascii")
    if sender == to:
        raise ProtocolError("bad-relay", "relay to oneself")
    if relay_id(sender, to, payload) != body[2:18]:
        raise ProtocolError("bad-relay", "relay id is not the hash of the frame")
    return RelayFrame(hops, body[2:18], sender, to, payload)


def reach_signed(room_id: str, body: bytes) -> bytes:
    """What the announcer signs: the label, the room id and ``body[1:-64]``."""
    return LABEL_REACH + id_to_bytes(room_id) + body[1:-64]


def encode_reach(
    identity: Identity, room_id: str, ts: int, ttl_s: int, links: Iterable[str], hints: Iterable[Hint]
) -> bytes:
    me = identity.peer_id
    ids = sorted({p for p in links if p != me})[:MAX_LINKS]
    hs = list(hints)[:MAX_HINTS]
    if not in_range(ts) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError("bad reach ts/ttl")
    out = [bytes([REACH_TAG]), id_to_bytes(me), struct.pack(">QHB", ts, ttl_s, len(ids))]
    out += [id_to_bytes(p) for p in ids]
    out.append(bytes([len(hs)]))
    for kind, url in hs:
        if not _KIND.fullmatch(kind) or not _URL.fullmatch(url):
            raise ValueError("bad reach hint")
        out += [bytes([len(kind)]), kind.encode("ascii"), struct.pack(">H", len(url)), url.encode("ascii")]
    unsigned = b"".join(out) + bytes(64)
    return unsigned[:-64] + identity.sign(reach_signed(room_id, unsigned))


def decode_reach(body: bytes) -> Reach:
    """Parse a REACH body (the signature is checked by the caller); ``ProtocolError("bad-reach")``."""

    def bad(why: str) -> ProtocolError:
        return ProtocolError("bad-reach", why)

    if len(body) < 1 + 16 + 11 + 1 + 64 or body[0] != REACH_TAG:
        raise bad("bad reach frame length or tag")
    end = len(body) - 64
    announcer = id_from_bytes(body[1:17])
    ts, ttl_s, n = struct.unpack(">QHB", body[17:28])
    if not in_range(ts) or not 1 <= ttl_s <= MAX_TTL_S or n > MAX_LINKS:
        raise bad("ts, ttl or link count out of range")
    pos = 28
    if pos + 16 * n + 1 > end:
        raise bad("truncated")
    links = tuple(id_from_bytes(body[pos + 16 * i : pos + 16 * i + 16]) for i in range(n))
    if any(a >= b for a, b in itertools.pairwise(links)) or announcer in links:
        raise bad("links not strictly increasing or naming the announcer")
    pos += 16 * n
    h = body[pos]
    pos += 1
    if h > MAX_HINTS:
        raise bad("too many hints")
    hints: list[Hint] = []
    for _ in range(h):
        if pos + 1 > end:
            raise bad("truncated")
        klen = body[pos]
        kind_b = body[pos + 1 : pos + 1 + klen]
        pos += 1 + klen
        if pos + 2 > end:
            raise bad("truncated")
        (ulen,) = struct.unpack(">H", body[pos : pos + 2])
        url_b = body[pos + 2 : pos + 2 + ulen]
        pos += 2 + ulen
        if pos > end or len(kind_b) != klen or len(url_b) != ulen:
            raise bad("truncated")
        if not kind_b.isascii() or not url_b.isascii():
            raise bad("hint not ASCII")
        kind, url = kind_b.decode("ascii"), url_b.decode("ascii")
        if not _KIND.fullmatch(kind) or not _URL.fullmatch(url):
            raise bad("bad hint")
        hints.append((kind, url))
    if pos != end:
        raise bad("trailing bytes")
    return Reach(announcer, ts, ttl_s, links, tuple(hints), body[end:], body)


class _Bucket:
    """A token bucket in milli-tokens (integers, so both cores compute the same thing)."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, burst: int, rate: int, now: int) -> None:
        self.burst, self.rate, self.tokens, self.at = burst * 1000, rate, burst * 1000, now

    def take(self, now: int) -> bool:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens < 1000:
            return False
        self.tokens -= 1000
        return True


Out = list[tuple[str, bytes]]  # (neighbour, APP body)


class Relay:
    def __init__(self, identity: Identity, room_id: str) -> None:
        self._identity = identity
        self._me = identity.peer_id
        self._room_id = room_id
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # relay id -> forget at
        self._inbox: list[tuple[str, str]] = []
        self._relay_buckets: dict[str, _Bucket] = {}
        self._reach_buckets: dict[str, _Bucket] = {}
        self._table: dict[str, Reach] = {}  # announcer -> newest fresh announcement
        self._hints: tuple[Hint, ...] = ()
        self._enabled = False
        self._linked: frozenset[str] = frozenset()
        self._announced_at: int | None = None
        self._due: int | None = None
        self._last_ts = -1
        self._servers: list[str] = []
        self._pending: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # announcer -> (from, body)
        self.dropped = 0  # frames dropped without blame (duplicates, hop limit spent, no route)
        self.changes = 0  # bumped whenever the announcements held change (adapters recompute reachable)

    # -- state ---------------------------------------------------------------------------------------

    def load(self, states: dict[str, bytes]) -> None:
        raw = states.get(SERVERS_STATE)
        if raw:
            urls = json.loads(raw.decode("ascii"))
            self._servers = [u for u in urls if isinstance(u, str) and _URL.fullmatch(u)][:MAX_SERVERS]

    def reach_hints(self) -> list[str]:
        """Server URLs learned from members' announcements, newest first."""
        return list(self._servers)

    def reachable(self, online: set[str], is_member: Callable[[str], bool], now: int) -> list[str]:
        named: set[str] = set()
        for reach in self._table.values():
            if _expires(reach) > now:
                named.add(reach.announcer)
                named.update(reach.links)
        return sorted(p for p in named if p != self._me and p not in online and is_member(p))

    def take_relayed(self) -> list[tuple[str, str]]:
        out, self._inbox = self._inbox, []
        return out

    def next_deadline(self) -> int | None:
        times = [self._due] if self._due is not None else []
        times += [_expires(r) for r in self._table.values()]
        return min(times, default=None)

    def take_pending(self, announcer: str) -> tuple[str, bytes] | None:
        """An announcement held until ``announcer`` became known (see ``on_reach``)."""
        return self._pending.pop(announcer, None)

    def drop_neighbour(self, peer: str) -> None:
        self._relay_buckets.pop(peer, None)
        self._reach_buckets.pop(peer, None)

    def forget(self, peer: str) -> None:
        """A member was removed: its announcement goes."""
        if self._table.pop(peer, None) is not None:
            self.changes += 1

    # -- relay -----------------------------------------------------------------------------------------

    def _routes(self, to: str, online: set[str], exclude: set[str], now: int) -> list[str]:
        if to in online:
            return [to]
        candidates = sorted(online - exclude)
        via = [
            n
            for n in candidates
            if (r := self._table.get(n)) is not None and _expires(r) > now and to in r.links
        ]
        return via[:ROUTE_WIDTH] if via else candidates[:FANOUT]

    def _remember(self, rid: bytes, now: int) -> bool:
        """Record a relay id; False if seen within ``SEEN_TTL_MS``."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if rid in self._seen:
            return False
        while len(self._seen) >= MAX_SEEN:
            self._seen.popitem(last=False)
        self._seen[rid] = now + SEEN_TTL_MS
        return True

    def originate(self, to: str, payload: str, online: set[str], now: int) -> Out:
        """Send our sealed signaling payload for ``to`` through the mesh; empty if no neighbour."""
        body = encode_relay(DEFAULT_HOPS, self._me, to, payload)
        self._remember(body[2:18], now)
        return [(n, body) for n in self._routes(to, online, {to}, now)]

    def on_relay(
        self, neighbour: str, body: bytes, online: set[str], is_removed: Callable[[str], bool], now: int
    ) -> tuple[Out, str | None]:
        """A RELAY body from a linked neighbour: (frames to forward, unblamed refusal code or None).
        Raises ``ProtocolError`` for what the neighbour is blamed for."""
        frame = decode_relay(body)
        bucket = self._relay_buckets.get(neighbour)
        if bucket is None:
            bucket = self._relay_buckets[neighbour] = _Bucket(RELAY_BURST, RELAY_RATE, now)
        if not bucket.take(now):
            return [], "relay-budget"
        fresh = self._remember(frame.id, now)
        if frame.sender == self._me:
            if fresh:
                raise ProtocolError("bad-relay", "a payload from us that we never sent")
            self.dropped += 1
            return [], None
        if not fresh:
            self.dropped += 1
            return [], None
        if is_removed(frame.sender) or is_removed(frame.to):
            return [], "relay-refused"
        if frame.to == self._me:
            if len(self._inbox) >= MAX_INBOX:
                self._inbox.pop(0)
            self._inbox.append((frame.sender, frame.payload))
            return [], None
        if frame.hops <= 1:
            self.dropped += 1
            return [], None
        fwd = encode_relay(frame.hops - 1, frame.sender, frame.to, frame.payload)
        return [(n, fwd) for n in self._routes(frame.to, online, {neighbour, frame.sender}, now)], None

    # -- reach -----------------------------------------------------------------------------------------

    def enable(self, hints: Iterable[Hint], now: int) -> None:
        """Start announcing (or change our hints): an announcement is due now."""
        hs = tuple(hints)[:MAX_HINTS]
        for kind, url in hs:
            if not _KIND.fullmatch(kind) or not _URL.fullmatch(url):
                raise ValueError("bad reach hint")
        self._hints, self._enabled = hs, True
        self._due = now

    def on_links(self, online: set[str], now: int) -> Out:
        """Our set of linked members may have changed: hand fresh announcements to new neighbours and
        schedule our own (debounced)."""
        new = online - self._linked
        changed = online != self._linked
        self._linked = frozenset(online)
        out: Out = []
        if not self._enabled:
            return out
        if new:
            fresh = sorted(
                (r for r in self._table.values() if _expires(r) > now), key=lambda r: (-r.ts, r.announcer)
            )[:MAX_HANDOVER]
            out = [(n, r.raw) for n in sorted(new) for r in fresh if r.announcer != n]
        if changed:
            earliest = now if self._announced_at is None else self._announced_at + MIN_INTERVAL_MS
            self._due = max(now, earliest) if self._due is None else min(self._due, max(now, earliest))
        return out

    def tick(self, now: int) -> Out:
        """Timers: drop expired announcements; send ours when due."""
        for announcer in [a for a, r in self._table.items() if _expires(r) <= now]:
            del self._table[announcer]
            self.changes += 1
        if not self._enabled or self._due is None or now < self._due:
            return []
        return self._announce(now)

    def _announce(self, now: int) -> Out:
        self._last_ts = ts = max(now, self._last_ts + 1)
        self._announced_at = now
        self._due = now + REFRESH_MS
        if not self._linked:
            return []
        body = encode_reach(self._identity, self._room_id, ts, TTL_S, self._linked, self._hints)
        return [(n, body) for n in sorted(self._linked)]

    def on_reach(
        self,
        neighbour: str,
        body: bytes,
        online: set[str],
        member_bundle: Callable[[str], PublicBundle | None],
        now: int,
        persist: PersistBatch,
    ) -> tuple[Out, str | None]:
        """A REACH body from a linked neighbour: (frames to forward, unblamed refusal code or None).
        Raises ``ProtocolError`` (``bad-reach``, ``bad-signature``) for what the neighbour is blamed for."""
        reach = decode_reach(body)
        bucket = self._reach_buckets.get(neighbour)
        if bucket is None:
            bucket = self._reach_buckets[neighbour] = _Bucket(REACH_BURST, REACH_RATE, now)
        if not bucket.take(now):
            return [], "reach-budget"
        if reach.announcer == self._me:
            return [], None
        held = self._table.get(reach.announcer)
        if held is not None and reach.ts <= held.ts:
            return [], None
        if abs(now - reach.ts) > MAX_SKEW_MS:
            return [], "reach-stale"
        bundle = member_bundle(reach.announcer)
        if bundle is None:  # its ADD may be on its way (a newcomer): held until it is known
            self._pending.pop(reach.announcer, None)
            self._pending[reach.announcer] = (neighbour, body)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            return [], None
        ed25519_verify(bundle.ed25519, reach_signed(self._room_id, body), reach.sig)
        if held is None and len(self._table) >= MAX_ANNOUNCERS:
            oldest = min(self._table.values(), key=lambda r: (r.ts, r.announcer))
            del self._table[oldest.announcer]
        self._table[reach.announcer] = reach
        self.changes += 1
        self._learn_servers(reach, persist)
        skip = {neighbour, reach.announcer, *reach.links}  # the announcer's own links got it first-hand
        return [(n, body) for n in sorted(online - skip)], None

    def _learn_servers(self, reach: Reach, persist: PersistBatch) -> None:
        urls = [url for kind, url in reach.hints if kind == "server"]
        if not urls:
            return
        merged = list(dict.fromkeys(urls + self._servers))[:MAX_SERVERS]
        if merged != self._servers:
            self._servers = merged
            persist.put(SERVERS_STATE, json.dumps(merged, separators=(",", ":")).encode("ascii"))


def _expires(reach: Reach) -> int:
    return reach.ts + reach.ttl_s * 1000
