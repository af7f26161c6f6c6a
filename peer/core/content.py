"""What a CHAT envelope carries: the app-level content, UTF-8 JSON inside the sealed envelope.

Types (``"t"``):

==========  ===================================================================================
text        ``{"t":"text","body":str,"reply_to":msg_id|null}`` — a message (body <= 16 KiB).
profile     ``{"t":"profile","name":str}`` — the sender's display name (<= 64 chars, no control
            characters); the latest by ``(lamport, seq)`` wins. Sent with expiry 2^52 (room state).
edit        ``{"t":"edit","target":msg_id,"body":str}`` — a new body for the sender's OWN message
            ``target``; the latest edit wins. Its expiry equals the target's (it vanishes with it).
react       ``{"t":"react","target":msg_id,"emoji":str,"on":bool}`` — add/remove a reaction (1..16
            chars) to any message; per (reactor, emoji) the latest wins. Expiry = the target's.
file        ``{"t":"file","name":str,"size":int,"mime":str,"manifest":b64u,"key":b64u}`` — an
            attachment (a message): see :mod:`peer.core.files` and PROTOCOL.md "Attachments".
==========  ===================================================================================

Unknown types are a ``ProtocolError("bad-content")`` (the envelope stays in the log and is served, so
newer peers can still read it; this peer just shows nothing for it).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from peer.core.errors import ProtocolError
from peer.core.files import File, decode_file_content, file_content_obj
from peer.core.ids import check_id

MAX_TEXT_BODY = 16 * 1024
MAX_NAME = 64
MAX_EMOJI = 16


@dataclass(frozen=True, slots=True)
class Text:
    body: str = field(repr=False)
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str


@dataclass(frozen=True, slots=True)
class Edit:
    target: str
    body: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Reaction:
    target: str
    emoji: str
    on: bool = True


Content = Text | Profile | Edit | Reaction | File


def encode_content(content: Content) -> bytes:
    obj: dict[str, Any]
    if isinstance(content, Text):
        obj = {"t": "text", "body": content.body, "reply_to": content.reply_to}
    elif isinstance(content, Profile):
        obj = {"t": "profile", "name": content.name}
    elif isinstance(content, Edit):
        obj = {"t": "edit", "target": content.target, "body": content.body}
    elif isinstance(content, File):
        obj = file_content_obj(content)
    else:
        obj = {"t": "react", "target": content.target, "emoji": content.emoji, "on": content.on}
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    decode_content(data)  # never send what we would refuse
    return data


def clean_name(name: str) -> str:
    """A display name as shown: control and format characters removed, whitespace collapsed."""
    kept = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return " ".join(kept.split())[:MAX_NAME]


def _msg_id(value: object) -> str:
    if not isinstance(value, str) or value.count(":") != 1:
        raise ProtocolError("bad-content", "bad message id")
    sender, seq = value.split(":")
    check_id(sender, "message sender")
    if not (seq.isascii() and seq.isdigit()) or len(seq) > 16:
        raise ProtocolError("bad-content", "bad message id")
    return value


def _body(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT_BODY:
        raise ProtocolError("bad-content", "bad body")
    return value


def decode_content(plaintext: bytes) -> Content:
    """Parse content; ``ProtocolError`` on anything malformed, never anything else."""
    try:
        obj: Any = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad-content", "not UTF-8 JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("bad-content", "content must be an object")
    kind = obj.get("t")
    if kind == "text":
        reply_to = obj.get("reply_to")
        return Text(_body(obj.get("body")), None if reply_to is None else _msg_id(reply_to))
    if kind == "profile":
        name = obj.get("name")
        if not isinstance(name, str) or len(name) > MAX_NAME or clean_name(name) != name:
            raise ProtocolError("bad-content", "bad display name")
        return Profile(name)
    if kind == "edit":
        return Edit(_msg_id(obj.get("target")), _body(obj.get("body")))
    if kind == "react":
        emoji, on = obj.get("emoji"), obj.get("on")
        if not isinstance(emoji, str) or not 1 <= len(emoji) <= MAX_EMOJI or not isinstance(on, bool):
            raise ProtocolError("bad-content", "bad reaction")
        if any(unicodedata.category(ch)[0] == "C" and ch != "\u200d" for ch in emoji):
            raise ProtocolError("bad-content", "bad reaction")
        return Reaction(_msg_id(obj.get("target")), emoji, on)
    if kind == "file":
        return decode_file_content(obj)
    raise ProtocolError("bad-content", "unknown content type")
