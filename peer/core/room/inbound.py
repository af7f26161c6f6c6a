"""The receive side of the room coordinator: validation, routing of sync events to the parts, and the
flows that span parts (membership changes, sender-key hand-over, opening and erasing messages).

A base class of :class:`peer.core.room.room.Room` (through :mod:`publishing` and :mod:`governance`), which provides the attributes declared below.
"""

from __future__ import annotations

from collections.abc import Iterable

from peer.core import wire
from peer.core.chains import SenderChain, SenderKeyMessage
from peer.core.content import Edit, Location, Text, decode_content
from peer.core.envelope import Envelope, Kind, decode_tombstone, envelope_key, parse_envelope, verify_envelope
from peer.core.erasure import RECEIPT_TAG
from peer.core.errors import ProtocolError
from peer.core.events import (
    AdmissionChanged,
    MemberJoined,
    MemberLeft,
    MemberOnline,
    RemoteError,
    RolesChanged,
    RoomEvent,
    TimerChanged,
)
from peer.core.files import File
from peer.core.identity import PublicBundle
from peer.core.log import Key, LogEntry, Tombstone
from peer.core.membership import MembershipOp, OpType
from peer.core.persist import PersistBatch
from peer.core.presence import LastSeenSignal, TypingSignal, decode_presence
from peer.core.sync import (
    Acked,
    EntryAdded,
    EntryDeleted,
    EntryExpired,
    EntryVoided,
    EnvelopeRefused,
    NeighbourReady,
    NeighbourTimedOut,
    OpaqueFrame,
    ProtocolErrorEvent,
    SyncEngine,
)

from .admission import AddBudget
from .distribution import Distribution
from .keeping import KEEP_FILE_TAG, KEEPER_TAG, Keeping
from .links import Links
from .members import Members
from .parking import Parking
from .presence import Presence
from .receipts import Receipts
from .relay import REACH_TAG, RELAY_TAG, Relay
from .senderkeys import NEVER, SenderKeys, open_with_key
from .timeline import Meta, Timeline


class Inbound:
    room_id: str
    peer_id: str
    keeper: bool
    sync: SyncEngine
    members_part: Members
    links: Links
    parking: Parking
    admission: AddBudget
    distribution: Distribution
    _inbound: tuple[str, int] | None  # (neighbour, now) of the frame being received, else None
    keys: SenderKeys
    timeline: Timeline
    keeping: Keeping
    receipts: Receipts
    presence: Presence
    relay: Relay
    errors_total: int
    _persist: PersistBatch
    _fresh: dict[Key, Envelope]
    _known_new: list[str]
    _errors: dict[str, dict[str, int]]

    def _on_presence_online(self, peer: str, now: int) -> None:
        """A link became ready: our last-seen preference goes on it (only while we opt out)."""
        for to, body in self.presence.on_online(peer):
            self.sync.send_opaque(to, wire.FrameType.APP, body)

    def _publish_unchained(
        self, kind: Kind, payload: bytes, now: int, *, expires_at: int = NEVER
    ) -> LogEntry:
        raise NotImplementedError

    def online(self) -> set[str]:
        raise NotImplementedError

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
            if not self_add:
                self.members_part.check_placement(env.sender, env.lamport)
            elif self._inbound is not None and self.members_part.known_sender(op.author) is None:
                neighbour, now = self._inbound  # a new identity: charged before any signature check
                if not self.admission.charge(neighbour, now):
                    raise ProtocolError("add-budget", "too many new members from this neighbour")
            key = op.bundle.ed25519 if self_add else self._known(env.sender).ed25519
        else:
            # an unsend travels as a tombstone proof too: bounded, and only earlier seqs of its own sender
            if env.kind == Kind.TOMBSTONE and (
                len(data) > wire.MAX_PROOF or any(q >= env.seq for q in decode_tombstone(env.payload))
            ):
                raise ProtocolError("bad-tombstone", "unsend too large or naming a later seq")
            self.members_part.check_placement(env.sender, env.lamport)
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
            known = self._known_new.pop(0)
            for neighbour, data in self.parking.take(known):
                self._inbound = (neighbour, now)
                events += self._route(self.sync.offer(neighbour, data, now), now)
            held = self.relay.take_pending(known)
            if held is not None and self.links.is_ready(held[0]):
                self._on_relay_frame(held[0], held[1], now, events)
        self._inbound = None
        self._fresh.clear()
        self._send_app(self.relay.on_links(self.online(), now))
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
            elif isinstance(ev, EntryVoided):  # the author signed two versions: neither counts
                self._erase(ev.key, events, "equivocation")
                if self.members_part.forget_op(ev.key):
                    self._on_membership(events, now)
                self._fault(ev.key[0], "equivocation", now, events, link=False)
            elif isinstance(ev, Acked):
                self.timeline.on_ack(ev.neighbour, ev.sender, ev.seq, events)
            elif isinstance(ev, NeighbourReady):
                events.append(MemberOnline(ev.neighbour, True))
                self.distribution.drop(ev.neighbour)  # linked: served at once
                self._give_live_chains(ev.neighbour, now)
                self._on_presence_online(ev.neighbour, now)
                self._send_app(self.keeping.on_ready(ev.neighbour))
            elif isinstance(ev, NeighbourTimedOut):
                self.links.close(ev.neighbour)
                self.keeping.on_down(ev.neighbour)
                self.parking.drop_neighbour(ev.neighbour)
                events.append(MemberOnline(ev.neighbour, False))
            elif isinstance(ev, OpaqueFrame):
                self._on_opaque(ev, now, events)
            elif isinstance(ev, EnvelopeRefused) and ev.code == "unknown-sender":
                self.parking.park(ev.neighbour, envelope_key(ev.data)[0], ev.data, now)
            elif isinstance(ev, EnvelopeRefused) and ev.code == "add-budget":  # paced, not blamed
                self._fault(ev.neighbour, ev.code, now, events, link=False)
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
            if ev.type == wire.FrameType.APP and ev.body[:1] in (bytes([RELAY_TAG]), bytes([REACH_TAG])):
                self._on_relay_frame(peer, ev.body, now, events)
            elif ev.type == wire.FrameType.APP and ev.body[:1] in (
                bytes([KEEPER_TAG]),
                bytes([KEEP_FILE_TAG]),
            ):
                self._on_keep_frame(peer, ev.body, now)
            elif ev.type == wire.FrameType.APP and ev.body[:1] == bytes([RECEIPT_TAG]):
                self.receipts.on_receipt(
                    ev.body, self.members_part.known_sender, self.members_part.count_others(), events
                )
            elif ev.type == wire.FrameType.APP:
                signal = decode_presence(ev.body)
                if isinstance(signal, TypingSignal):
                    self.presence.on_typing(peer, signal.typing, now, events)
                elif isinstance(signal, LastSeenSignal):
                    self.presence.on_share(peer, signal.share)
                else:
                    self.timeline.on_seen(peer, signal.seqs, self.members_part.count_others(), events)
            elif ev.type == wire.FrameType.PAIRWISE:
                skm = SenderKeyMessage.decode(self.links.open(peer, ev.body))
                # not a member yet: its ADD is on its way, the copy sealed to our prekey follows it in the
                # log; a keeper never opens anything, so it keeps no receiver chain either
                if self.members_part.is_member(skm.sender) and not self.keeper:
                    self._accept_sender_key(skm, events)
            else:
                raise ProtocolError("unexpected-frame", "frame type not expected here")
        except ProtocolError as exc:
            self._fault(peer, exc.code, now, events)

    def _on_relay_frame(self, peer: str, body: bytes, now: int, events: list[RoomEvent]) -> None:
        """RELAY / REACH (see :mod:`.relay`): blamed errors raise; paced refusals count unblamed."""
        online = self.online()
        if body[0] == RELAY_TAG:  # else REACH_TAG
            out, refused = self.relay.on_relay(peer, body, online, self.members_part.is_removed, now)
        else:
            out, refused = self.relay.on_reach(peer, body, online, self._member_bundle, now, self._persist)
        self._send_app(out)
        if refused is not None:
            self._fault(peer, refused, now, events, link=False)

    def _on_keep_frame(self, peer: str, body: bytes, now: int) -> None:
        """KEEPER / KEEP_FILE (see :mod:`.keeping`); a malformed body raises (blamed)."""
        if body[0] == KEEPER_TAG:
            own = sorted(
                (
                    (m.seq, m.file)
                    for m in self.timeline.messages()
                    if m.sender == self.peer_id and m.file is not None and m.expires_at > now
                ),
                key=lambda x: x[0],
            )
            self._send_app(self.keeping.on_keeper(peer, body, own))
        else:
            self.keeping.on_keep_file(peer, body, lambda key: self._live_chat_expiry(key, now))

    def _live_chat_expiry(self, key: Key, now: int) -> int | None:
        entry = self.sync.entry(key)
        if entry is None or entry.expires_at <= now or parse_envelope(entry.data).kind != Kind.CHAT:
            return None
        return entry.expires_at

    def _member_bundle(self, peer: str) -> PublicBundle | None:
        return self.members_part.known_sender(peer) if self.members_part.is_member(peer) else None

    def _send_app(self, frames: list[tuple[str, bytes]]) -> None:
        for neighbour, body in frames:
            if self.sync.is_ready(neighbour):
                self.sync.send_opaque(neighbour, wire.FrameType.APP, body)

    def _on_entry(self, entry: LogEntry, now: int, events: list[RoomEvent]) -> None:
        self._persist.envelopes.append(entry)
        env = self._fresh.pop(entry.key, None) or parse_envelope(entry.data)
        if env.kind == Kind.CHAT:
            self.keys.hold_chat(env)
            if self.keeper:
                self.keeping.on_chat(entry.key, entry.expires_at)
                return
            if self.keys.can_open(env):
                self._open_chat(env, now, events)
            else:
                self.keys.wait(env)
        elif env.kind == Kind.MEMBERSHIP:
            op = MembershipOp.decode(env.payload)
            self.members_part.add_op(entry.key, op)
            self._on_membership(events, now)
            if op.op == OpType.ADD:
                return  # an ADD alone does not show life (see ``distribution``)
        elif env.kind == Kind.SENDER_KEY:
            if not self.keeper:
                self._take_sender_key(env, now, events)
        elif env.kind == Kind.TOMBSTONE:
            expires_at = env.expires_at
            self._apply_unsend(env.sender, decode_tombstone(env.payload), expires_at, entry.data, now, events)
        self.distribution.shown_life(env.sender)

    def _on_membership(self, events: list[RoomEvent], now: int) -> None:
        change = self.members_part.recompute()
        for pid in change.joined:
            events.append(MemberJoined(pid))
            self._offer_chains(pid, now)
        for pid in change.left:
            events.append(MemberLeft(pid))
            self.distribution.drop(pid)
            self.keys.forget_sender(pid, self._persist)
            self.relay.forget(pid)
            if pid != self.peer_id and self.links.close(pid):
                self.sync.disconnect(
                    pid, now
                )  # a removed member gets nothing more from us, not even ciphertext
        self._known_new += change.joined + change.left
        if change.timer is not None:
            events.append(TimerChanged(change.timer.ttl_s))
        if change.roles:
            state = self.members_part.state
            events.append(RolesChanged(state.owner, self.members_part.admins(), state.announce))
        if change.admission:
            state = self.members_part.state
            events.append(AdmissionChanged(state.closed, self.members_part.requests()))

    # -- sender keys and chat ------------------------------------------------------------------------

    def _offer_chains(self, peer: str, now: int) -> None:
        """``peer`` is owed our live chains: at once if linked, else paced (``distribution``)."""
        if self.sync.is_ready(peer) or self.distribution.offer(peer, now):
            self._give_live_chains(peer, now)

    def _serve_waiting(self, now: int) -> None:
        """Members whose chains waited for the distribution window (``handle_timer``)."""
        for peer in self.distribution.due(now):
            if self.members_part.is_member(peer) and not self.members_part.is_removed(peer):
                self._give_live_chains(peer, now)

    def _give_live_chains(self, peer: str, now: int) -> None:
        """Every live chain of ours (its messages are in the log) to a member we learned late."""
        for init, _ in self.keys.initials_for_late_joiner(self.members_part.epoch, now):
            self._give_chain(peer, init, now)

    def _give_chain(self, peer: str, initial: SenderChain, now: int) -> None:
        """Hand ``peer`` our chain's initial state: pairwise if linked, and sealed to its prekey in the log."""
        if self.keys.was_given(peer, initial.chain_id) or self.members_part.is_removed(peer):
            return
        if self.members_part.state.closed and not self.members_part.is_member(peer):
            return  # a closed room: a linked non-member (a join request) gets nothing until admitted
        skm = self.keys.sender_key_message(initial)
        if self.sync.is_ready(peer):
            frame = self.links.seal(peer, skm)
            if frame is not None:
                self.sync.send_opaque(peer, wire.FrameType.PAIRWISE, frame)
        member = self.members_part.member(peer)
        if member is None:
            return  # not a member yet: it gets the key when its ADD arrives
        sealed = self.keys.seal_for(member.bundle, member.prekey, skm, now)
        expires_at = self.keys.sender_key_expiry_of(initial.chain_id)  # erased with the chain's window
        self._publish_unchained(Kind.SENDER_KEY, sealed, now, expires_at=expires_at)
        self.keys.mark_given(peer, initial.chain_id, self._persist)

    def _take_sender_key(self, env: Envelope, now: int, events: list[RoomEvent]) -> None:
        sender = self.members_part.known_sender(env.sender)
        if sender is None:
            return
        try:
            opened = self.keys.open_sealed(env, sender, now, self._persist)
            if opened is not None:
                skm = SenderKeyMessage.decode(opened)
                self._accept_sender_key(skm, events)
                # the chain's receiver state goes when its SENDER_KEY envelopes do (its window ended)
                self.keys.expire_rx_at(skm.sender, skm.chain_id, env.expires_at, self._persist)
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
        if isinstance(content, Text | Edit | Location | File) and not self.members_part.may_post(
            env.sender, env.lamport
        ):
            return  # announcement mode: a non-admin's message after the switch is not shown
        meta = Meta(env.sender, env.seq, env.lamport, env.sent_at, env.expires_at)
        code = self.timeline.apply(meta, content, events)
        if code is not None:
            self._fault(env.sender, code, now, events, link=False)
            return
        target = self.timeline.target_key((env.sender, env.seq))
        if target is not None and self.sync.tombstone_of(target) is not None:
            self._erase_referring(target, events)  # it refers to a message already erased here

    # -- erasing --------------------------------------------------------------------------------------

    def _apply_unsend(
        self, sender: str, seqs: list[int], expires_at: int, proof: bytes, now: int, events: list[RoomEvent]
    ) -> None:
        """Apply a verified TOMBSTONE envelope: tombstone each named key with the envelope as proof."""
        until = self._unsend_until(expires_at)
        for seq in sorted(seqs, reverse=True):  # edits/reactions before the message they refer to
            key = (sender, seq)
            held = self.sync.entry(key)
            if held is not None and not self._deletable(held):
                continue
            if self.sync.delete(key, until, proof, now) and held is not None:
                self._erase(key, events, "unsent")

    def _erase(self, key: Key, events: list[RoomEvent], reason: str) -> None:
        """Forget a message in every part: shown message, key, pending copy, chain keys, envelope row;
        and every edit or reaction that refers to it (whoever wrote them)."""
        self._erase_referring(key, events)
        self.timeline.erase(key, reason, events)
        self.keeping.erased(key, reason)
        tomb = self.sync.tombstone_of(key)
        self._persist.erased.append((key[0], key[1], tomb.until if tomb is not None else 0))
        if self.keys.erase(key, self._persist):
            self.receipts.owe(*key)
        self.presence.forget(key)

    def _erase_referring(self, key: Key, events: list[RoomEvent]) -> None:
        """Erase, here, the edits and reactions that refer to the erased message ``key``: every member
        applies the same rule, so none keeps an edit's text or key past its message. The local tombstone
        (not relayed: others erase by the same rule) keeps sync from fetching them back."""
        for aux in self.timeline.referring(key):
            held = self.sync.entry(aux)
            if held is not None:
                self.sync.restore_tombstone(aux, held.expires_at + self.sync.skew_ms)
            if held is not None or self.keys.is_chat(aux) or aux in self.keys.message_keys:
                self._erase(aux, events, "unsent")
            else:
                self.timeline.erase(aux, "unsent", events)

    def _open_restored(self, env: Envelope, message_key: bytes) -> None:
        self.keys.restore_key((env.sender, env.seq), message_key)
        self._show(env, open_with_key(env, message_key), 0, [])
