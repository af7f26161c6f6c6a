"""What a CHAT envelope carries: the app-level content, UTF-8 JSON inside the sealed envelope.

Types (``"t"``):

==========  ===================================================================================
text        ``{"t":"text","body":str,"reply_to":msg_id|null}`` — a message; optional ``"mentions":
            [peer_id,...]`` (1..32 distinct) and ``"fwd":{"from_name":str}`` (forwarded). The whole
            encoded content is at most ``MAX_CONTENT`` bytes (it must fit one envelope).
profile     ``{"t":"profile","name":str}`` — the sender's display name (<= 64 chars, no control
            characters); the latest by ``(lamport, seq)`` wins. Sent with expiry 2^52 (room state).
edit        ``{"t":"edit","target":msg_id,"body":str}`` — a new body for the sender's OWN message
            ``target``; the latest edit wins. Its expiry equals the target's (it vanishes with it).
react       ``{"t":"react","target":msg_id,"emoji":str,"on":bool}`` — add/remove a reaction (1..16
            chars) to any message; per (reactor, emoji) the latest wins. Expiry = the target's.
location    ``{"t":"location","lat_e6":int,"lon_e6":int,"acc_m":int|null}`` — a shared position in
            millionths of a degree (|lat| <= 90e6, |lon| <= 180e6), accuracy in metres (0..10^6);
            optional ``"fwd"`` as for text.
file        ``{"t":"file","name":str,"size":int,"mime":str,"manifest":b64u,"key":b64u}`` — an
            attachment (a message): see :mod:`peer.core.files` and PROTOCOL.md "Attachments";
            optional ``"fwd"`` as for text (a forwarded file is re-sealed under a fresh key: see
            PROTOCOL.md "Forwarded attachments").
==========  ===================================================================================

Unknown types are a ``ProtocolError("bad-content")`` (the envelope stays in the log and is served, so
newer peers can still read it; this peer just shows nothing for it).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

from peer.core.errors import ProtocolError
from peer.core.files import File, decode_file_content, file_content_obj
from peer.core.ids import check_id

#: a text body, in code points (the byte bound ``MAX_CONTENT`` on the encoded content is the binding one)
MAX_TEXT_BODY = 64_000
MAX_NAME = 64
MAX_EMOJI = 16


@dataclass(frozen=True, slots=True)
class Forwarded:
    """``"fwd"``: the message was forwarded from another room; ``from_name`` is its original author as
    the forwarder saw them (a display name, cleaned)."""

    from_name: str


@dataclass(frozen=True, slots=True)
class Text:
    body: str = field(repr=False)
    reply_to: str | None = None
    mentions: tuple[str, ...] = ()
    fwd: Forwarded | None = None


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


@dataclass(frozen=True, slots=True)
class Location:
    lat_e6: int
    lon_e6: int
    acc_m: int | None = None
    fwd: Forwarded | None = None

    @property
    def lat(self) -> float:
        return self.lat_e6 / 1e6

    @property
    def lon(self) -> float:
        return self.lon_e6 / 1e6


Content = Text | Profile | Edit | Reaction | Location | File


def encode_content(content: Content) -> bytes:
    obj: dict[str, Any]
    if isinstance(content, Text):
        obj = {"t": "text", "body": content.body, "reply_to": content.reply_to}
        _encode_extras(obj, content)
    elif isinstance(content, Location):
        obj = {"t": "location", "lat_e6": content.lat_e6, "lon_e6": content.lon_e6, "acc_m": content.acc_m}
        _encode_extras(obj, content)
    elif isinstance(content, Profile):
        obj = {"t": "profile", "name": content.name}
    elif isinstance(content, Edit):
        obj = {"t": "edit", "target": content.target, "body": content.body}
    elif isinstance(content, File):
        obj = file_content_obj(content)
    else:
        obj = {"t": "react", "target": content.target, "emoji": content.emoji, "on": content.on}
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_CONTENT:
        raise ContentTooLong(len(data))
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
    if len(plaintext) > MAX_CONTENT:
        raise ProtocolError("bad-content", "content too long")
    try:
        obj: Any = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad-content", "not UTF-8 JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("bad-content", "content must be an object")
    kind = obj.get("t")
    if kind == "text":
        reply_to = obj.get("reply_to")
        return Text(
            _body(obj.get("body")),
            None if reply_to is None else _msg_id(reply_to),
            _mentions(obj.get("mentions", ())),
            _fwd(obj.get("fwd")),
        )
    if kind == "location":
        return _location(obj)
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
        return _file(obj)
    raise ProtocolError("bad-content", "unknown content type")


# -- features (issue 15): long text, mentions, forward, location, search ---------------------------------

#: the encoded content of one CHAT envelope, in bytes: an envelope is at most 65,529 bytes with 174 bytes
#: of header, length, GCM tag and signature around the content; the rest is headroom
MAX_CONTENT = 64_000
MAX_MENTIONS = 32
MAX_LAT_E6 = 90_000_000
MAX_LON_E6 = 180_000_000
MAX_ACC_M = 1_000_000
_PEER_ID = re.compile(r"[0-9a-f]{32}")


class ContentTooLong(ValueError):
    """A message we were asked to send does not fit one envelope (refused here, never cut)."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"message too long: {size:,} bytes once encoded, at most {MAX_CONTENT:,}"
            " (about 64,000 characters of plain text): nothing was sent"
        )
        self.size = size


def _encode_extras(obj: dict[str, Any], content: Text | Location) -> None:
    """Optional fields, present only when set (older content stays byte-identical)."""
    if isinstance(content, Text) and content.mentions:
        obj["mentions"] = list(content.mentions)
    if content.fwd is not None:
        obj["fwd"] = {"from_name": content.fwd.from_name}


def _mentions(value: object) -> tuple[str, ...]:
    if value == ():
        return ()
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_MENTIONS:
        raise ProtocolError("bad-content", "bad mentions")
    if not all(isinstance(p, str) and _PEER_ID.fullmatch(p) for p in value):
        raise ProtocolError("bad-content", "bad mentions")
    if len(set(value)) != len(value):
        raise ProtocolError("bad-content", "bad mentions")
    return tuple(value)


def _fwd(value: object) -> Forwarded | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"from_name"}:
        raise ProtocolError("bad-content", "bad forward")
    name = value["from_name"]
    if not isinstance(name, str) or len(name) > MAX_NAME or clean_name(name) != name:
        raise ProtocolError("bad-content", "bad forward")
    return Forwarded(name)


def _file(obj: dict[str, Any]) -> File:
    f = decode_file_content(obj)
    fwd = _fwd(obj.get("fwd"))
    return f if fwd is None else replace(f, forwarded_from=fwd.from_name)


def _int_in(value: object, lo: int, hi: int) -> int:
    """An integer in range; an integral float (``1e3``, ``5.0``) counts, as JSON.parse cannot tell them apart."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError("bad-content", "bad location")
    return value


def _location(obj: dict[str, Any]) -> Location:
    acc = obj.get("acc_m")
    return Location(
        _int_in(obj.get("lat_e6"), -MAX_LAT_E6, MAX_LAT_E6),
        _int_in(obj.get("lon_e6"), -MAX_LON_E6, MAX_LON_E6),
        None if acc is None else _int_in(acc, 0, MAX_ACC_M),
        _fwd(obj.get("fwd")),
    )


def location(lat: float, lon: float, accuracy_m: float | None = None) -> Location:
    """A :class:`Location` from degrees (rounded to 1e-6°, ~0.1 m) and metres; ``ValueError`` out of range."""
    import math

    values = (lat, lon) if accuracy_m is None else (lat, lon, accuracy_m)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError("latitude, longitude and accuracy must be finite numbers")
    lat_e6, lon_e6 = round(lat * 1_000_000), round(lon * 1_000_000)
    if not -MAX_LAT_E6 <= lat_e6 <= MAX_LAT_E6 or not -MAX_LON_E6 <= lon_e6 <= MAX_LON_E6:
        raise ValueError("latitude must be within ±90° and longitude within ±180°")
    acc = None if accuracy_m is None else round(accuracy_m)
    if acc is not None and not 0 <= acc <= MAX_ACC_M:
        raise ValueError(f"accuracy must be 0..{MAX_ACC_M:,} m")
    return Location(lat_e6, lon_e6, acc)


def searchable_text(content: Content) -> str:
    """What search matches for a content: a text's body (and who it was forwarded from); other types
    add their own branch here (file names, for example). Never stored: see ``peer.core.search``."""
    if isinstance(content, Text):
        return content.body if content.fwd is None else f"{content.body}\n{content.fwd.from_name}"
    if isinstance(content, Location):
        return "" if content.fwd is None else content.fwd.from_name
    if isinstance(content, File) and content.forwarded_from is not None:
        return content.forwarded_from
    return ""
