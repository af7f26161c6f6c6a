"""The send side of the room coordinator: publishing our envelopes. An unchained one (membership ops,
sender-key hand-overs, tombstones) is signed as is; content is sealed with our sender chain, rotated
first when due and handed to every member. Also the daily prekey rotation (a fresh self-ADD).

Owns our ``seq`` (state ``seq``, with ``lamport``, the sync clock's). A base class of
:class:`peer.core.room.room.Room` (after :mod:`governance` and :mod:`inbound`).
"""

from __future__ import annotations

from peer.core.content import Content, Edit, Location, Text, encode_content
from peer.core.envelope import Kind, seal_unchained_envelope
from peer.core.events import RoomEvent
from peer.core.files import File
from peer.core.log import Key, LogEntry
from peer.core.membership import MembershipOp, make_add

from .governance import Governance
from .senderkeys import NEVER
from .timeline import Meta


class Publishing(Governance):
    _seq: int

    def _rotate_prekey(self, now: int, events: list[RoomEvent]) -> None:
        """Our prekey is due: publish a fresh self-ADD carrying the new one (see ``senderkeys``)."""
        member = self.members_part.is_member(self.peer_id)
        signed = self.keys.rotate_prekey_if_due(now, self._persist, member=member)
        if signed is None:
            return
        add = make_add(
            self.identity,
            self.invite.member_key,
            self.room_id,
            self.sync.tick(),
            self.identity.public_bundle(),
            signed,
        )
        self._publish_unchained(Kind.MEMBERSHIP, add.encode(), now, events=events)

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
        if isinstance(content, Text | Edit | Location | File) and not self.members_part.may_post(
            self.peer_id, self.sync.lamport + 1
        ):
            raise PermissionError("announcement mode: only admins post")
        plaintext = encode_content(content)
        rotated = self.keys.rotate_if_due(now, self.members_part.epoch, expires_at, self._persist)
        if rotated is not None:  # to every member: at once if linked, else paced (``distribution``)
            for pid in self.members_part.others():
                if (
                    self.sync.is_ready(pid)
                    or self.keys.holds_live_chain(pid)
                    or self.distribution.offer(pid, now)
                ):
                    self._give_chain(pid, rotated, now)
        self._seq += 1
        lamport = self.sync.tick()
        data = self.keys.seal(self._seq, lamport, now, expires_at, plaintext, self._persist)
        self._persist.put("seq", str(self._seq).encode())
        self._persist.put("lamport", str(lamport).encode())
        own = LogEntry(self.peer_id, self._seq, lamport, now, expires_at, data)
        self._persist.envelopes.append(self.sync.publish(data, now, own))  # ours: no need to verify
        self.receipts.track(self._seq)
        self.timeline.apply(
            Meta(self.peer_id, self._seq, lamport, now, expires_at),
            content,
            events if events is not None else [],
        )
        return (self.peer_id, self._seq)
