"""The room coordinator: routes API calls and sync events to the parts that own the state.

Every entry point takes ``now`` (ms) and returns events; ``data_to_send()`` drains what to transmit,
``next_timer()``/``handle_timer(now)`` drive time, ``take_persist()`` drains what must be stored *before*
anything returned by ``data_to_send()`` is transmitted (a chain state is on disk before a key is used).

Parts (each owns its state and says what it persists; see ``docs/architecture.md``): ``links`` (+
``parking``), ``members`` (the one "known sender" rule), ``keys`` (sender keys), ``timeline`` (pure
projection), ``receipts`` (erasure receipts), ``presence`` (typing/seen); the admin and admission
actions are :mod:`governance`'s and the publishing path (our ``seq``) :mod:`publishing`'s (base
classes, as :mod:`inbound` is). The coordinator owns only the envelope-kind dispatch.

Rules that span parts:
- **Joining.** The first time we join we publish a self-ADD op (bundle + signed prekey, MACed with the
  room's member key); with an invite TTL and no room timer yet, a SET_TIMER op too.
- **Validation.** An envelope enters the log only if it parses, is for this room and is signed by its
  sender: a self-ADD against the bundle it carries, anything else against the bundle of a *known
  sender* (``members``). An unknown sender's envelope is parked and offered back once its ADD arrives.
  An envelope is parsed once on the way in (``_validate``) and that parse is reused.
- **Keys.** A new chain goes to every member; a member learned later gets the initial state of every
  live chain of ours; a removal, or a message outside the chain's expiry window, rotates the chain (see
  ``senderkeys``); SENDER_KEY envelopes expire with their chain's window. A keeper never opens anything.
- **Expiry and unsend.** An expired or unsent entry is erased from every part (message, key, pending
  copy, envelope row), a tombstone stays; an unsend is a TOMBSTONE envelope (kind 4) whose bytes are the
  proof ``_authorize_tombstone`` checks. We owe the sender an erasure receipt for each CHAT we erase.
- **Remote errors** are counted per peer and surfaced as :class:`RemoteError`; a link past its budget is
  closed (``take_dead_links``). Never a list.
"""

from __future__ import annotations

from peer.core import wire
from peer.core.chains import ChainPolicy
from peer.core.content import (
    Edit,
    Forwarded,
    Location,
    Profile,
    Reaction,
    Text,
    clean_name,
)
from peer.core.crypto import Rng, default_rng
from peer.core.envelope import (
    HEADER_LEN,
    Envelope,
    Kind,
    encode_tombstone,
    envelope_key,
)
from peer.core.events import (
    MemberOnline,
    Message,
    RemoteError,
    RoomEvent,
)
from peer.core.files import File
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.log import Key, LogEntry
from peer.core.membership import (
    MembershipState,
    OpType,
    make_add,
)
from peer.core.persist import PersistBatch, Snapshot
from peer.core.sync import (
    SyncConfig,
    SyncEngine,
)

from .admission import AddBudget
from .distribution import Distribution
from .keeping import BlobIds, Keeping, KeepNotice
from .links import Links, LinkState
from .members import Members
from .parking import Parking
from .presence import Presence
from .publishing import Publishing
from .receipts import Receipts
from .relay import Hint, Relay
from .restore import restore
from .senderkeys import NEVER, SenderKeys
from .timeline import Timeline, parse_message_id

DEFAULT_TTL_S = 24 * 3600


def _room_state_change(entry: LogEntry) -> bool:
    """Relayed at once even from its author (so an equivocated version meets the other one): an unsend
    or a membership op other than an ADD (a REMOVE, a SET_TIMER). Payload byte 1 is the op type."""
    kind = entry.data[1]
    return kind == Kind.TOMBSTONE or (kind == Kind.MEMBERSHIP and entry.data[HEADER_LEN + 5] != OpType.ADD)


class Room(Publishing):
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
            known_sender=lambda peer: self.members_part.known_sender(peer) is not None,
            eager=_room_state_change,
        )
        self.members_part = Members(self.room_id, invite.member_key, identity.public_bundle(), invite.owner)
        self.links = Links(identity, self.room_id, rng)
        self.parking = Parking()
        self.keys = SenderKeys(identity, self.room_id, chain_policy or ChainPolicy(), rng)
        self.timeline = Timeline(self.peer_id)
        self.receipts = Receipts(identity, self.room_id)
        self.presence = Presence()
        self.relay = Relay(identity, self.room_id)
        self.keeping = Keeping(keeper)
        self._persist = PersistBatch()
        self._fresh: dict[Key, Envelope] = {}  # parsed by _validate, reused by _on_entry (one parse)
        self._known_new: list[str] = []  # senders that just became known: their parked envelopes go back
        self.admission = AddBudget()
        self.distribution = Distribution()
        self._inbound = None
        self._errors: dict[str, dict[str, int]] = {}  # peer -> code -> count (peers: links and members)
        self.errors_total = 0
        states = snapshot.states if snapshot else {}
        self._seq = int(states.get("seq", b"0"))
        self.sync.observe(int(states.get("lamport", b"0")))
        self.keys.load(states, now, self._persist)
        self.relay.load(states)
        self.presence.load(states)
        if snapshot is not None:
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
            if invite.ttl_s and self.members_part.timer is None and self.members_part.is_admin(self.peer_id):
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
        return self.timeline.messages(self.sync.log.order_of)

    def online(self) -> set[str]:
        return {n for n in self.sync.neighbours if self.sync.is_ready(n)}

    def caught_up(self) -> bool:
        """Linked neighbours have all said what they hold and we have fetched what we lacked."""
        return self.sync.caught_up()

    def flushed(self) -> bool:
        """Caught up, and every linked neighbour acknowledged every entry of ours we hold (chat and the
        sender keys sealed to members learned late alike): leaving now strands nothing of ours."""
        return self.sync.caught_up() and all(self.sync.own_unacked(n) == 0 for n in self.online())

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
        self,
        text: str,
        now: int,
        *,
        ttl_s: int | None = None,
        reply_to: str | None = None,
        mentions: list[str] | tuple[str, ...] = (),
    ) -> Message:
        """Seal, sign, log and broadcast a chat message. Its expiry is fixed here and signed.
        ``mentions``: members it mentions (peer ids of current members; duplicates dropped)."""
        wanted = tuple(dict.fromkeys(mentions))
        if any(not self.members_part.is_member(p) for p in wanted):
            raise ValueError("can only mention current members")
        return self._send_message(Text(text, reply_to, wanted), now, self._expiry(now, ttl_s))

    def _expiry(self, now: int, ttl_s: int | None) -> int:
        ttl = ttl_s if ttl_s is not None else self.timer_s
        return NEVER if ttl == 0 else now + ttl * 1000

    def _send_message(self, content: Text | Location, now: int, expires_at: int) -> Message:
        key = self._send_content(content, now, expires_at)
        msg = self.timeline.shown(key)
        assert msg is not None
        self.timeline.track_delivery(msg.id)
        return msg

    def send_file(self, ref: File, now: int, *, ttl_s: int | None = None) -> Message:
        """Send an attachment's content item (its blobs are sealed and stored by the caller first); it
        rides the log like a text: order, expiry, unsend. See :mod:`peer.core.files`."""
        ttl = ttl_s if ttl_s is not None else self.timer_s
        expires_at = NEVER if ttl == 0 else now + ttl * 1000
        msg = self.timeline.shown(self._send_content(ref, now, expires_at))
        assert msg is not None
        self.timeline.track_delivery(msg.id)
        self._send_app(self.keeping.on_sent(msg.seq, ref))
        return msg

    # -- issue 15: location, forward, search, last seen ------------------------------------------------

    def send_location(self, where: Location, now: int, *, ttl_s: int | None = None) -> Message:
        """Share a position (a ``location`` content) as a message."""
        return self._send_message(
            Location(where.lat_e6, where.lon_e6, where.acc_m), now, self._expiry(now, ttl_s)
        )

    def forward(self, source: Message, from_name: str, now: int, *, ttl_s: int | None = None) -> Message:
        """Send ``source`` (a message shown in another room, or this one) here as a new message of ours
        marked forwarded: new keys, and an expiry no later than the source's. ``ValueError`` if the
        source has expired (or is not a forwardable message)."""
        if source.expires_at <= now:
            raise ValueError("cannot forward: that message has expired")
        if source.file is not None:  # its blobs are keyed to the original's message and key
            raise ValueError("cannot forward an attachment without re-sealing it (see forward_file)")
        name = source.forwarded_from if source.forwarded_from is not None else clean_name(from_name)
        fwd = Forwarded(name)
        content: Text | Location
        if source.location is not None:
            content = Location(*source.location, fwd=fwd)
        else:
            content = Text(source.text, fwd=fwd)
        return self._send_message(content, now, min(source.expires_at, self._expiry(now, ttl_s)))

    def forward_expiry(self, source: Message, now: int, *, ttl_s: int | None = None) -> int:
        """When a forward of ``source`` sent now would expire: ``min(source's, now + ttl)``
        (``ValueError`` if the source has expired). The adapter binds a re-sealed file's blobs to it."""
        if source.expires_at <= now:
            raise ValueError("cannot forward: that message has expired")
        return min(source.expires_at, self._expiry(now, ttl_s))

    def forward_file(
        self, source: Message, sealed: File, from_name: str, now: int, *, ttl_s: int | None = None
    ) -> Message:
        """Forward the attachment ``source`` as ``sealed``: the same file re-sealed by the caller under
        a FRESH key (new chunks, manifest and id; PROTOCOL.md "Forwarded attachments"), sent here as a
        new message of ours marked forwarded, expiring no later than the source. ``ValueError`` if the
        source has expired, is not an attachment, or ``sealed`` reuses its key or is another file."""
        expires_at = self.forward_expiry(source, now, ttl_s=ttl_s)
        ref = source.file
        if ref is None:
            raise ValueError("cannot forward: that message is not an attachment")
        if sealed.key == ref.key or sealed.manifest == ref.manifest:
            raise ValueError("cannot forward: an attachment must be re-sealed under a fresh key")
        if (sealed.name, sealed.size, sealed.mime) != (ref.name, ref.size, ref.mime):
            raise ValueError("cannot forward: the re-sealed file is not the original's")
        name = source.forwarded_from if source.forwarded_from is not None else clean_name(from_name)
        content = File(
            sealed.name, sealed.size, sealed.mime, sealed.manifest, sealed.key, forwarded_from=name
        )
        msg = self.timeline.shown(self._send_content(content, now, expires_at))
        assert msg is not None
        self.timeline.track_delivery(msg.id)
        self._send_app(self.keeping.on_sent(msg.seq, content))
        return msg

    # -- keepers hold attachments (.keeping) -----------------------------------------------------------

    def set_keep_files(self, on: bool) -> None:
        """A keeper: hold attachments (announce KEEPER on links that become ready from now on)."""
        self.keeping.holds_files = on and self.keeper

    def set_blob_ids(self, lookup: BlobIds) -> None:
        """A member: how to learn the blob ids (index blobs and chunks) of a file of ours from its manifest
        id (None: we do not hold it whole), for the KEEP_FILE offers to keepers. See :mod:`.keeping`."""
        self.keeping.blob_ids = lookup

    def take_kept(self) -> list[KeepNotice]:
        """A keeper: the files authors offered it (fetch and hold them) and those whose message was
        erased since (erase them), in order; empty for a member. See :mod:`.keeping`."""
        return self.keeping.take()

    def message(self, msg_id: str) -> Message | None:
        """A message as shown here now (None once it expired, was unsent, or never arrived)."""
        key = parse_message_id(msg_id)
        return self.timeline.shown(key) if key is not None else None

    def search(self, query: str) -> list[Message]:
        """The messages shown here whose text matches every word of ``query``, in room order (memory only;
        an erased message is gone from the results at once). ``ValueError`` past the query bounds."""
        keys = self.timeline.search_keys(query)
        return [m for m in self.messages() if (m.sender, m.seq) in keys]

    def last_seen(self, now: int) -> dict[str, int]:
        """Member -> when we last saw it online (ms), for members offline now, within the room timer;
        empty while we opt out (see :meth:`set_share_last_seen`)."""
        horizon = self.timer_s * 1000 if self.timer_s else None
        members = self.membership.members
        seen = self.presence.last_seen(now, self.online(), horizon)
        return {p: t for p, t in seen.items() if p in members}

    @property
    def share_last_seen(self) -> bool:
        return self.presence.share_last_seen

    def set_share_last_seen(self, share: bool, now: int) -> None:
        """Opt in or out (this room only) of members showing when they last saw us."""
        for peer, body in self.presence.set_share(share, self.online(), self._persist):
            self.sync.send_opaque(peer, wire.FrameType.APP, body)

    def set_profile(self, name: str, now: int) -> list[RoomEvent]:
        """Publish our display name in this room (room state: it does not expire)."""
        events: list[RoomEvent] = []
        self._send_content(Profile(clean_name(name)), now, NEVER, events)
        return events

    def edit(self, msg_id: str, body: str, now: int) -> Message:
        """Replace the body of one of our own messages, for everyone; the edit expires with it."""
        target = self.timeline.base(parse_message_id(msg_id) or ("", -1))
        if target is None or target.sender != self.peer_id or target.location is not None:
            raise ValueError("can only edit our own text messages that are still here")
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
        # the unsend names our own edits and reactions of it too: they go everywhere with it, keepers
        # included (members erase everyone's edits/reactions of an erased message by rule anyway)
        seqs = [key[1]] + [
            q for s, q in self.timeline.referring(key) if s == self.peer_id and self.sync.entry((s, q))
        ]
        published = self._publish_unchained(
            Kind.TOMBSTONE, encode_tombstone(seqs), now, expires_at=expires_at
        )
        events: list[RoomEvent] = []
        self._apply_unsend(self.peer_id, seqs, expires_at, published.data, now, events)
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

    # -- public API: signaling through the mesh (see .relay) -------------------------------------------

    def enable_reach(self, hints: list[Hint], now: int) -> None:
        """Announce our linked members and ``hints`` (``(kind, url)``, e.g. ``("server", url)``) to linked
        members, now and whenever our links change; relaying works whether or not this is on."""
        self.relay.enable(hints, now)

    def relay_signal(self, to: str, payload: str, now: int) -> bool:
        """Send a sealed signaling payload for ``to`` through linked members; False if there is none."""
        if self.members_part.is_removed(to):
            return False
        out = self.relay.originate(to, payload, self.online(), now)
        self._send_app(out)
        return bool(out)

    def take_relayed(self) -> list[tuple[str, str]]:
        """Signaling payloads relayed to us: ``(claimed sender, payload)``, to open like the server's."""
        return self.relay.take_relayed()

    def reachable(self, now: int) -> list[str]:
        """Members that linked members announce (fresh) and that we are not linked with."""
        return self.relay.reachable(self.online(), self.members_part.is_member, now)

    def reach_hints(self) -> list[str]:
        """Signaling server URLs learned from members (persisted; newest first)."""
        return self.relay.reach_hints()

    @property
    def reach_changes(self) -> int:
        """A counter that moves whenever the announcements held change (:meth:`reachable` may differ)."""
        return self.relay.changes

    # -- public API: links and pumping -----------------------------------------------------------------

    def link_up(self, peer: str, now: int) -> None:
        self.links.up(peer, self.members_part.link_bundle(peer))

    def link_down(self, peer: str, now: int) -> list[RoomEvent]:
        had = self.links.down(peer)
        was_online = self.sync.is_ready(peer)
        if had and was_online:
            self.presence.on_offline(peer, now)
        self.sync.disconnect(peer, now)
        self.parking.drop_neighbour(peer)
        self.relay.drop_neighbour(peer)
        self.keeping.on_down(peer)
        self._send_app(self.relay.on_links(self.online(), now))
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
        self._inbound = (peer, now)  # the admission budget charges new self-ADDs to ``peer``
        try:
            events = self._route(self.sync.receive(peer, data, now), now)
        finally:
            self._inbound = None
        return self._settle(events, now)

    def data_to_send(self) -> list[tuple[str, bytes]]:
        known = {p for p in self.membership.members} | set(self.membership.removed)
        for sender, body in self.receipts.flush(known, self.online()):
            self.sync.send_opaque(sender, wire.FrameType.APP, body)
        return self.links.take_outbox() + self.sync.data_to_send()

    def next_timer(self) -> int | None:
        times = [
            self.sync.next_timer(),
            self.presence.next_deadline(),
            self.parking.next_deadline(),
            self.keys.prekey_deadline(member=self.members_part.is_member(self.peer_id)),
            self.distribution.next_deadline(),
            self.keys.rx_deadline(),
            self.relay.next_deadline(),
        ]
        return min((t for t in times if t is not None), default=None)

    def handle_timer(self, now: int) -> list[RoomEvent]:
        events = self._route(self.sync.handle_timer(now), now)
        self.presence.expire(now, events)
        self.parking.expire(now)
        self._serve_waiting(now)
        self.keys.expire_rx(now, self._persist)
        self._rotate_prekey(now, events)
        events = self._settle(events, now)
        self._send_app(self.relay.tick(now))
        return events

    def take_persist(self) -> PersistBatch:
        batch, self._persist = self._persist, PersistBatch()
        if batch:
            batch.states.setdefault("lamport", str(self.sync.lamport).encode())
        return batch
