"""Keepers hold attachments (issue 15): who is a keeper on our links, which of our files we offer it,
and, in a keeper, which offered files it holds (PROTOCOL.md "Keepers hold attachments").

A keeper opens no CHAT envelope, so it cannot learn from the log which messages carry a file, nor the
manifest id and key its transfer engine needs. The author tells it, over their authenticated link:

    KEEPER     0x22 | version u8 (1)                   — keeper -> member: "I keep this room"
    KEEP_FILE  0x23 | seq u64 | the "file" content JSON — author -> keeper: "my message seq carries it"

Rules:
- A keeper that holds files (its adapter turns it on: ``Room.set_keep_files``; the Python keeper does
  unless its quota is 0) sends KEEPER once on every link that becomes ready. A member that is not a keeper answers
  the first KEEPER of a link (later ones on that link are ignored: no amplification) with one
  KEEP_FILE per live file message of its OWN (the newest ``MAX_OFFER``), and sends a KEEP_FILE to each linked keeper when it sends
  or forwards a file. Nothing is sent to a neighbour that did not say KEEPER.
- A keeper accepts a KEEP_FILE only from the author of the message it names (the link's peer is the
  sender), only for a CHAT envelope it holds (live; an offer that arrives before its envelope waits
  for it, at most ``MAX_PENDING`` offers, the oldest dropped first), at most once per message, and at
  most ``MAX_KEPT`` messages at once; the expiry is the envelope's own (from the log), never the frame's. It
  then hands the adapter a :class:`KeptFile` (fetch it with the normal transfer engine, store it as
  ciphertext bound to that message) and, when the envelope is erased (expiry, unsend, equivocation),
  a :class:`KeptFileGone` (erase its blobs). The file key stays in the adapter's memory only.
- Members ignore KEEP_FILE; keepers ignore KEEPER. A malformed body is a ``bad-app-frame`` fault.

This part owns: the set of linked keepers (members), the kept messages (keepers) and the queue of
kept-file notices the adapter drains (:meth:`take`). It persists nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from peer.core.content import decode_content, encode_content
from peer.core.errors import ProtocolError
from peer.core.files import File
from peer.core.log import Key

KEEPER_TAG = 0x22
KEEP_FILE_TAG = 0x23
KEEPER_VERSION = 1
MAX_KEEP_BODY = 4096
MAX_KEPT = 4096
MAX_PENDING = 256
MAX_OFFER = 256  # files offered to a keeper when a link comes up: the newest (chat shares the link)


@dataclass(frozen=True, slots=True)
class KeptFile:
    """A keeper: the author of message ``sender:seq`` (a live CHAT envelope) says it carries ``file``."""

    sender: str
    seq: int
    expires_at: int
    file: File

    @property
    def message_id(self) -> str:
        return f"{self.sender}:{self.seq}"

    def to_json(self) -> dict[str, object]:
        return {"kept": self.message_id, "expires_at": self.expires_at, "file": self.file.info_json()}


@dataclass(frozen=True, slots=True)
class KeptFileGone:
    """A keeper: the envelope of a kept file's message was erased; erase the file's blobs."""

    message_id: str
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"gone": self.message_id, "reason": self.reason}


KeepNotice = KeptFile | KeptFileGone


def encode_keeper() -> bytes:
    return bytes([KEEPER_TAG, KEEPER_VERSION])


def encode_keep_file(seq: int, ref: File) -> bytes:
    return bytes([KEEP_FILE_TAG]) + struct.pack(">Q", seq) + encode_content(ref)


def decode_keep_file(body: bytes) -> tuple[int, File]:
    if len(body) < 10 or len(body) > MAX_KEEP_BODY or body[0] != KEEP_FILE_TAG:
        raise ProtocolError("bad-app-frame", "malformed KEEP_FILE frame")
    (seq,) = struct.unpack(">Q", body[1:9])
    try:
        content = decode_content(body[9:])
    except ProtocolError as exc:
        raise ProtocolError("bad-app-frame", "KEEP_FILE without a file content") from exc
    if not isinstance(content, File) or seq < 1 or seq >= 2**53:
        raise ProtocolError("bad-app-frame", "KEEP_FILE without a file content")
    return seq, content


class Keeping:
    def __init__(self, keeper: bool) -> None:
        self.keeper = keeper
        self.holds_files = False  # a keeper: announce KEEPER (the adapter turns it on, with a quota)
        self.keepers: set[str] = set()  # members: neighbours that said KEEPER on their current link
        self._kept: dict[Key, str] = {}  # keepers: message key -> file id
        self._pending: dict[Key, File] = {}  # keepers: offers whose envelope has not arrived yet
        self._notices: list[KeepNotice] = []

    # -- links -----------------------------------------------------------------------------------------

    def on_ready(self, peer: str) -> list[tuple[str, bytes]]:
        """A link became ready: a keeper says so (frames to send)."""
        self.keepers.discard(peer)
        return [(peer, encode_keeper())] if self.keeper and self.holds_files else []

    def on_down(self, peer: str) -> None:
        self.keepers.discard(peer)

    def on_keeper(self, peer: str, body: bytes, own_files: list[tuple[int, File]]) -> list[tuple[str, bytes]]:
        """KEEPER from ``peer``: offer it our live files, on the first KEEPER of the link only."""
        if len(body) != 2 or body[1] != KEEPER_VERSION:
            raise ProtocolError("bad-app-frame", "malformed KEEPER frame")
        if self.keeper or peer in self.keepers:
            return []
        self.keepers.add(peer)
        return [(peer, encode_keep_file(seq, ref)) for seq, ref in own_files[-MAX_OFFER:]]

    def on_sent(self, seq: int, ref: File) -> list[tuple[str, bytes]]:
        """We sent (or forwarded) a file as message ``seq``: tell the linked keepers."""
        if self.keeper:
            return []
        return [(k, encode_keep_file(seq, ref)) for k in sorted(self.keepers)]

    # -- a keeper --------------------------------------------------------------------------------------

    def on_keep_file(self, peer: str, body: bytes, chat_expiry: Callable[[Key], int | None]) -> None:
        """KEEP_FILE from ``peer`` naming its own message; ``chat_expiry(key)``: the expiry of the live
        CHAT envelope ``key`` we hold (None if we hold none). Parsed by everyone, kept by keepers."""
        seq, ref = decode_keep_file(body)
        key = (peer, seq)
        if not (self.keeper and self.holds_files) or key in self._kept or len(self._kept) >= MAX_KEPT:
            return
        expires_at = chat_expiry(key)
        if expires_at is None:  # the envelope may still be on its way (it rides the log, this does not)
            self._pending.pop(key, None)
            self._pending[key] = ref
            while len(self._pending) > MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            return
        self._keep(key, expires_at, ref)

    def on_chat(self, key: Key, expires_at: int) -> None:
        """A keeper: a CHAT envelope entered the log; an offer that came before it is taken now."""
        ref = self._pending.pop(key, None)
        if ref is not None and self.keeper and self.holds_files and len(self._kept) < MAX_KEPT:
            self._keep(key, expires_at, ref)

    def _keep(self, key: Key, expires_at: int, ref: File) -> None:
        self._kept[key] = ref.file_id
        self._notices.append(KeptFile(key[0], key[1], expires_at, ref))

    def erased(self, key: Key, reason: str) -> None:
        self._pending.pop(key, None)
        if self._kept.pop(key, None) is not None:
            self._notices.append(KeptFileGone(f"{key[0]}:{key[1]}", reason))

    def take(self) -> list[KeepNotice]:
        out, self._notices = self._notices, []
        return out


__all__ = [
    "KEEPER_TAG",
    "KEEP_FILE_TAG",
    "MAX_KEPT",
    "KeepNotice",
    "Keeping",
    "KeptFile",
    "KeptFileGone",
    "decode_keep_file",
    "encode_keep_file",
    "encode_keeper",
]
