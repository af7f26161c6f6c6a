"""Timeline: what the room shows. A pure projection of opened content; no crypto, no I/O, no persistence.

Rules:
- A ``text`` content is a message, and so is a ``file`` (its text empty, ``Message.file`` set); ``profile`` sets its sender's display name (latest ``(lamport, seq)``
  wins); ``edit`` replaces the body of its sender's OWN message (latest wins); ``react`` toggles a
  ``(reactor, emoji)`` vote on any message (latest per vote wins). Edits and reactions may arrive before
  their target: they are applied when it arrives.
- Erasing a message forgets it and everything about it; erasing an edit or reaction re-renders its target.
  The room erases the edits and reactions that refer to an erased message too (``referring``).
- Receipts: ``Delivered`` once per (own message, neighbour) that ACKed it; ``MessageSeen`` once per
  (own message, member) that said it showed it.
- Rebuilt on restart from the envelopes and message keys kept by the other parts: it persists nothing.
- Search (issue 15): every message shown is in an in-memory :class:`SearchIndex` under the
  ``searchable_text`` of its content as shown; re-indexed on edit, dropped in ``erase``. A ``location``
  content is a message too (``text`` "", ``location`` set); ``mentioned`` is set when a text mentions us.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from peer.core.content import Content, Edit, Location, Profile, Reaction, Text, searchable_text
from peer.core.events import (
    Delivered,
    Message,
    MessageExpired,
    MessageReceived,
    MessageSeen,
    MessageUpdated,
    ProfileChanged,
    RoomEvent,
)
from peer.core.files import File
from peer.core.ids import message_id
from peer.core.log import Key
from peer.core.search import SearchIndex


@dataclass(frozen=True, slots=True)
class Meta:
    """The signed, public fields of the envelope that carried a content."""

    sender: str
    seq: int
    lamport: int
    sent_at: int
    expires_at: int


def parse_message_id(msg_id: str) -> Key | None:
    """``"<sender>:<seq>"`` -> key, or None if malformed."""
    sender, _, seq = msg_id.partition(":")
    if len(sender) != 32 or not seq.isdigit():
        return None
    return (sender, int(seq))


class Timeline:
    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self._messages: dict[Key, Message] = {}  # as shown (edits and reactions applied)
        self._base: dict[Key, Message] = {}  # as first sent
        self._aux: dict[Key, tuple[int, Edit | Reaction]] = {}  # edit/reaction envelopes: lamport, content
        self._aux_target: dict[Key, Key] = {}
        self._aux_by_target: dict[Key, set[Key]] = {}
        self._profiles: dict[str, tuple[int, int, str]] = {}  # peer -> (lamport, seq, name)
        self._delivered: dict[str, set[str]] = {}
        self._seen_by: dict[int, set[str]] = {}
        self._content: dict[Key, Text | Location] = {}  # the content of each message, as first sent
        self.search = SearchIndex()

    # -- queries ---------------------------------------------------------------------------------------

    def messages(self, order: Callable[[Key], tuple[int, str, int] | None] | None = None) -> list[Message]:
        """Sorted by ``order`` (the log's total order, in which an author cannot place a message before
        its own previous one), else by ``(lamport, sender, seq)``."""
        return sorted(
            self._messages.values(),
            key=lambda m: (order((m.sender, m.seq)) if order else None) or (m.lamport, m.sender, m.seq),
        )

    def shown(self, key: Key) -> Message | None:
        return self._messages.get(key)

    def base(self, key: Key) -> Message | None:
        return self._base.get(key)

    def has(self, key: Key) -> bool:
        return key in self._messages or key in self._aux or key in self._base

    def target_of(self, key: Key) -> Message:
        return self._messages[self._aux_target[key]]

    def display_name(self, peer: str) -> str | None:
        profile = self._profiles.get(peer)
        return profile[2] if profile else None

    def delivered_to(self, msg_id: str) -> set[str]:
        return set(self._delivered.get(msg_id, set()))

    def seen_by(self, seq: int) -> set[str]:
        return set(self._seen_by.get(seq, set()))

    # -- projection ------------------------------------------------------------------------------------

    def apply(self, meta: Meta, content: Content, events: list[RoomEvent]) -> str | None:
        """Show one opened content; returns an error code if it is malformed for its type."""
        key = (meta.sender, meta.seq)
        if isinstance(content, Location):
            self._apply_location(key, meta, content, events)
            return None
        if isinstance(content, Text):
            self._content[key] = content
            self._base[key] = Message(
                message_id(meta.sender, meta.seq),
                meta.sender,
                meta.seq,
                meta.lamport,
                meta.sent_at,
                meta.expires_at,
                content.body,
                content.reply_to,
                mentions=content.mentions,
                mentioned=self.self_id in content.mentions and meta.sender != self.self_id,
                forwarded_from=content.fwd.from_name if content.fwd else None,
            )
            self._render(key)
            events.append(MessageReceived(self._messages[key]))
            return None
        if isinstance(content, File):
            self._base[key] = Message(
                message_id(meta.sender, meta.seq),
                meta.sender,
                meta.seq,
                meta.lamport,
                meta.sent_at,
                meta.expires_at,
                "",
                file=content,
                forwarded_from=content.forwarded_from,
            )
            self._render(key)
            events.append(MessageReceived(self._messages[key]))
            return None
        if isinstance(content, Profile):
            current = self._profiles.get(meta.sender)
            if current is None or (meta.lamport, meta.seq) > current[:2]:
                self._profiles[meta.sender] = (meta.lamport, meta.seq, content.name)
                events.append(ProfileChanged(meta.sender, content.name))
            return None
        target = parse_message_id(content.target)
        if target is None or (isinstance(content, Edit) and target[0] != meta.sender):
            return "bad-edit"
        self._aux[key] = (meta.lamport, content)
        self._aux_target[key] = target
        self._aux_by_target.setdefault(target, set()).add(key)
        if target in self._base:
            self._render(target)
            events.append(MessageUpdated(self._messages[target]))
        return None

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
        shown = self._content.get(key)
        if isinstance(shown, Text) and edited:
            shown = replace(shown, body=body)
        if base.file is not None:  # an attachment is found by its file name (and its caption)
            self.search.put(key, f"{base.file.name} {body} {searchable_text(base.file)}".strip())
        else:
            self.search.put(key, searchable_text(shown) if shown is not None else "")

    def referring(self, key: Key) -> list[Key]:
        """The edit and reaction envelopes that refer to ``key`` (held or waiting for it)."""
        return sorted(self._aux_by_target.get(key, ()))

    def target_key(self, key: Key) -> Key | None:
        """The message an edit or reaction envelope refers to (None for anything else)."""
        return self._aux_target.get(key)

    def erase(self, key: Key, reason: str, events: list[RoomEvent]) -> None:
        msg = self._messages.pop(key, None)
        self._base.pop(key, None)
        self._content.pop(key, None)
        self.search.drop(key)
        target = self._aux_target.pop(key, None)
        if target is not None:  # an edit or reaction went: show the target without it
            self._aux.pop(key, None)
            self._aux_by_target.get(target, set()).discard(key)
            if target in self._base:
                self._render(target)
                events.append(MessageUpdated(self._messages[target]))
        if msg is not None:
            self._delivered.pop(msg.id, None)
            events.append(MessageExpired(msg.id, reason))

    def _apply_location(self, key: Key, meta: Meta, content: Location, events: list[RoomEvent]) -> None:
        self._content[key] = content
        self._base[key] = Message(
            message_id(meta.sender, meta.seq),
            meta.sender,
            meta.seq,
            meta.lamport,
            meta.sent_at,
            meta.expires_at,
            "",
            forwarded_from=content.fwd.from_name if content.fwd else None,
            location=(content.lat_e6, content.lon_e6, content.acc_m),
        )
        self._render(key)
        events.append(MessageReceived(self._messages[key]))

    def content_of(self, key: Key) -> Text | Location | None:
        """The content a message was sent with (for forwarding)."""
        return self._content.get(key)

    def search_keys(self, query: str) -> set[Key]:
        return self.search.query(query)

    # -- receipts --------------------------------------------------------------------------------------

    def track_delivery(self, msg_id: str) -> None:
        self._delivered[msg_id] = set()

    def on_ack(self, neighbour: str, sender: str, seq: int, events: list[RoomEvent]) -> None:
        """Any of our messages still shown (sent by this process or restored): once per member."""
        if sender != self.self_id or (sender, seq) not in self._messages:
            return
        mid = message_id(sender, seq)
        got = self._delivered.setdefault(mid, set())
        if neighbour not in got:
            got.add(neighbour)
            events.append(Delivered(mid, neighbour))

    def on_seen(self, member: str, seqs: Iterable[int], of: int, events: list[RoomEvent]) -> None:
        for seq in seqs:
            if (self.self_id, seq) not in self._base:
                continue
            by = self._seen_by.setdefault(seq, set())
            if member not in by:
                by.add(member)
                events.append(MessageSeen(message_id(self.self_id, seq), member, len(by), of))
