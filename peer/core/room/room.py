"""The room coordinator: routes API calls and sync events to the parts that own the state.

Every entry point takes ``now`` (ms) and returns events; ``data_to_send()`` drains what to transmit,
``next_timer()``/``handle_timer(now)`` drive time, ``take_persist()`` drains what must be stored *before*
anything returned by ``data_to_send()`` is transmitted (a chain state is on disk before a key is used).

Parts (each owns its state and says what it persists; see ``docs/architecture.md``): ``links`` (+
``parking``), ``members`` (the one "known sender" rule), ``keys`` (sender keys), ``timeline`` (pure
projection), ``receipts`` (erasure receipts), ``presence`` (typing/seen). The coordinator owns only
our ``seq`` (state ``seq``; ``lamport`` is the sync clock's) and the envelope-kind dispatch.

Rules that span parts:
- **Joining.** The first time we join we publish a self-ADD op (bundle + signed prekey, MACed with the
  room's member key); with an invite TTL and no room timer yet, a SET_TIMER op too.
- **Validation.** An envelope enters the log only if it parses, is for this room and is signed by its
  sender: a self-ADD against the bundle it carries, anything else against the bundle of a *known
  sender* (``members``). An unknown sender's envelope is parked and offered back once its ADD arrives.
  An envelope is parsed once on the way in (``_validate``) and that parse is reused.
- **Keys.** A new chain goes to every member; a member learned later gets the current chain's initial
  state; a removal rotates the chain (see ``senderkeys``). A keeper never opens anything.
- **Expiry and unsend.** An expired or unsent entry is erased from every part (message, key, pending
  copy, envelope row), a tombstone stays; an unsend is a TOMBSTONE envelope (kind 4) whose bytes are the
  proof ``_authorize_tombstone`` checks. We owe the sender an erasure receipt for each CHAT we erase.
- **Remote errors** are counted per peer and surfaced as :class:`RemoteError`; a link past its budget is
  closed (``take_dead_links``). Never a list.
"""

from __future__ import annotations

from collections.abc import Iterable

from peer.core import wire
from peer.core.chains import ChainPolicy, SenderChain, SenderKeyMessage
from peer.core.content import (
    Content,
    Edit,
    Profile,
    Reaction,
    Text,
    clean_name,
    decode_content,
    encode_content,
)
from peer.core.crypto import Rng, default_rng
from peer.core.envelope import (
    Envelope,
    Kind,
    decode_tombstone,
    encode_tombstone,
    envelope_key,
    parse_envelope,
    seal_unchained_envelope,
    verify_envelope,
)
from peer.core.erasure import RECEIPT_TAG
from peer.core.errors import ProtocolError
from peer.core.events import (
    MemberJoined,
    MemberLeft,
    MemberOnline,
    Message,
    RemoteError,
    RoomEvent,
    TimerChanged,
)
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.log import Key, LogEntry, Tombstone
from peer.core.membership import MembershipOp, MembershipState, OpType, make_add, make_remove, make_set_timer
from peer.core.persist import PersistBatch, Snapshot
from peer.core.presence import TypingSignal, decode_presence
from peer.core.sync import (
    Acked,
    EntryAdded,
    EntryDeleted,
    EntryExpired,
    EnvelopeRefused,
    NeighbourReady,
    NeighbourTimedOut,
    OpaqueFrame,
    ProtocolErrorEvent,
    SyncConfig,
    SyncEngine,
)

from .links import Links, LinkState
from .members import Members
from .parking import Parking
from .presence import Presence
from .receipts import Receipts
from .senderkeys import SenderKeys, open_with_key
from .timeline import Meta, Timeline, parse_message_id

DEFAULT_TTL_S = 24 * 3600
#: expires_at of room-state envelopes and ttl-0 messages: far future (year ~144,000) yet small enough that
#: ``NEVER + skew`` still fits the sync wire's integers (<= 2**53 - 1), so such a message can be unsent.
NEVER = 2**52


class Room:
    """One room, one member: all the protocol, none of the I/O."""

    def __init__(
        self,
        identity: Identity,
        invite: Invite,
        now: int,
        *,
        keeper: bool = False,
        snapshot: Snapshot | None = None,
        sync_config: SyncConfig | None = None,
        chain_policy: ChainPolicy | None = None,
        rng: Rng = default_rng,
    ) -> None:
        self.identity = identity
        self.invite = invite
        self.room_id = invite.room_id
        self.peer_id = identity.peer_id
        self.keeper = keeper
        self.sync = SyncEngine(
            self.peer_id,
            self.room_id,
            self._validate,
            config=sync_config,
            authorize_tombstone=self._authorize_tombstone,
            peek_key=envelope_key,
        )
        self.members_part = Members(self.room_id, invite.member_key, identity.public_bundle())
        self.links = Links(identity, self.room_id, rng)
        self.parking = Parking()
        self.keys = SenderKeys(identity, self.room_id, chain_policy or ChainPolicy(), rng)
        self.timeline = Timeline(self.peer_id)
        self.receipts = Receipts(identity, self.room_id)
        self.presence = Presence()
        self._persist = PersistBatch()
        self._fresh: dict[Key, Envelope] = {}  # parsed by _validate, reused by _on_entry (one parse)
        self._known_new: list[str] = []  # senders that just became known: their parked envelopes go back
        self._errors: dict[str, dict[str, int]] = {}  # peer -> code -> count (peers: links and members)
        self.errors_total = 0
        states = snapshot.states if snapshot else {}
        self._seq = int(states.get("seq", b"0"))
        self.sync.observe(int(states.get("lamport", b"0")))
        self.keys.load(states, now, self._persist)
        if snapshot is not None:
            from .restore import restore

            restore(self, snapshot, now)
        if not self.members_part.is_member(self.peer_id):
            add = make_add(
                identity,
                invite.member_key,
                self.room_id,
                self.sync.tick(),
                identity.public_bundle(),
                self.keys.prekey,
            )
            self._publish_unchained(Kind.MEMBERSHIP, add.encode(), now)
            if invite.ttl_s and self.members_part.timer is None:
                self.set_timer(invite.ttl_s, now)

    # -- public API: queries -----------------------------------------------------------------------

    @property
    def membership(self) -> MembershipState:
        return self.members_part.state

    @property
    def policy(self) -> ChainPolicy:
        return self.keys.policy

    @policy.setter
    def policy(self, policy: ChainPolicy) -> None:
        self.keys.policy = policy

    def learn_bundle(self, bundle: PublicBundle) -> None:
        """A verified bundle (e.g. from a signed signaling payload) for a peer we may link with."""
        self.members_part.learn(bundle)

    def messages(self) -> list[Message]:
        return self.timeline.messages()

    def online(self) -> set[str]:
        return {n for n in self.sync.neighbours if self.sync.is_ready(n)}

    def caught_up(self) -> bool:
        """Linked neighbours have all said what they hold and we have fetched what we lacked."""
        return self.sync.caught_up()

    def members(self) -> list[str]:
        return sorted(self.membership.members)

    def delivered_to(self, msg_id: str) -> set[str]:
        return self.timeline.delivered_to(msg_id)

    def erased_on(self, msg_id: str) -> set[str]:
        """Members (other than us) whose signed receipt says they erased our message ``msg_id``."""
        key = parse_message_id(msg_id)
        return self.receipts.erased_on(key[1]) if key is not None and key[0] == self.peer_id else set()

    def erasure(self, msg_id: str) -> tuple[int, int]:
        """``(N, M)``: our message was erased on N of the M other current members."""
        return len(self.erased_on(msg_id)), self.members_part.count_others()

    def display_name(self, peer: str) -> str | None:
        return self.timeline.display_name(peer)

    def typing_members(self, now: int) -> list[str]:
        return self.presence.typing_members(now)

    def seen_by(self, msg_id: str) -> set[str]:
        key = parse_message_id(msg_id)
        return self.timeline.seen_by(key[1]) if key is not None and key[0] == self.peer_id else set()

    def error_counts(self, peer: str) -> dict[str, int]:
        """Remote errors counted against ``peer`` (a neighbour or a member), by code."""
        return dict(self._errors.get(peer, {}))

    def error_summary(self) -> list[tuple[str, str, int]]:
        """Every remote error counted so far: (peer, code, count), sorted."""
        return sorted((p, c, n) for p, codes in self._errors.items() for c, n in codes.items())

    @property
    def timer_s(self) -> int:
        timer = self.members_part.timer
        return timer.ttl_s if timer is not None else self.invite.ttl_s or DEFAULT_TTL_S

    # -- public API: sending -----------------------------------------------------------------------

    def send_text(
        self, text: str, now: int, *, ttl_s: int | None = None, reply_to: str | None = None
    ) -> Message:
        """Seal, sign, log and broadcast a chat message. Its expiry is fixed here and signed."""
        ttl = ttl_s if ttl_s is not None else self.timer_s
        expires_at = NEVER if ttl == 0 else now + ttl * 1000
        key = self._send_content(Text(text, reply_to), now, expires_at)
        msg = self.timeline.shown(key)
        assert msg is not None
        self.timeline.track_delivery(msg.id)
        return msg

    def set_profile(self, name: str, now: int) -> list[RoomEvent]:
        """Publish our display name in this room (room state: it does not expire)."""
        events: list[RoomEvent] = []
        self._send_content(Profile(clean_name(name)), now, NEVER, events)
        return events

    def edit(self, msg_id: str, body: str, now: int) -> Message:
        """Replace the body of one of our own messages, for everyone; the edit expires with it."""
        target = self.timeline.base(parse_message_id(msg_id) or ("", -1))
        if target is None or target.sender != self.peer_id:
            raise ValueError("can only edit our own messages that are still here")
        return self.timeline.target_of(self._send_content(Edit(msg_id, body), now, target.expires_at))

    def react(self, msg_id: str, emoji: str, now: int, *, on: bool = True) -> Message:
        """Add (or with ``on=False`` remove) our reaction to a message; it expires with the message."""
        target = self.timeline.base(parse_message_id(msg_id) or ("", -1))
        if target is None:
            raise ValueError("no such message")
        key = self._send_content(Reaction(msg_id, emoji, on), now, target.expires_at)
        return self.timeline.target_of(key)

    def unsend(self, msg_id: str, now: int) -> list[RoomEvent]:
        """Delete one of our own messages for everyone ("unsend"): a signed TOMBSTONE envelope (kind 4),
        applied here with itself as proof. Empty if ``msg_id`` is not one of our messages we still hold."""
        key = parse_message_id(msg_id)
        if key is None or key[0] != self.peer_id or not self.keys.is_chat(key):
            return []
        entry = self.sync.entry(key)
        if entry is None:
            return []
        expires_at = max(entry.expires_at, now + 1)
        published = self._publish_unchained(
            Kind.TOMBSTONE, encode_tombstone([key[1]]), now, expires_at=expires_at
        )
        events: list[RoomEvent] = []
        self._apply_unsend(self.peer_id, [key[1]], expires_at, published.data, now, events)
        return events

    def set_timer(self, ttl_s: int, now: int) -> list[RoomEvent]:
        """Set the room's default message lifetime (a signed, versioned op; the highest version wins)."""
        timer = self.members_part.timer
        version = timer.version + 1 if timer else 1
        op = make_set_timer(
            self.identity, self.invite.member_key, self.room_id, self.sync.tick(), ttl_s, version
        )
        events: list[RoomEvent] = []
        self._publish_unchained(Kind.MEMBERSHIP, op.encode(), now, events=events)
        return events

    def remove_member(self, peer: str, now: int) -> list[RoomEvent]:
        """Remove ``peer`` for good (or leave, if it is us). Every sender rotates its chain."""
        if not self.members_part.is_member(peer):
            raise ValueError("not a member")
        op = make_remove(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), peer)
        events: list[RoomEvent] = []
        self._publish_unchained(Kind.MEMBERSHIP, op.encode(), now, events=events)
        return events

    def set_typing(self, typing: bool, now: int) -> None:
        """Tell linked members we are (not) typing; renewals are rate-limited."""
        for peer, body in self.presence.set_typing(typing, now, self.online()):
            self.sync.send_opaque(peer, wire.FrameType.APP, body)

    def mark_seen(self, msg_ids: list[str], now: int) -> None:
        """We have shown these messages: tell each sender that is linked to us (once per message)."""
        keys = [
            k
            for k in (parse_message_id(m) for m in msg_ids)
            if k is not None and k[0] != self.peer_id and self.timeline.base(k) and self.sync.is_ready(k[0])
        ]
        for peer, body in self.presence.seen(keys):
            self.sync.send_opaque(peer, wire.FrameType.APP, body)

    # -- public API: links and pumping -----------------------------------------------------------------

    def link_up(self, peer: str, now: int) -> None:
        self.links.up(peer, self.members_part.link_bundle(peer))

    def link_down(self, peer: str, now: int) -> list[RoomEvent]:
        had = self.links.down(peer)
        was_online = self.sync.is_ready(peer)
        self.sync.disconnect(peer, now)
        self.parking.drop_neighbour(peer)
        return [MemberOnline(peer, False)] if had and was_online else []

    def take_dead_links(self) -> list[str]:
        return self.links.take_dead()

    def receive(self, peer: str, data: bytes, now: int) -> list[RoomEvent]:
        state = self.links.state(peer)
        if state is LinkState.HANDSHAKING:
            ready, code = self.links.on_handshake(peer, data)
            if ready:
                self.sync.connect(peer, now)
            if code is not None:
                self.errors_total += 1
                return [RemoteError(peer, code, 1, closed=True)]
            return []
        if state is not LinkState.READY:
            return []
        return self._settle(self._route(self.sync.receive(peer, data, now), now), now)

    def data_to_send(self) -> list[tuple[str, bytes]]:
        known = {p for p in self.membership.members} | set(self.membership.removed)
        for sender, body in self.receipts.flush(known, self.online()):
            self.sync.send_opaque(sender, wire.FrameType.APP, body)
        return self.links.take_outbox() + self.sync.data_to_send()

    def next_timer(self) -> int | None:
        times = [self.sync.next_timer(), self.presence.next_deadline(), self.parking.next_deadline()]
        return min((t for t in times if t is not None), default=None)

    def handle_timer(self, now: int) -> list[RoomEvent]:
        events = self._route(self.sync.handle_timer(now), now)
        self.presence.expire(now, events)
        self.parking.expire(now)
        return self._settle(events, now)

    def take_persist(self) -> PersistBatch:
        batch, self._persist = self._persist, PersistBatch()
        if batch:
            batch.states.setdefault("lamport", str(self.sync.lamport).encode())
        return batch

    # -- publishing --------------------------------------------------------------------------------------

    def _publish_unchained(
        self,
        kind: Kind,
        payload: bytes,
        now: int,
        *,
        expires_at: int = NEVER,
        events: list[RoomEvent] | None = None,
    ) -> LogEntry:
        self._seq += 1
        lamport = self.sync.tick()
        data = seal_unchained_envelope(
            self.identity, self.room_id, kind, self._seq, lamport, now, expires_at, payload
        )
        self._persist.put("seq", str(self._seq).encode())
        self._persist.put("lamport", str(lamport).encode())
        entry = self.sync.publish(
            data, now, LogEntry(self.peer_id, self._seq, lamport, now, expires_at, data)
        )
        self._persist.envelopes.append(entry)
        if kind == Kind.MEMBERSHIP:
            self.members_part.add_op(entry.key, MembershipOp.decode(payload))
            self._on_membership(events if events is not None else [], now)
        return entry

    def _send_content(
        self, content: Content, now: int, expires_at: int, events: list[RoomEvent] | None = None
    ) -> Key:
        if self.keeper:
            raise ValueError("a keeper does not send messages")
        plaintext = encode_content(content)
        rotated = self.keys.rotate_if_due(now, self.members_part.epoch, self._persist)
        if rotated is not None:
            for pid in self.members_part.others():
                self._give_chain(pid, rotated, now)
        self._seq += 1
        lamport = self.sync.tick()
        data = self.keys.seal(self._seq, lamport, now, expires_at, plaintext, self._persist)
        self._persist.put("seq", str(self._seq).encode())
        self._persist.put("lamport", str(lamport).encode())
        own = LogEntry(self.peer_id, self._seq, lamport, now, expires_at, data)
        self._persist.envelopes.append(self.sync.publish(data, now, own))  # ours: no need to verify
        self.receipts.track(self._seq)
        self.timeline.apply(Meta(self.peer_id, self._seq, lamport, now, expires_at), content, events or [])
        return (self.peer_id, self._seq)

    # -- validation (called by the sync engine for every new envelope) ---------------------------------

    def _known(self, sender: str) -> PublicBundle:
        bundle = self.members_part.known_sender(sender)
        if bundle is None:
            raise ProtocolError("unknown-sender", "sender is not a known member")
        return bundle

    def _validate(self, data: bytes) -> LogEntry:
        env = parse_envelope(data)
        if env.room_id != self.room_id:
            raise ProtocolError("wrong-room", "envelope for another room")
        if env.kind == Kind.MEMBERSHIP:
            op = MembershipOp.decode(env.payload)
            if op.author != env.sender:
                raise ProtocolError("wrong-sender", "op author differs from envelope sender")
            self_add = op.op == OpType.ADD and op.target == op.author
            key = op.bundle.ed25519 if self_add else self._known(env.sender).ed25519
        else:
            # an unsend travels as a tombstone proof too: bounded, and only earlier seqs of its own sender
            if env.kind == Kind.TOMBSTONE and (
                len(data) > wire.MAX_PROOF or any(q >= env.seq for q in decode_tombstone(env.payload))
            ):
                raise ProtocolError("bad-tombstone", "unsend too large or naming a later seq")
            key = self._known(env.sender).ed25519
        verify_envelope(env, key)
        entry = LogEntry(env.sender, env.seq, env.lamport, env.sent_at, env.expires_at, data)
        self._fresh[entry.key] = env
        return entry

    def _authorize_tombstone(self, tomb: Tombstone, held: LogEntry | None, now: int) -> bool:
        """Accept a tombstone with a proof iff the proof is the messages' sender's signed TOMBSTONE envelope
        for this room naming ``tomb.seq`` (an earlier seq), and ``until`` is within its bound."""
        try:
            env = parse_envelope(tomb.proof)
            if env.kind != Kind.TOMBSTONE or env.room_id != self.room_id or env.sender != tomb.sender:
                return False
            verify_envelope(env, self._known(env.sender).ed25519)
            seqs = decode_tombstone(env.payload)
        except ProtocolError:
            return False
        if tomb.seq not in seqs or tomb.seq >= env.seq or tomb.until > self._unsend_until(env.expires_at):
            return False
        return held is None or self._deletable(held)

    def _unsend_until(self, expires_at: int) -> int:
        return min(expires_at + self.sync.skew_ms, wire.MAX_INT)

    def _deletable(self, held: LogEntry) -> bool:
        """Only CHAT messages can be unsent (never room state), and only while the tombstone fits the wire."""
        return self.keys.is_chat(held.key) and held.expires_at + self.sync.skew_ms <= wire.MAX_INT

    # -- routing sync events -----------------------------------------------------------------------------

    def _settle(self, events: list[RoomEvent], now: int) -> list[RoomEvent]:
        """After a call: offer back what was parked for senders that just became known, once."""
        while self._known_new:
            for neighbour, data in self.parking.take(self._known_new.pop(0)):
                events += self._route(self.sync.offer(neighbour, data, now), now)
        self._fresh.clear()
        return events

    def _route(self, sync_events: Iterable[object], now: int) -> list[RoomEvent]:
        events: list[RoomEvent] = []
        for ev in sync_events:
            if isinstance(ev, EntryAdded):
                self._on_entry(ev.entry, now, events)
            elif isinstance(ev, EntryExpired):
                self._erase(ev.key, events, "expired")
            elif isinstance(ev, EntryDeleted):
                self._erase(ev.key, events, "unsent")
            elif isinstance(ev, Acked):
                self.timeline.on_ack(ev.neighbour, ev.sender, ev.seq, events)
            elif isinstance(ev, NeighbourReady):
                events.append(MemberOnline(ev.neighbour, True))
                self._give_current_chain(ev.neighbour, now)
            elif isinstance(ev, NeighbourTimedOut):
                self.links.close(ev.neighbour)
                self.parking.drop_neighbour(ev.neighbour)
                events.append(MemberOnline(ev.neighbour, False))
            elif isinstance(ev, OpaqueFrame):
                self._on_opaque(ev, now, events)
            elif isinstance(ev, EnvelopeRefused) and ev.code == "unknown-sender":
                self.parking.park(ev.neighbour, envelope_key(ev.data)[0], ev.data, now)
            elif isinstance(ev, EnvelopeRefused | ProtocolErrorEvent):
                self._fault(ev.neighbour, ev.code, now, events)
                if ev.code == "wrong-room":
                    self.links.close(ev.neighbour)
        return events

    def _fault(self, peer: str, code: str, now: int, events: list[RoomEvent], *, link: bool = True) -> None:
        """Count a remote error against ``peer``; ``link``: blame its link (budget) too."""
        self.errors_total += 1
        counts = self._errors.setdefault(peer, {})
        counts[code] = counts.get(code, 0) + 1
        closed = False
        if link:
            _, closed = self.links.fault(peer, code)
            if closed:
                self.sync.disconnect(peer, now)
                self.parking.drop_neighbour(peer)
        events.append(RemoteError(peer, code, counts[code], closed))

    def _on_opaque(self, ev: OpaqueFrame, now: int, events: list[RoomEvent]) -> None:
        peer = ev.neighbour
        try:
            if not self.links.is_ready(peer):
                raise ProtocolError("unexpected-frame", "no authenticated link")
            if ev.type == wire.FrameType.APP and ev.body[:1] == bytes([RECEIPT_TAG]):
                self.receipts.on_receipt(
                    ev.body, self.members_part.known_sender, self.members_part.count_others(), events
                )
            elif ev.type == wire.FrameType.APP:
                signal = decode_presence(ev.body)
                if isinstance(signal, TypingSignal):
                    self.presence.on_typing(peer, signal.typing, now, events)
                else:
                    self.timeline.on_seen(peer, signal.seqs, self.members_part.count_others(), events)
            elif ev.type == wire.FrameType.PAIRWISE:
                self._accept_sender_key(SenderKeyMessage.decode(self.links.open(peer, ev.body)), events)
            else:
                raise ProtocolError("unexpected-frame", "frame type not expected here")
        except ProtocolError as exc:
            self._fault(peer, exc.code, now, events)

    def _on_entry(self, entry: LogEntry, now: int, events: list[RoomEvent]) -> None:
        self._persist.envelopes.append(entry)
        env = self._fresh.pop(entry.key, None) or parse_envelope(entry.data)
        if env.kind == Kind.CHAT:
            self.keys.hold_chat(env)
            if self.keeper:
                return
            if self.keys.can_open(env):
                self._open_chat(env, now, events)
            else:
                self.keys.wait(env)
        elif env.kind == Kind.MEMBERSHIP:
            self.members_part.add_op(entry.key, MembershipOp.decode(env.payload))
            self._on_membership(events, now)
        elif env.kind == Kind.SENDER_KEY:
            if not self.keeper:
                self._take_sender_key(env, now, events)
        elif env.kind == Kind.TOMBSTONE:
            expires_at = env.expires_at
            self._apply_unsend(env.sender, decode_tombstone(env.payload), expires_at, entry.data, now, events)

    def _on_membership(self, events: list[RoomEvent], now: int) -> None:
        change = self.members_part.recompute()
        for pid in change.joined:
            events.append(MemberJoined(pid))
            self._give_current_chain(pid, now)
        for pid in change.left:
            events.append(MemberLeft(pid))
            self.keys.forget_sender(pid, self._persist)
            if pid != self.peer_id and self.links.close(pid):
                self.sync.disconnect(
                    pid, now
                )  # a removed member gets nothing more from us, not even ciphertext
        self._known_new += change.joined + change.left
        if change.timer is not None:
            events.append(TimerChanged(change.timer.ttl_s))

    # -- sender keys and chat ------------------------------------------------------------------------

    def _give_current_chain(self, peer: str, now: int) -> None:
        init = self.keys.initial_for_late_joiner(self.members_part.epoch)
        if init is not None:
            self._give_chain(peer, init, now)

    def _give_chain(self, peer: str, initial: SenderChain, now: int) -> None:
        """Hand ``peer`` our chain's initial state: pairwise if linked, and sealed to its prekey in the log."""
        if self.keys.was_given(peer, initial.chain_id) or self.members_part.is_removed(peer):
            return
        skm = self.keys.sender_key_message(initial)
        if self.sync.is_ready(peer):
            frame = self.links.seal(peer, skm)
            if frame is not None:
                self.sync.send_opaque(peer, wire.FrameType.PAIRWISE, frame)
        member = self.members_part.member(peer)
        if member is None:
            return  # not a member yet: it gets the key when its ADD arrives
        sealed = self.keys.seal_for(member.bundle, member.prekey, skm, now)
        self._publish_unchained(Kind.SENDER_KEY, sealed, now)
        self.keys.mark_given(peer, initial.chain_id, self._persist)

    def _take_sender_key(self, env: Envelope, now: int, events: list[RoomEvent]) -> None:
        sender = self.members_part.known_sender(env.sender)
        if sender is None:
            return
        try:
            skm = self.keys.open_sealed(env, sender, now, self._persist)
            if skm is not None:
                self._accept_sender_key(SenderKeyMessage.decode(skm), events)
        except ProtocolError as exc:
            self._fault(env.sender, exc.code, now, events, link=False)

    def _accept_sender_key(self, skm: SenderKeyMessage, events: list[RoomEvent]) -> None:
        if skm.room_id != self.room_id:
            raise ProtocolError("wrong-room", "sender key for another room")
        member = self.members_part.member(skm.sender)
        if member is None:
            raise ProtocolError("not-member", "sender key from a non-member")
        for env in self.keys.accept(skm, member.bundle, self._persist):
            self._open_chat(env, 0, events)

    def _open_chat(self, env: Envelope, now: int, events: list[RoomEvent]) -> None:
        if (env.sender, env.seq) in self.keys.message_keys:
            return
        try:
            plaintext = self.keys.open_chat(env, self._persist)
        except ProtocolError as exc:
            self._fault(env.sender, exc.code, now, events, link=False)
            return
        self._show(env, plaintext, now, events)

    def _show(self, env: Envelope, plaintext: bytes, now: int, events: list[RoomEvent]) -> None:
        try:
            content = decode_content(plaintext)
        except ProtocolError as exc:
            self._fault(env.sender, exc.code, now, events, link=False)
            return
        meta = Meta(env.sender, env.seq, env.lamport, env.sent_at, env.expires_at)
        code = self.timeline.apply(meta, content, events)
        if code is not None:
            self._fault(env.sender, code, now, events, link=False)

    # -- erasing --------------------------------------------------------------------------------------

    def _apply_unsend(
        self, sender: str, seqs: list[int], expires_at: int, proof: bytes, now: int, events: list[RoomEvent]
    ) -> None:
        """Apply a verified TOMBSTONE envelope: tombstone each named key with the envelope as proof."""
        until = self._unsend_until(expires_at)
        for seq in seqs:
            key = (sender, seq)
            held = self.sync.entry(key)
            if held is not None and not self._deletable(held):
                continue
            if self.sync.delete(key, until, proof, now) and held is not None:
                self._erase(key, events, "unsent")

    def _erase(self, key: Key, events: list[RoomEvent], reason: str) -> None:
        """Forget a message in every part: shown message, key, pending copy, chain keys, envelope row."""
        self.timeline.erase(key, reason, events)
        tomb = self.sync.tombstone_of(key)
        self._persist.erased.append((key[0], key[1], tomb.until if tomb is not None else 0))
        if self.keys.erase(key, self._persist):
            self.receipts.owe(*key)
        self.presence.forget(key)

    def _open_restored(self, env: Envelope, message_key: bytes) -> None:
        self.keys.restore_key((env.sender, env.seq), message_key)
        self._show(env, open_with_key(env, message_key), 0, [])
