"""The room: ties identity, membership, sender chains, envelopes and sync into one sans-IO object.

Every entry point takes ``now`` (ms) and returns events; ``data_to_send()`` drains what to transmit,
``next_timer()``/``handle_timer(now)`` drive time, ``take_persist()`` drains what must be stored *before*
anything returned by ``data_to_send()`` is transmitted (a chain state is on disk before a key is used).

Rules:
- **Links.** ``link_up(peer)`` starts a pairwise handshake (HANDSHAKE frames: hello, then finish over a
  signed transcript). Only when the peer's finish verifies is the sync session started (its HELLO is the
  first sync frame). A link whose handshake fails, or whose bundle we do not know, is reported by
  ``take_dead_links()`` and closed by the adapter.
- **Joining.** The first time we join a room we publish a self-ADD membership op (our bundle and a
  signed prekey, MACed with the room's member key) as a MEMBERSHIP envelope; if the invite carries a
  TTL and the room has no timer yet, a SET_TIMER op too. Membership state is recomputed from every
  MEMBERSHIP envelope in the log in canonical order, so every member agrees.
- **Validation.** An envelope is accepted into the log only if it parses, is for this room and is signed
  by its sender: a self-ADD op is checked against the bundle it carries, anything else against the
  sender's bundle from membership. Unknown senders are a protocol error (the envelope is re-asked later,
  after the sender's ADD has arrived).
- **Sender keys.** Each member sends with its own chain. A chain's *initial* state goes to every member:
  over the pairwise session to neighbours whose handshake is done, and sealed to the member's prekey in a
  SENDER_KEY envelope (buffered by everyone) for the others. Members learned later get the same initial
  state, so they read the whole current chain. A chain rotates after ``ChainPolicy`` limits and whenever
  the membership epoch changes (a removal): the removed member never receives the new chain.
- **Messages.** CHAT envelopes are opened with the sender's receiver chain; the per-message key is kept
  (persisted) until the message expires, so history survives a restart; envelopes whose chain has not
  arrived yet wait in ``pending``. Plaintext is never persisted. A keeper (``keeper=True``) never opens
  anything: it only stores and serves ciphertext.
- **Expiry.** Entries expire at their signed ``expires_at`` (the log's timer); the message, its key, its
  envelope (also a keeper's buffered copy) and any pending copy are erased, a tombstone remains until
  ``expires_at + skew``. A snapshot entry already expired (or tombstoned) at restore time is erased, never
  shown. Our own chain's stored *initial* state is advanced past erased messages, so it cannot re-derive
  their keys.
- **Unsend.** ``unsend(msg_id, now)`` publishes a TOMBSTONE envelope (kind 4) signed by the sender naming
  seqs of its own earlier CHAT messages (each ``seq < envelope seq``); its ``expires_at`` is the latest
  expiry among them. Every member applying it tombstones those keys with the envelope as the *proof*
  (``authorize_tombstone`` re-verifies it), so the sync layer also carries the deletion as a TOMBSTONES
  frame and answers any stale copy with it. A proof not signed by the messages' sender is refused.
- **Erasure receipts.** A member that erases another member's CHAT message (expiry or unsend) sends that
  sender a signed :class:`ErasureReceipt` in an APP frame when it is next linked to it; the sender emits
  :class:`MessageErased` ("erased on N of M").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from peer.core import wire
from peer.core.chains import ChainPolicy, ReceiverChain, SenderChain, SenderKeyMessage
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
from peer.core.crypto import aead_open, b64u_decode, b64u_encode
from peer.core.envelope import (
    Envelope,
    Kind,
    decode_tombstone,
    encode_tombstone,
    envelope_key,
    message_key_to_aead_key,
    parse_envelope,
    seal_envelope,
    seal_unchained_envelope,
    verify_envelope,
)
from peer.core.erasure import MAX_RECEIPT_SEQS, RECEIPT_TAG, ErasureReceipt
from peer.core.errors import ProtocolError
from peer.core.events import (
    Delivered,
    MemberJoined,
    MemberLeft,
    MemberOnline,
    Message,
    MessageErased,
    MessageExpired,
    MessageReceived,
    MessageSeen,
    MessageUpdated,
    ProfileChanged,
    RoomEvent,
    TimerChanged,
    Typing,
)
from peer.core.handshake import (
    Handshake,
    PairwiseSession,
    PrekeyPrivate,
    SignedPrekey,
    generate_prekey,
    open_from_prekey,
    open_pairwise,
    seal_pairwise,
    seal_to_prekey,
)
from peer.core.identity import Identity, PublicBundle
from peer.core.ids import message_id
from peer.core.invite import Invite
from peer.core.log import Key, LogEntry, Tombstone
from peer.core.membership import (
    MembershipOp,
    MembershipState,
    OpType,
    make_add,
    make_remove,
    make_set_timer,
)
from peer.core.presence import (
    TYPING_RENEW_MS,
    TYPING_TTL_MS,
    TypingSignal,
    decode_presence,
    encode_seen,
    encode_typing,
)
from peer.core.sync import (
    Acked,
    EntryAdded,
    EntryDeleted,
    EntryExpired,
    NeighbourReady,
    NeighbourTimedOut,
    OpaqueFrame,
    ProtocolErrorEvent,
    SyncConfig,
    SyncEngine,
)

DEFAULT_TTL_S = 24 * 3600
#: expires_at of room-state envelopes and ttl-0 messages: far future (year ~144,000) yet small enough that
#: ``NEVER + skew`` still fits the sync wire's integers (<= 2**53 - 1), so such a message can be unsent.
NEVER = 2**52
HS_HELLO = 1
HS_FINISH = 2
PAIRWISE_AAD = b"ephemesh-v1 pairwise sender-key"
PARK_PER_SENDER = 256  # envelopes held per unknown sender while its ADD is on its way
PARK_TOTAL = 2048
PARK_MS = 30_000
PREKEY_AAD = b"ephemesh-v1 prekey sender-key"


__all__ = [
    "MAX_RECEIPT_SEQS",
    "RECEIPT_TAG",
    "Delivered",
    "ErasureReceipt",
    "MemberJoined",
    "MemberLeft",
    "MemberOnline",
    "Message",
    "MessageErased",
    "MessageExpired",
    "MessageReceived",
    "PersistBatch",
    "Room",
    "RoomEvent",
    "Snapshot",
    "TimerChanged",
]


# -- persistence (the adapter does the I/O) ----------------------------------------------------------


@dataclass
class PersistBatch:
    envelopes: list[LogEntry] = field(default_factory=list)
    erased: list[tuple[str, int, int]] = field(default_factory=list)  # sender, seq, tombstone until
    message_keys: list[tuple[str, int, int, bytes]] = field(default_factory=list)
    states: dict[str, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.envelopes or self.erased or self.message_keys or self.states)


@dataclass
class Snapshot:
    """What the store hands back on restart."""

    envelopes: list[LogEntry] = field(default_factory=list)
    tombstones: list[tuple[str, int, int]] = field(default_factory=list)
    message_keys: dict[tuple[str, int], bytes] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Link:
    handshake: Handshake | None
    session: PairwiseSession | None = None
    hello_sent: bool = False


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
    ) -> None:
        self.identity = identity
        self.invite = invite
        self.room_id = invite.room_id
        self.peer_id = identity.peer_id
        self.keeper = keeper
        self.policy = chain_policy or ChainPolicy()
        self.sync = SyncEngine(
            self.peer_id,
            self.room_id,
            self._validate,
            config=sync_config,
            authorize_tombstone=self._authorize_tombstone,
            peek_key=envelope_key,
        )
        self.membership = MembershipState(self.room_id)
        self.bundles: dict[str, PublicBundle] = {self.peer_id: identity.public_bundle()}
        self._ops: dict[Key, MembershipOp] = {}
        self._links: dict[str, _Link] = {}
        self._outbox: list[tuple[str, bytes]] = []
        self._dead: list[str] = []
        self._persist = PersistBatch()
        self._messages: dict[Key, Message] = {}  # as shown (edits and reactions applied)
        self._base: dict[Key, Message] = {}  # as first sent
        self._aux: dict[Key, tuple[int, Edit | Reaction]] = {}  # edit/reaction envelopes: lamport, content
        self._aux_target: dict[Key, Key] = {}
        self._aux_by_target: dict[Key, set[Key]] = {}
        self._profiles: dict[str, tuple[int, int, str]] = {}  # peer -> (lamport, seq, name)
        self._typing: dict[str, int] = {}  # peer -> typing indicator valid until
        self._unknown: list[tuple[str, bytes]] = []  # envelopes _validate refused as unknown, in order
        self._parked: dict[str, list[tuple[int, str, bytes]]] = {}  # sender -> (when, via, envelope)
        self._typing_sent: tuple[bool, int] = (False, 0)
        self._seen_sent: set[Key] = set()
        self._seen_out: dict[str, list[int]] = {}
        self._seen_by: dict[int, set[str]] = {}
        self._keys: dict[Key, bytes] = {}
        self._rx: dict[tuple[str, bytes], ReceiverChain] = {}
        self._pending: dict[tuple[str, bytes], list[Envelope]] = {}
        self._delivered: dict[str, set[str]] = {}
        self._seen_prekey_msgs: set[bytes] = set()
        self._chain_given: dict[bytes, set[str]] = {}  # chain id -> members it was given to
        self._chat_pos: dict[Key, tuple[bytes, int]] = {}  # held CHAT key -> (chain id, chain index)
        self._receipts_out: dict[str, set[int]] = {}  # sender -> seqs we erased, not yet reported
        self._erased_by: dict[int, set[str]] = {}  # own CHAT seq -> members that reported erasing it
        self.protocol_errors: list[tuple[str, str]] = []
        states = snapshot.states if snapshot else {}
        self._seq = int(states.get("seq", b"0"))
        self.sync.clock.observe(int(states.get("lamport", b"0")))
        self._chain: SenderChain | None = (
            SenderChain.from_bytes(states["chain/own"]) if "chain/own" in states else None
        )
        self._chain_initial: SenderChain | None = (
            SenderChain.from_bytes(states["chain/initial"]) if "chain/initial" in states else None
        )
        for name, value in states.items():
            if name.startswith("chain/rx/"):
                rx = ReceiverChain.from_bytes(value)
                self._rx[(rx.sender, rx.chain_id)] = rx
            elif name.startswith("chain/given/"):
                self._chain_given[bytes.fromhex(name[len("chain/given/") :])] = set(json.loads(value))
        if "prekey" in states:
            raw = states["prekey"]
            self._prekey = PrekeyPrivate(raw[:32], SignedPrekey.from_bytes(raw[32:]))
        else:
            self._prekey = generate_prekey(identity, now)
            self._persist.states["prekey"] = self._prekey.private + self._prekey.signed.to_bytes()
        self._seen_prekey_msgs = {b64u_decode(x) for x in json.loads(states.get("prekey/seen", b"[]"))}
        if snapshot is not None:
            self._restore(snapshot, now)
        if self.peer_id not in self.membership.members:
            self._publish_unchained(
                Kind.MEMBERSHIP,
                make_add(
                    identity,
                    invite.member_key,
                    self.room_id,
                    self.sync.clock.tick(),
                    identity.public_bundle(),
                    self._prekey.signed,
                ).encode(),
                now,
            )
            if invite.ttl_s and self.membership.timer is None:
                self.set_timer(invite.ttl_s, now)

    # -- restore -------------------------------------------------------------------------------------

    def _restore(self, snap: Snapshot, now: int) -> None:
        """Resume from the store. Anything expired or deleted by now is erased (and reported), never shown."""
        log = self.sync.log
        entries = sorted(snap.envelopes, key=lambda e: e.order_key)
        for entry in entries:
            env = parse_envelope(entry.data)
            if env.kind == Kind.MEMBERSHIP:
                self._ops[entry.key] = MembershipOp.decode(env.payload)
        self._recompute_membership(events=None)
        # unsends first, with their proof, so a restored member still answers stale copies with them
        state_keys = {e.key for e in entries if parse_envelope(e.data).kind != Kind.CHAT}
        for entry in entries:
            env = parse_envelope(entry.data)
            if env.kind == Kind.TOMBSTONE and entry.expires_at > now:
                for seq in decode_tombstone(env.payload):
                    if (env.sender, seq) not in state_keys:  # room state is never unsent
                        log.tombstone((env.sender, seq), self._unsend_until(env), entry.data)
        for sender, seq, until in snap.tombstones:
            if until > now:
                log.tombstone((sender, seq), until)
                if sender != self.peer_id:  # erased (or never held) here: (re)report it, the sender dedupes
                    self._receipts_out.setdefault(sender, set()).add(seq)
        restored: set[Key] = set()
        for entry in entries:
            env = parse_envelope(entry.data)
            if env.kind == Kind.CHAT and env.sender == self.peer_id:
                self._erased_by.setdefault(env.seq, set())
            if not log.add(entry, now):
                self._erase_at_restore(entry, env, now)
                continue
            restored.add(entry.key)
            self.sync.clock.observe(entry.lamport)
            if env.kind == Kind.CHAT:
                self._chat_pos[entry.key] = (env.chain_id, env.chain_index)
            key = snap.message_keys.get(entry.key)
            if env.kind == Kind.CHAT and key is not None:
                self._keys[entry.key] = key
                self._show(env, self._open_with_key(env, key), [])
            elif env.kind == Kind.CHAT and not self.keeper:
                self._pending.setdefault((env.sender, env.chain_id), []).append(env)
            elif env.kind == Kind.SENDER_KEY and not self.keeper:
                self._take_sender_key(env, now, [])
        for sender, seq in snap.message_keys.keys() - restored:
            tomb = log.get_tombstone((sender, seq))
            self._persist.erased.append((sender, seq, tomb.until if tomb is not None else 0))
        self._advance_initial()

    def _erase_at_restore(self, entry: LogEntry, env: Envelope, now: int) -> None:
        """A stored entry the log refuses (expired or tombstoned): erase it from the store and report it."""
        log = self.sync.log
        until = min(entry.expires_at + log.skew_ms, wire.MAX_INT)
        if until > now:
            log.tombstone(entry.key, until)
        tomb = log.get_tombstone(entry.key)
        self._persist.erased.append((entry.sender, entry.seq, tomb.until if tomb is not None else until))
        if env.kind == Kind.CHAT and env.sender != self.peer_id:
            self._receipts_out.setdefault(env.sender, set()).add(env.seq)

    # -- public API ---------------------------------------------------------------------------------

    def learn_bundle(self, bundle: PublicBundle) -> None:
        """A verified bundle (e.g. from a signed signaling payload) for a peer we may link with."""
        self.bundles.setdefault(bundle.peer_id, bundle)

    def messages(self) -> list[Message]:
        return sorted(self._messages.values(), key=lambda m: (m.lamport, m.sender, m.seq))

    def online(self) -> set[str]:
        return {n for n in self.sync.neighbours if self.sync.is_ready(n)}

    def caught_up(self) -> bool:
        """Linked neighbours have all said what they hold and we have fetched what we lacked."""
        return self.sync.caught_up()

    def members(self) -> list[str]:
        return sorted(self.membership.members)

    def delivered_to(self, msg_id: str) -> set[str]:
        return set(self._delivered.get(msg_id, set()))

    def erased_on(self, msg_id: str) -> set[str]:
        """Members (other than us) whose signed receipt says they erased our message ``msg_id``."""
        key = _parse_message_id(msg_id)
        if key is None or key[0] != self.peer_id:
            return set()
        return set(self._erased_by.get(key[1], set()))

    def erasure(self, msg_id: str) -> tuple[int, int]:
        """``(N, M)``: our message was erased on N of the M other current members."""
        return len(self.erased_on(msg_id)), len(self.membership.members) - 1

    def unsend(self, msg_id: str, now: int) -> list[RoomEvent]:
        """Delete one of our own messages for everyone ("unsend"); returns the local events.

        Publishes a signed TOMBSTONE envelope (kind 4) and tombstones the message here with that envelope
        as proof. Empty if ``msg_id`` is not one of our messages we still hold.
        """
        key = _parse_message_id(msg_id)
        if key is None or key[0] != self.peer_id or key not in self._chat_pos:
            return []
        entry = self.sync.log.get(key)
        if entry is None:
            return []
        expires_at = max(entry.expires_at, now + 1)
        published = self._publish_unchained(
            Kind.TOMBSTONE, encode_tombstone([key[1]]), now, expires_at=expires_at
        )
        events: list[RoomEvent] = []
        self._apply_unsend(parse_envelope(published.data), published.data, now, events)
        return events

    @property
    def timer_s(self) -> int:
        if self.membership.timer is not None:
            return self.membership.timer.ttl_s
        return self.invite.ttl_s or DEFAULT_TTL_S

    def send_text(
        self, text: str, now: int, *, ttl_s: int | None = None, reply_to: str | None = None
    ) -> Message:
        """Seal, sign, log and broadcast a chat message. Its expiry is fixed here and signed."""
        ttl = ttl_s if ttl_s is not None else self.timer_s
        expires_at = NEVER if ttl == 0 else now + ttl * 1000
        key = self._send_content(Text(text, reply_to), now, expires_at)
        msg = self._messages[key]
        self._delivered[msg.id] = set()
        return msg

    def set_profile(self, name: str, now: int) -> list[RoomEvent]:
        """Publish our display name in this room (room state: it does not expire)."""
        events: list[RoomEvent] = []
        self._send_content(Profile(clean_name(name)), now, NEVER, events)
        return events

    def edit(self, msg_id: str, body: str, now: int) -> Message:
        """Replace the body of one of our own messages, for everyone; the edit expires with it."""
        target = self._base.get(_parse_message_id(msg_id) or ("", -1))
        if target is None or target.sender != self.peer_id:
            raise ValueError("can only edit our own messages that are still here")
        key = self._send_content(Edit(msg_id, body), now, target.expires_at)
        return self._messages[self._aux_target[key]]

    def react(self, msg_id: str, emoji: str, now: int, *, on: bool = True) -> Message:
        """Add (or with ``on=False`` remove) our reaction to a message; it expires with the message."""
        target = self._base.get(_parse_message_id(msg_id) or ("", -1))
        if target is None:
            raise ValueError("no such message")
        key = self._send_content(Reaction(msg_id, emoji, on), now, target.expires_at)
        return self._messages[self._aux_target[key]]

    def display_name(self, peer: str) -> str | None:
        """The display name ``peer`` set in this room, if any."""
        profile = self._profiles.get(peer)
        return profile[2] if profile else None

    def _send_content(
        self, content: Content, now: int, expires_at: int, events: list[RoomEvent] | None = None
    ) -> Key:
        if self.keeper:
            raise ValueError("a keeper does not send messages")
        plaintext = encode_content(content)
        chain = self._current_chain(now)
        self._seq += 1
        lamport = self.sync.clock.tick()
        _, mk = chain.advance()
        data, next_chain = seal_envelope(
            self.identity, self.room_id, chain, Kind.CHAT, self._seq, lamport, now, expires_at, plaintext
        )
        self._chain = next_chain
        self._persist.states.update(
            {
                "chain/own": next_chain.to_bytes(),
                "seq": str(self._seq).encode(),
                "lamport": str(lamport).encode(),
            }
        )
        own = LogEntry(self.peer_id, self._seq, lamport, now, expires_at, data)
        entry = self.sync.publish(data, now, own)  # we just sealed and signed it: no need to verify
        self._persist.envelopes.append(entry)
        key = (self.peer_id, self._seq)
        self._keys[key] = mk.key
        self._chat_pos[key] = (chain.chain_id, mk.index)
        self._erased_by[self._seq] = set()
        self._persist.message_keys.append((self.peer_id, self._seq, expires_at, mk.key))
        self._show(parse_envelope(data), plaintext, events if events is not None else [])
        return key

    def set_timer(self, ttl_s: int, now: int) -> list[RoomEvent]:
        """Set the room's default message lifetime (a signed, versioned op; the highest version wins)."""
        version = (self.membership.timer.version + 1) if self.membership.timer else 1
        op = make_set_timer(
            self.identity, self.invite.member_key, self.room_id, self.sync.clock.tick(), ttl_s, version
        )
        events: list[RoomEvent] = []
        self._publish_unchained(Kind.MEMBERSHIP, op.encode(), now, events=events)
        return events

    def remove_member(self, peer: str, now: int) -> list[RoomEvent]:
        """Remove ``peer`` for good (or leave, if it is us). Every sender rotates its chain."""
        if peer not in self.membership.members:
            raise ValueError("not a member")
        op = make_remove(self.identity, self.invite.member_key, self.room_id, self.sync.clock.tick(), peer)
        events: list[RoomEvent] = []
        self._publish_unchained(Kind.MEMBERSHIP, op.encode(), now, events=events)
        return events

    # -- links ------------------------------------------------------------------------------------------

    def link_up(self, peer: str, now: int) -> None:
        bundle = self.bundles.get(peer)
        if bundle is None or peer in self.membership.removed:
            self._dead.append(peer)
            return
        hs = Handshake(self.identity, bundle, self.room_id)
        self._links[peer] = _Link(hs)
        self._outbox.append(
            (peer, wire.encode_opaque(wire.FrameType.HANDSHAKE, bytes([HS_HELLO]) + hs.hello()))
        )

    def link_down(self, peer: str, now: int) -> list[RoomEvent]:
        link = self._links.pop(peer, None)
        was_online = self.sync.is_ready(peer)
        self.sync.disconnect(peer, now)
        return [MemberOnline(peer, False)] if link is not None and was_online else []

    def take_dead_links(self) -> list[str]:
        dead, self._dead = self._dead, []
        return dead

    def receive(self, peer: str, data: bytes, now: int) -> list[RoomEvent]:
        link = self._links.get(peer)
        if link is None:
            return []
        if link.session is None:
            return self._receive_handshake(peer, link, data, now)
        events = self._handle_sync(self.sync.receive(peer, data, now), now)
        if self._parked:
            events += self._unpark(now)
        return events

    # -- envelopes that overtook their author's ADD -------------------------------------------------------

    def _park(self, neighbour: str, sender: str, data: bytes, now: int) -> None:
        """Hold an envelope from a sender we do not know yet (its ADD is still on its way), bounded."""
        held = self._parked.setdefault(sender, [])
        held.append((now, neighbour, data))
        del held[:-PARK_PER_SENDER]
        while sum(len(v) for v in self._parked.values()) > PARK_TOTAL:
            oldest = min(self._parked, key=lambda k: self._parked[k][0][0])
            self._parked[oldest].pop(0)
            if not self._parked[oldest]:
                del self._parked[oldest]

    def _unpark(self, now: int) -> list[RoomEvent]:
        """Feed parked envelopes of senders now known back through sync; drop those parked too long."""
        events: list[RoomEvent] = []
        for sender in list(self._parked):
            items = self._parked[sender]
            if sender not in self.bundles:
                items[:] = [it for it in items if now - it[0] < PARK_MS]
                if not items:
                    del self._parked[sender]
                continue
            del self._parked[sender]
            for _, neighbour, data in items:
                if self.sync.is_ready(neighbour):
                    frame = wire.encode_envelopes([data])[0]
                    events += self._handle_sync(self.sync.receive(neighbour, frame, now), now)
        return events

    def _receive_handshake(self, peer: str, link: _Link, data: bytes, now: int) -> list[RoomEvent]:
        try:
            frame = wire.decode_frame(data)
            if not isinstance(frame, wire.Opaque) or frame.type != wire.FrameType.HANDSHAKE or not frame.body:
                raise ProtocolError("no-handshake", "expected a handshake frame")
            assert link.handshake is not None
            step, body = frame.body[0], frame.body[1:]
            if step == HS_HELLO:
                finish = link.handshake.on_hello(body)
                self._outbox.append(
                    (peer, wire.encode_opaque(wire.FrameType.HANDSHAKE, bytes([HS_FINISH]) + finish))
                )
                return []
            if step == HS_FINISH:
                link.session = link.handshake.on_finish(body)
                link.handshake = None
                self.sync.connect(peer, now)
                return []
            raise ProtocolError("bad-handshake", "unknown handshake step")
        except ProtocolError as exc:
            self.protocol_errors.append((peer, exc.code))
            self._links.pop(peer, None)
            self._dead.append(peer)
            return []

    # -- sync events ------------------------------------------------------------------------------------

    def _handle_sync(self, sync_events: Iterable[object], now: int) -> list[RoomEvent]:
        events: list[RoomEvent] = []
        for ev in sync_events:
            if isinstance(ev, EntryAdded):
                self._on_entry(ev.entry, now, events)
            elif isinstance(ev, EntryExpired):
                self._erase(ev.key, events)
            elif isinstance(ev, EntryDeleted):
                self._erase(ev.key, events, reason="unsent")
            elif isinstance(ev, Acked):
                # any of our chat messages still held (sent by this process or restored): once per member
                key = (ev.sender, ev.seq)
                if ev.sender == self.peer_id and key in self._chat_pos and key in self._messages:
                    mid = message_id(ev.sender, ev.seq)
                    got = self._delivered.setdefault(mid, set())
                    if ev.neighbour not in got:
                        got.add(ev.neighbour)
                        events.append(Delivered(mid, ev.neighbour))
            elif isinstance(ev, NeighbourReady):
                events.append(MemberOnline(ev.neighbour, True))
                self._give_current_chain(ev.neighbour, now)
            elif isinstance(ev, NeighbourTimedOut):
                self._links.pop(ev.neighbour, None)
                self._dead.append(ev.neighbour)
                events.append(MemberOnline(ev.neighbour, False))
            elif isinstance(ev, OpaqueFrame):
                self._on_opaque(ev, now, events)
            elif isinstance(ev, ProtocolErrorEvent):
                if ev.code == "unknown-sender" and self._unknown:
                    # errors come in the order _validate refused them: park each with its neighbour
                    self._park(ev.neighbour, *self._unknown.pop(0), now)
                    continue
                self.protocol_errors.append((ev.neighbour, ev.code))
                if ev.code == "wrong-room":
                    self._dead.append(ev.neighbour)
        return events

    def _on_opaque(self, ev: OpaqueFrame, now: int, events: list[RoomEvent]) -> None:
        link = self._links.get(ev.neighbour)
        if ev.type == wire.FrameType.APP and link is not None and link.session is not None:
            if ev.body[:1] == bytes([RECEIPT_TAG]):
                self._on_receipt(ev.neighbour, ev.body, events)
            else:
                self._on_presence(ev.neighbour, ev.body, now, events)
            return
        if ev.type != wire.FrameType.PAIRWISE or link is None or link.session is None:
            self.protocol_errors.append((ev.neighbour, "unexpected-frame"))
            return
        try:
            link.session, plaintext = open_pairwise(link.session, ev.body, PAIRWISE_AAD)
            self._accept_sender_key(SenderKeyMessage.decode(plaintext), now, events)
        except ProtocolError as exc:
            self.protocol_errors.append((ev.neighbour, exc.code))

    def _on_entry(self, entry: LogEntry, now: int, events: list[RoomEvent]) -> None:
        self._persist.envelopes.append(entry)
        env = parse_envelope(entry.data)
        if env.kind == Kind.CHAT:
            self._chat_pos[entry.key] = (env.chain_id, env.chain_index)
        if env.kind == Kind.MEMBERSHIP:
            self._ops[entry.key] = MembershipOp.decode(env.payload)
            self._recompute_membership(events, now)
        elif env.kind == Kind.SENDER_KEY:
            if not self.keeper:
                self._take_sender_key(env, now, events)
        elif env.kind == Kind.TOMBSTONE:
            self._apply_unsend(env, entry.data, now, events)
        elif env.kind == Kind.CHAT and not self.keeper:
            rx = self._rx.get((env.sender, env.chain_id))
            if rx is None:
                self._pending.setdefault((env.sender, env.chain_id), []).append(env)
            else:
                self._open_chat(env, rx, events)

    # -- membership --------------------------------------------------------------------------------------

    def _recompute_membership(self, events: list[RoomEvent] | None, now: int = 0) -> None:
        before = self.membership
        state, _rejected = MembershipState.from_ops(
            self.room_id, list(self._ops.values()), self.invite.member_key
        )
        self.membership = state
        for pid, member in state.members.items():
            self.bundles[pid] = member.bundle
        if events is None:
            return
        for pid in sorted(set(state.members) - set(before.members)):
            if pid != self.peer_id:
                events.append(MemberJoined(pid))
                self._give_current_chain(pid, now)
        for pid in sorted(set(before.members) - set(state.members)):
            events.append(MemberLeft(pid))
            for key in [k for k in self._rx if k[0] == pid]:
                del self._rx[key]
            if pid != self.peer_id and self._links.pop(pid, None) is not None:
                # a removed member gets nothing more from us, not even ciphertext
                self.sync.disconnect(pid, now)
                self._dead.append(pid)
        if state.timer is not None and (before.timer is None or before.timer != state.timer):
            events.append(TimerChanged(state.timer.ttl_s))

    # -- sender keys ---------------------------------------------------------------------------------------

    def _current_chain(self, now: int) -> SenderChain:
        chain = self._chain
        if chain is None or self.policy.must_rotate(chain, now=now, epoch=self.membership.epoch):
            chain = SenderChain.new(epoch=self.membership.epoch, created_at=now)
            self._chain = self._chain_initial = chain
            self._persist.states["chain/own"] = chain.to_bytes()
            self._persist.states["chain/initial"] = chain.to_bytes()
            for pid in sorted(self.membership.members):
                if pid != self.peer_id:
                    self._give_chain(pid, chain, now)
        return chain

    def _give_current_chain(self, peer: str, now: int) -> None:
        """A member we did not know when our chain started gets it too, even if the chain is due to
        rotate (its messages are still in the log); never a chain from before a removal."""
        init = self._chain_initial
        if init is not None and self._chain is not None and init.epoch == self.membership.epoch:
            self._give_chain(peer, init, now)

    def _give_chain(self, peer: str, initial: SenderChain, now: int) -> None:
        """Hand ``peer`` our chain's initial state: pairwise if linked, else sealed to its prekey in the log."""
        given = self._chain_given.setdefault(initial.chain_id, set())
        if peer in given or peer in self.membership.removed:
            return
        skm = SenderKeyMessage.create(self.identity, self.room_id, initial).encode()
        link = self._links.get(peer)
        if link is not None and link.session is not None and self.sync.is_ready(peer):
            link.session, frame = seal_pairwise(link.session, skm, PAIRWISE_AAD)
            self.sync.send_opaque(peer, wire.FrameType.PAIRWISE, frame)
        member = self.membership.members.get(peer)
        if member is None:
            return  # not a member yet: it gets the key when its ADD arrives
        sealed = seal_to_prekey_for(self.identity, member.bundle, member.prekey, skm, now)
        self._publish_unchained(Kind.SENDER_KEY, sealed, now)
        given.add(peer)
        self._persist.states[f"chain/given/{initial.chain_id.hex()}"] = json.dumps(sorted(given)).encode()

    def _take_sender_key(self, env: Envelope, now: int, events: list[RoomEvent]) -> None:
        payload = env.payload
        if len(payload) < 33 or payload[17:33] != bytes.fromhex(self.peer_id):
            return  # sealed to another member
        sender = self.bundles.get(env.sender)
        if sender is None:
            return
        try:
            opened = open_from_prekey(self.identity, self._prekey, sender, payload, PREKEY_AAD, now)
        except ProtocolError as exc:
            self.protocol_errors.append((env.sender, exc.code))
            return
        if opened.msg_id in self._seen_prekey_msgs:
            return
        self._seen_prekey_msgs.add(opened.msg_id)
        self._persist.states["prekey/seen"] = json.dumps(
            sorted(b64u_encode(x) for x in self._seen_prekey_msgs)
        ).encode()
        try:
            self._accept_sender_key(SenderKeyMessage.decode(opened.plaintext), now, events)
        except ProtocolError as exc:
            self.protocol_errors.append((env.sender, exc.code))

    def _accept_sender_key(self, skm: SenderKeyMessage, now: int, events: list[RoomEvent]) -> None:
        if skm.room_id != self.room_id:
            raise ProtocolError("wrong-room", "sender key for another room")
        bundle = self.bundles.get(skm.sender)
        if bundle is None or skm.sender not in self.membership.members:
            raise ProtocolError("not-member", "sender key from a non-member")
        key = (skm.sender, skm.chain_id)
        if key in self._rx:
            return
        rx = ReceiverChain.from_sender_key_message(skm, bundle.ed25519)
        self._rx[key] = rx
        self._persist.states[f"chain/rx/{skm.sender}/{skm.chain_id.hex()}"] = rx.to_bytes()
        for env in sorted(self._pending.pop(key, []), key=lambda e: e.chain_index):
            self._open_chat(env, self._rx[key], events)

    # -- chat ------------------------------------------------------------------------------------------------

    def _open_chat(self, env: Envelope, rx: ReceiverChain, events: list[RoomEvent]) -> None:
        k = (env.sender, env.seq)
        if k in self._messages:
            return
        try:
            # the signature was verified before the envelope entered the log (``_validate``)
            next_rx, mk = rx.message_key(env.chain_index)
            plaintext = open_envelope_with_key(env, mk)
        except ProtocolError as exc:
            self.protocol_errors.append((env.sender, exc.code))
            return
        self._rx[(env.sender, env.chain_id)] = next_rx
        self._persist.states[f"chain/rx/{env.sender}/{env.chain_id.hex()}"] = next_rx.to_bytes()
        self._keys[k] = mk
        self._persist.message_keys.append((env.sender, env.seq, env.expires_at, mk))
        self._show(env, plaintext, events)

    def _open_with_key(self, env: Envelope, key: bytes) -> bytes:
        return open_envelope_with_key(env, key)

    def _show(self, env: Envelope, plaintext: bytes, events: list[RoomEvent]) -> None:
        """Apply opened content: a message, a display name, an edit or a reaction."""
        try:
            content = decode_content(plaintext)
        except ProtocolError as exc:
            self.protocol_errors.append((env.sender, exc.code))
            return
        key = (env.sender, env.seq)
        if isinstance(content, Text):
            self._base[key] = Message(
                message_id(env.sender, env.seq),
                env.sender,
                env.seq,
                env.lamport,
                env.sent_at,
                env.expires_at,
                content.body,
                content.reply_to,
            )
            self._render(key)
            events.append(MessageReceived(self._messages[key]))
        elif isinstance(content, Profile):
            current = self._profiles.get(env.sender)
            if current is None or (env.lamport, env.seq) > current[:2]:
                self._profiles[env.sender] = (env.lamport, env.seq, content.name)
                events.append(ProfileChanged(env.sender, content.name))
        else:
            target = _parse_message_id(content.target)
            if target is None or (isinstance(content, Edit) and target[0] != env.sender):
                self.protocol_errors.append((env.sender, "bad-edit"))
                return
            self._aux[key] = (env.lamport, content)
            self._aux_target[key] = target
            self._aux_by_target.setdefault(target, set()).add(key)
            if target in self._base:
                self._render(target)
                events.append(MessageUpdated(self._messages[target]))

    def _render(self, key: Key) -> None:
        """The message as shown: its latest edit by its sender and the reactions still on."""
        base = self._base[key]
        body, edited, latest = base.text, False, (-1, -1)
        votes: dict[tuple[str, str], tuple[int, int, bool]] = {}
        for aux_key in self._aux_by_target.get(key, ()):
            lamport, content = self._aux[aux_key]
            order = (lamport, aux_key[1])
            if isinstance(content, Edit) and order > latest:
                body, edited, latest = content.body, True, order
            elif isinstance(content, Reaction):
                vote = (aux_key[0], content.emoji)
                if vote not in votes or order > votes[vote][:2]:
                    votes[vote] = (lamport, aux_key[1], content.on)
        by_emoji: dict[str, list[str]] = {}
        for (peer, emoji), (_, _, on) in votes.items():
            if on:
                by_emoji.setdefault(emoji, []).append(peer)
        reactions = tuple((e, tuple(sorted(p))) for e, p in sorted(by_emoji.items()))
        self._messages[key] = replace(base, text=body, edited=edited, reactions=reactions)

    def _erase(self, key: Key, events: list[RoomEvent], reason: str = "expired") -> None:
        """Forget a message everywhere in this member: object, key, envelope row, pending copy, chain keys."""
        msg = self._messages.pop(key, None)
        self._base.pop(key, None)
        self._keys.pop(key, None)
        target = self._aux_target.pop(key, None)
        if target is not None:  # an edit or reaction went: show the target without it
            self._aux.pop(key, None)
            self._aux_by_target.get(target, set()).discard(key)
            if target in self._base:
                self._render(target)
                events.append(MessageUpdated(self._messages[target]))
        tomb = self.sync.log.get_tombstone(key)
        until = tomb.until if tomb is not None else 0
        self._persist.erased.append((key[0], key[1], until))
        for envs in self._pending.values():
            envs[:] = [e for e in envs if (e.sender, e.seq) != key]
        pos = self._chat_pos.pop(key, None)
        if pos is not None:
            if key[0] == self.peer_id:
                self._advance_initial()
            else:
                self._drop_skipped_key(key[0], *pos)
                self._receipts_out.setdefault(key[0], set()).add(key[1])
        if msg is not None:
            self._delivered.pop(msg.id, None)
            events.append(MessageExpired(msg.id, reason))

    def _advance_initial(self) -> None:
        """Move our stored initial chain state up to the oldest message still held, so the state kept for
        late joiners cannot re-derive the keys of messages already erased."""
        init, cur = self._chain_initial, self._chain
        if init is None or cur is None or init.chain_id != cur.chain_id:
            return
        live = [i for (s, _), (cid, i) in self._chat_pos.items() if s == self.peer_id and cid == cur.chain_id]
        target = min(live, default=cur.index)
        if target <= init.index:
            return
        while init.index < target:
            init, _ = init.advance()
        self._chain_initial = init
        self._persist.states["chain/initial"] = init.to_bytes()

    def _drop_skipped_key(self, sender: str, chain_id: bytes, index: int) -> None:
        rx = self._rx.get((sender, chain_id))
        if rx is None or all(i != index for i, _ in rx.skipped):
            return
        kept = tuple((i, k) for i, k in rx.skipped if i != index)
        rx = ReceiverChain(rx.sender_key, rx.chain_id, rx.index, rx.chain_key, kept)
        self._rx[(sender, chain_id)] = rx
        self._persist.states[f"chain/rx/{sender}/{chain_id.hex()}"] = rx.to_bytes()

    # -- unsend and erasure receipts ----------------------------------------------------------------------

    def _unsend_until(self, env: Envelope) -> int:
        return min(env.expires_at + self.sync.log.skew_ms, wire.MAX_INT)

    def _apply_unsend(self, env: Envelope, proof: bytes, now: int, events: list[RoomEvent]) -> None:
        """Apply a verified TOMBSTONE envelope: tombstone each named key with the envelope as proof."""
        until = self._unsend_until(env)
        for seq in decode_tombstone(env.payload):
            key = (env.sender, seq)
            held = self.sync.log.get(key)
            if held is not None and not self._deletable(held):
                continue
            if self.sync.delete(key, until, proof, now) and held is not None:
                self._erase(key, events, reason="unsent")

    def _deletable(self, held: LogEntry) -> bool:
        """Only CHAT messages can be unsent (never room state), and only while the tombstone fits the wire."""
        return held.key in self._chat_pos and held.expires_at + self.sync.log.skew_ms <= wire.MAX_INT

    def _authorize_tombstone(self, tomb: Tombstone, held: LogEntry | None, now: int) -> bool:
        """Accept a tombstone with a proof iff the proof is the messages' sender's signed TOMBSTONE envelope
        for this room naming ``tomb.seq`` (an earlier seq), and ``until`` is within its bound."""
        try:
            env = parse_envelope(tomb.proof)
            if env.kind != Kind.TOMBSTONE or env.room_id != self.room_id or env.sender != tomb.sender:
                return False
            self._verify_member_envelope(env)
            seqs = decode_tombstone(env.payload)
        except ProtocolError:
            return False
        if tomb.seq not in seqs or tomb.seq >= env.seq or tomb.until > self._unsend_until(env):
            return False
        return held is None or self._deletable(held)

    def _verify_member_envelope(self, env: Envelope) -> None:
        bundle = self.bundles.get(env.sender)
        if bundle is None or (
            env.sender not in self.membership.members and env.sender not in self.membership.removed
        ):
            raise ProtocolError("unknown-sender", "sender is not a known member")
        verify_envelope(env, bundle.ed25519)

    # -- typing and seen (ephemeral, direct links only) ------------------------------------------------

    def set_typing(self, typing: bool, now: int) -> None:
        """Tell linked members we are (not) typing; renewals are rate-limited."""
        last = self._typing_sent
        if typing == last[0] and (not typing or now - last[1] < TYPING_RENEW_MS):
            return
        self._typing_sent = (typing, now)
        for peer in self.online():
            self.sync.send_opaque(peer, wire.FrameType.APP, encode_typing(typing))

    def typing_members(self, now: int) -> list[str]:
        return sorted(p for p, until in self._typing.items() if until > now)

    def mark_seen(self, msg_ids: list[str], now: int) -> None:
        """We have shown these messages: tell each sender that is linked to us (once per message)."""
        for msg_id in msg_ids:
            key = _parse_message_id(msg_id)
            if key is None or key[0] == self.peer_id or key not in self._base or key in self._seen_sent:
                continue
            if self.sync.is_ready(key[0]):
                self._seen_sent.add(key)
                self._seen_out.setdefault(key[0], []).append(key[1])
        for peer, seqs in self._seen_out.items():
            self.sync.send_opaque(peer, wire.FrameType.APP, encode_seen(seqs))
        self._seen_out.clear()

    def seen_by(self, msg_id: str) -> set[str]:
        key = _parse_message_id(msg_id)
        return set(self._seen_by.get(key[1], set())) if key is not None and key[0] == self.peer_id else set()

    def _on_presence(self, neighbour: str, body: bytes, now: int, events: list[RoomEvent]) -> None:
        try:
            signal = decode_presence(body)
        except ProtocolError as exc:
            self.protocol_errors.append((neighbour, exc.code))
            return
        if isinstance(signal, TypingSignal):
            was = self._typing.get(neighbour, 0) > now
            if signal.typing:
                self._typing[neighbour] = now + TYPING_TTL_MS
            else:
                self._typing.pop(neighbour, None)
            if was != signal.typing:
                events.append(Typing(neighbour, signal.typing))
            return
        of = len(self.membership.members) - 1
        for seq in signal.seqs:
            if (self.peer_id, seq) not in self._base:
                continue
            by = self._seen_by.setdefault(seq, set())
            if neighbour not in by:
                by.add(neighbour)
                events.append(MessageSeen(message_id(self.peer_id, seq), neighbour, len(by), of))

    def _expire_typing(self, now: int, events: list[RoomEvent]) -> None:
        for peer in [p for p, until in self._typing.items() if until <= now]:
            del self._typing[peer]
            events.append(Typing(peer, False))

    def _on_receipt(self, neighbour: str, body: bytes, events: list[RoomEvent]) -> None:
        try:
            receipt = ErasureReceipt.decode(body)
            if receipt.room_id != self.room_id:
                raise ProtocolError("wrong-room", "receipt for another room")
            bundle = self.bundles.get(receipt.member)
            if bundle is None or (
                receipt.member not in self.membership.members
                and receipt.member not in self.membership.removed
            ):
                raise ProtocolError("unknown-sender", "receipt from a non-member")
            receipt.verify(bundle.ed25519)
        except ProtocolError as exc:
            self.protocol_errors.append((neighbour, exc.code))
            return
        if receipt.sender != self.peer_id or receipt.member == self.peer_id:
            return  # receipts travel to the message's sender only (no relay in v1)
        of = len(self.membership.members) - 1
        for seq in receipt.seqs:
            by = self._erased_by.get(seq)
            if by is None or receipt.member in by:
                continue
            by.add(receipt.member)
            events.append(MessageErased(message_id(self.peer_id, seq), receipt.member, len(by), of))

    def _flush_receipts(self) -> None:
        for sender in list(self._receipts_out):
            if sender not in self.membership.members and sender not in self.membership.removed:
                del self._receipts_out[sender]
            elif self.sync.is_ready(sender):
                seqs = sorted(self._receipts_out.pop(sender))
                for i in range(0, len(seqs), MAX_RECEIPT_SEQS):
                    receipt = ErasureReceipt.create(
                        self.identity, self.room_id, sender, seqs[i : i + MAX_RECEIPT_SEQS]
                    )
                    self.sync.send_opaque(sender, wire.FrameType.APP, receipt.encode())

    # -- publishing ----------------------------------------------------------------------------------------

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
        lamport = self.sync.clock.tick()
        data = seal_unchained_envelope(
            self.identity, self.room_id, kind, self._seq, lamport, now, expires_at, payload
        )
        self._persist.states.update({"seq": str(self._seq).encode(), "lamport": str(lamport).encode()})
        own = LogEntry(self.peer_id, self._seq, lamport, now, expires_at, data)
        entry = self.sync.publish(data, now, own)
        self._persist.envelopes.append(entry)
        if kind == Kind.MEMBERSHIP:
            self._ops[entry.key] = MembershipOp.decode(payload)
            self._recompute_membership(events, now)
        return entry

    # -- validation (called by the sync engine for every envelope) --------------------------------------

    def _validate(self, data: bytes) -> LogEntry:
        env = parse_envelope(data)
        if env.room_id != self.room_id:
            raise ProtocolError("wrong-room", "envelope for another room")
        if env.kind == Kind.MEMBERSHIP:
            op = MembershipOp.decode(env.payload)
            if op.author != env.sender:
                raise ProtocolError("wrong-sender", "op author differs from envelope sender")
            if op.op == OpType.ADD and op.target == op.author:
                key = op.bundle.ed25519
            else:
                bundle = self.bundles.get(env.sender)
                if bundle is None:
                    self._unknown.append((env.sender, data))
                    raise ProtocolError("unknown-sender", "no bundle for the sender yet")
                key = bundle.ed25519
        else:
            # an unsend travels as a tombstone proof too: bounded, and only earlier seqs of its own sender
            if env.kind == Kind.TOMBSTONE and (
                len(data) > wire.MAX_PROOF or any(q >= env.seq for q in decode_tombstone(env.payload))
            ):
                raise ProtocolError("bad-tombstone", "unsend too large or naming a later seq")
            try:
                self._verify_member_envelope(env)
            except ProtocolError as exc:
                if exc.code == "unknown-sender":
                    self._unknown.append((env.sender, data))
                raise
            return LogEntry(env.sender, env.seq, env.lamport, env.sent_at, env.expires_at, data)
        verify_envelope(env, key)
        return LogEntry(env.sender, env.seq, env.lamport, env.sent_at, env.expires_at, data)

    # -- pumping ------------------------------------------------------------------------------------------

    def data_to_send(self) -> list[tuple[str, bytes]]:
        self._flush_receipts()
        out, self._outbox = self._outbox, []
        return out + self.sync.data_to_send()

    def next_timer(self) -> int | None:
        times = [
            t for t in (self.sync.next_timer(), min(self._typing.values(), default=None)) if t is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: int) -> list[RoomEvent]:
        events = self._handle_sync(self.sync.handle_timer(now), now)
        self._expire_typing(now, events)
        if self._parked:
            events += self._unpark(now)
        return events

    def take_persist(self) -> PersistBatch:
        batch, self._persist = self._persist, PersistBatch()
        if batch:
            batch.states.setdefault("lamport", str(self.sync.clock.value).encode())
        return batch


def _parse_message_id(msg_id: str) -> Key | None:
    """``"<sender>:<seq>"`` -> key, or None if malformed."""
    sender, _, seq = msg_id.partition(":")
    if len(sender) != 32 or not seq.isdigit():
        return None
    return (sender, int(seq))


def open_envelope_with_key(env: Envelope, message_key: bytes) -> bytes:
    """Open a CHAT envelope whose (already verified) message key we hold."""
    return aead_open(message_key_to_aead_key(message_key), env.nonce, env.ciphertext, env.header)


def seal_to_prekey_for(
    identity: Identity, bundle: PublicBundle, prekey: SignedPrekey, plaintext: bytes, now: int
) -> bytes:
    return seal_to_prekey(identity, bundle, prekey, plaintext, PREKEY_AAD, now)
