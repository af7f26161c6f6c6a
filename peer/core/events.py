"""Room events: what an application sees. Frozen dataclasses, each with ``to_json()`` for ``listen --json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    sender: str
    seq: int
    lamport: int
    sent_at: int
    expires_at: int
    text: str = field(repr=False)
    reply_to: str | None = None
    edited: bool = False
    #: ((emoji, (peer ids who reacted, sorted)), ...) sorted by emoji; only emoji with at least one peer
    reactions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: members this message mentions (peer ids) and whether we are one of them (never for our own)
    mentions: tuple[str, ...] = ()
    mentioned: bool = False
    #: forwarded from another room: its original author's name as the forwarder saw it
    forwarded_from: str | None = None
    #: a shared location: (lat_e6, lon_e6, acc_m or None); ``text`` is then ""
    location: tuple[int, int, int | None] | None = None

    def to_json(self) -> dict[str, Any]:
        obj = self._base_json()
        # issue-15 fields appear only when set, so older events (and recorded traces) stay as they were
        if self.mentions:
            obj["mentions"] = list(self.mentions)
            obj["mentioned"] = self.mentioned
        if self.forwarded_from is not None:
            obj["forwarded_from"] = self.forwarded_from
        if self.location is not None:
            lat, lon, acc = self.location
            obj["location"] = {"lat_e6": lat, "lon_e6": lon, "acc_m": acc}
        return obj

    def _base_json(self) -> dict[str, Any]:
        return {
            "event": "message",
            "id": self.id,
            "sender": self.sender,
            "lamport": self.lamport,
            "seq": self.seq,
            "sent_at": self.sent_at,
            "expires_at": self.expires_at,
            "text": self.text,
            "reply_to": self.reply_to,
            "edited": self.edited,
            "reactions": {emoji: list(peers) for emoji, peers in self.reactions},
        }


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: Message

    def to_json(self) -> dict[str, Any]:
        return self.message.to_json()

    def __str__(self) -> str:
        m = self.message
        return f"[{m.sender[:8]}] {m.text}"


@dataclass(frozen=True, slots=True)
class MessageUpdated:
    """A message was edited by its sender or its reactions changed; ``message`` is the new rendering."""

    message: Message

    def to_json(self) -> dict[str, Any]:
        return {**self.message.to_json(), "event": "updated"}

    def __str__(self) -> str:
        m = self.message
        marks = " ".join(f"{emoji}{len(peers)}" for emoji, peers in m.reactions)
        return f"* [{m.sender[:8]}] {m.text}{' (edited)' if m.edited else ''}{'  ' + marks if marks else ''}"


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    """A member set its display name."""

    peer: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "profile", "peer": self.peer, "name": self.name}

    def __str__(self) -> str:
        return f"* {self.peer[:8]} is now known as {self.name}"


@dataclass(frozen=True, slots=True)
class Typing:
    """A linked member started or stopped typing (stops by itself after a few seconds of silence)."""

    peer: str
    typing: bool

    def to_json(self) -> dict[str, Any]:
        return {"event": "typing", "peer": self.peer, "typing": self.typing}

    def __str__(self) -> str:
        return f"* {self.peer[:8]} {'is typing…' if self.typing else 'stopped typing'}"


@dataclass(frozen=True, slots=True)
class MessageSeen:
    """A member has shown one of our messages: ``count`` of ``of`` other members have so far."""

    id: str
    by: str
    count: int
    of: int

    def to_json(self) -> dict[str, Any]:
        return {"event": "seen", "id": self.id, "by": self.by, "count": self.count, "of": self.of}

    def __str__(self) -> str:
        return f"* {self.id[:8]}… seen by {self.count} of {self.of}"


@dataclass(frozen=True, slots=True)
class MessageExpired:
    """A message was erased here: ``reason`` is ``"expired"`` (its signed expiry), ``"unsent"``, or
    ``"equivocation"`` (its author signed two versions of it: neither is kept)."""

    id: str
    reason: str = "expired"

    def to_json(self) -> dict[str, Any]:
        return {"event": "expired", "id": self.id, "reason": self.reason}

    def __str__(self) -> str:
        return f"* message {self.id[:8]}… {self.reason if self.reason in ('unsent', 'equivocation') else 'expired'}"


@dataclass(frozen=True, slots=True)
class MessageErased:
    """Member ``by`` reported (signed receipt) that it erased our message ``id``: ``count`` of ``of``
    other members have now done so."""

    id: str
    by: str
    count: int
    of: int

    def to_json(self) -> dict[str, Any]:
        return {"event": "erased", "id": self.id, "by": self.by, "count": self.count, "of": self.of}

    def __str__(self) -> str:
        return f"* {self.id[:8]}… erased on {self.count} of {self.of} members"


@dataclass(frozen=True, slots=True)
class MemberJoined:
    peer: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "joined", "peer": self.peer}

    def __str__(self) -> str:
        return f"* {self.peer[:8]} joined"


@dataclass(frozen=True, slots=True)
class MemberLeft:
    peer: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "left", "peer": self.peer}

    def __str__(self) -> str:
        return f"* {self.peer[:8]} left"


@dataclass(frozen=True, slots=True)
class MemberOnline:
    peer: str
    online: bool

    def to_json(self) -> dict[str, Any]:
        return {"event": "online" if self.online else "offline", "peer": self.peer}

    def __str__(self) -> str:
        return f"* {self.peer[:8]} is {'online' if self.online else 'offline'}"


@dataclass(frozen=True, slots=True)
class Delivered:
    id: str
    peer: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "delivered", "id": self.id, "peer": self.peer}

    def __str__(self) -> str:
        return f"* {self.id[:8]}… delivered to {self.peer[:8]}"


@dataclass(frozen=True, slots=True)
class TimerChanged:
    ttl_s: int

    def to_json(self) -> dict[str, Any]:
        return {"event": "timer", "ttl_s": self.ttl_s}

    def __str__(self) -> str:
        return f"* room timer set to {self.ttl_s}s"


@dataclass(frozen=True, slots=True)
class AdmissionChanged:
    """The room was closed or opened, or its pending join requests (closed room) changed."""

    closed: bool
    requests: tuple[str, ...]  # peer ids that asked to join (a self-ADD that admitted no one)

    def to_json(self) -> dict[str, Any]:
        return {"event": "admission", "closed": self.closed, "requests": list(self.requests)}

    def __str__(self) -> str:
        if not self.closed:
            return "* the room is open: anyone with the invite joins"
        asks = ", ".join(p[:8] for p in self.requests)
        return "* the room is closed: admins admit new members" + (f"; asks to join: {asks}" if asks else "")


@dataclass(frozen=True, slots=True)
class RolesChanged:
    """The room's admins (owner included) or its announcement mode changed."""

    owner: str | None
    admins: tuple[str, ...]
    announce: bool

    def to_json(self) -> dict[str, Any]:
        return {"event": "roles", "owner": self.owner, "admins": list(self.admins), "announce": self.announce}

    def __str__(self) -> str:
        mode = ", announcement mode (only admins post)" if self.announce else ""
        return f"* admins: {', '.join(a[:8] for a in self.admins) or 'none'}{mode}"


@dataclass(frozen=True, slots=True)
class RemoteError:
    """``peer`` sent something malformed or not allowed (``code``); ``count`` of that code on its link so
    far. ``closed``: it went past the link's error budget and the link is being closed."""

    peer: str
    code: str
    count: int
    closed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "remote-error",
            "peer": self.peer,
            "code": self.code,
            "count": self.count,
            "closed": self.closed,
        }

    def __str__(self) -> str:
        return f"* {self.peer[:8]}: {self.code} (x{self.count}){' - link closed' if self.closed else ''}"


RoomEvent = (
    MessageReceived
    | MessageUpdated
    | ProfileChanged
    | Typing
    | MessageSeen
    | MessageExpired
    | MessageErased
    | MemberJoined
    | MemberLeft
    | MemberOnline
    | Delivered
    | TimerChanged
    | RolesChanged
    | AdmissionChanged
    | RemoteError
)
