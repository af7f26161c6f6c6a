"""How room events look on a terminal (and as JSON lines), and the chat's slash commands.

Shared by the CLI running a room itself and by the control socket serving another process, so a
command started on a home that is in use prints exactly what it would have printed as the owner.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from peer.core.errors import ProtocolError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

CHAT_HELP = """commands: /name NAME · /edit TEXT (your last message) · /react EMOJI (the last message)
          /save [PATH] (the latest attachment, with progress)
          /unsend (your last message) · /timer DURATION (room timer) · /who · /help · Ctrl-D quits
          admins: /remove NAME · /readmit NAME · /admin NAME · /unadmin NAME · /announce on|off
          admins: /close (new members need approval) · /open · /requests · /admit PREFIX (a request)
          anyone: /leave (for good: only an admin can readmit you)
          /search WORDS · /forward [N] ROOM (the Nth last message, 1 = last; ROOM: id prefix or invite)
          /location LAT LON [ACCURACY_M] · /lastseen on|off (show others when you were last online)
          @name in a message mentions a member (they get a bell)"""


def parse_duration(text: str) -> int:
    """``30s``, ``10m``, ``1h``, ``7d``, ``2w`` or plain seconds -> whole seconds (>= 1)."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30s, 10m, 1h, 7d)")
    seconds = int(float(m.group(1)) * _UNITS[m.group(2)])
    if seconds < 1:
        raise argparse.ArgumentTypeError("a duration must be at least 1s")
    if seconds > 365 * 86400:
        raise argparse.ArgumentTypeError("a duration must be at most 365d")
    return seconds


def event_json(ev: Any) -> dict[str, Any]:
    to_json = getattr(ev, "to_json", None)
    if callable(to_json):
        result: dict[str, Any] = to_json()
        return result
    return {"event": type(ev).__name__}


def render(room: Any, ev: Any) -> str:
    """One line for a terminal: names instead of peer ids where members set one."""
    from peer.core.events import MessageExpired, MessageReceived, MessageUpdated

    if isinstance(ev, MessageReceived | MessageUpdated):
        m = ev.message
        reply = " ↩" if m.reply_to else ""
        marks = "  " + " ".join(f"{e}{len(p)}" for e, p in m.reactions) if m.reactions else ""
        edited = " (edited)" if m.edited else ""
        prefix = "* " if isinstance(ev, MessageUpdated) else ""
        body = message_text(m) if m.file is None else file_label(m.file, message_text(m))
        return f"{prefix}[{room.label(m.sender)}]{reply} {body}{edited}{marks}"
    if isinstance(ev, MessageExpired):
        what = {"unsent": "was unsent", "equivocation": "was dropped (its author signed two versions)"}
        return f"— message {ev.id.rsplit(':', 1)[-1]} of {room.label(ev.id.rsplit(':', 1)[0])} {what.get(ev.reason, 'expired')}"
    text = str(ev)
    peer = getattr(ev, "peer", None)
    if isinstance(peer, str):
        text = text.replace(peer[:8], room.label(peer), 1)
    return text


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def file_label(file: Any, caption: str = "") -> str:
    """How an attachment shows in a terminal: ``📎 name (size, mime)`` and its caption."""
    label = f"📎 {file.name} ({human_size(file.size)}, {file.mime})"
    return f"{label} {caption}" if caption else label


def json_obj(room: Any, ev: Any) -> dict[str, Any]:
    obj = event_json(ev)
    message = getattr(ev, "message", None)
    if message is not None:
        obj["sender_name"] = room.display_name(message.sender)
        obj["mentioned"] = bool(getattr(message, "mentioned", False))  # the mention flag, always present
    return obj


def json_line(room: Any, ev: Any) -> str:
    return json.dumps(json_obj(room, ev), ensure_ascii=False)


def find_member(room: Any, name: str, candidates: list[str]) -> str:
    """The one peer among ``candidates`` whose display name or peer id (prefix) is ``name``."""
    hits = [p for p in candidates if name in (room.label(p), p) or (len(name) >= 4 and p.startswith(name))]
    if len(hits) != 1:
        raise ValueError(f"{'no' if not hits else 'more than one'} member matches {name!r}")
    return hits[0]


async def chat_command(room: Any, line: str) -> tuple[list[str], bool]:
    """Run one chat slash command in ``room``: the lines to show, and whether we left the room."""
    cmd, _, rest = line.partition(" ")
    rest = rest.strip()
    me = room.peer_id
    mine = [m for m in room.messages() if m.sender == me]
    everyone = room.messages()
    out: list[str] = []
    try:
        if cmd == "/name" and rest:
            await room.set_name(rest)
        elif cmd == "/edit" and rest and mine:
            await room.edit(mine[-1].id, rest)
        elif cmd == "/react" and rest and everyone:
            await room.react(everyone[-1].id, rest)
        elif cmd == "/unsend" and mine:
            await room.unsend(mine[-1].id)
        elif cmd == "/timer" and rest:
            await room.set_timer(parse_duration(rest))
        elif cmd == "/who":
            online = set(room.online_members())
            links = room.links()
            seen = room.last_seen()
            for member in room.members():
                link = links.get(member)
                if member == me:
                    state = "you"
                elif link is not None and (link.reachable or member not in online):
                    state = link.describe()  # direct, relayed, connecting…, unreachable (reason)
                else:
                    state = "online" if member in online else "offline"
                if member in seen and member not in online:
                    state += f", last seen {ago(seen[member])}"
                role = "owner" if member == room.owner else ("admin" if room.is_admin(member) else "")
                out.append(f"  {room.label(member)} ({member[:8]}) {state} {role}".rstrip())
            if room.announce:
                out.append("  announcement mode: only admins post")
            if room.admission_closed:
                asks = len(room.join_requests())
                out.append(f"  closed: admins admit new members ({asks} ask to join: /requests)")
            if not room.share_last_seen:
                out.append("  last seen: off (you hide yours and see no one's; /lastseen on)")
        elif cmd == "/remove" and rest:
            await room.remove_member(find_member(room, rest, room.members()))
        elif cmd == "/readmit" and rest:
            await room.readmit(find_member(room, rest, room.removed_members()))
        elif cmd in ("/admin", "/unadmin") and rest:
            await room.set_admin(find_member(room, rest, room.members()), cmd == "/admin")
        elif cmd == "/announce" and rest in ("on", "off"):
            await room.set_announce(rest == "on")
        elif cmd in _ADMISSION_COMMANDS:
            out += await _ADMISSION_COMMANDS[cmd](room, rest)
        elif cmd in _FEATURE_COMMANDS:
            out += await _FEATURE_COMMANDS[cmd](room, rest)
        elif cmd == "/leave":
            await room.leave()
            out.append("you left the room")
            return out, True
        else:
            out.append(CHAT_HELP)
    except (ValueError, PermissionError, ProtocolError, argparse.ArgumentTypeError) as exc:  # a refusal
        out.append(f"! {exc}")
    return out, False


# -- closed rooms with admin approval: /close, /open, /requests, /admit -------------------------------

_PEER_ID = re.compile(r"^[0-9a-f]{32}$")


async def _close(room: Any, rest: str) -> list[str]:
    if rest:
        return [CHAT_HELP]
    await room.close_admission()
    return ["the room is closed: new members need an admin's approval (/requests, /admit PREFIX)"]


async def _open(room: Any, rest: str) -> list[str]:
    if rest:
        return [CHAT_HELP]
    await room.open_admission()
    return ["the room is open: anyone with the invite joins"]


async def _requests(room: Any, rest: str) -> list[str]:
    if not room.admission_closed:
        return ["the room is open: no approval needed"]
    asks = room.join_requests()
    if not asks:
        return ["no one asks to join"]
    return [f"  {p[:8]} ({p}) asks to join" for p in asks]


async def _admit(room: Any, rest: str) -> list[str]:
    if not rest:
        return ["usage: /admit PREFIX (a peer id prefix from /requests, or a full peer id)"]
    asks = room.join_requests()
    hits = [p for p in asks if p == rest or (len(rest) >= 4 and p.startswith(rest))]
    if len(hits) == 1:
        peer = hits[0]
    elif not hits and _PEER_ID.match(rest):
        peer = rest  # a name ahead of its join: its ADD will admit it
    else:
        raise ValueError(f"{'no' if not hits else 'more than one'} join request matches {rest!r}")
    await room.admit(peer)
    return [f"admitted {peer[:8]}"]


_ADMISSION_COMMANDS: dict[str, Any] = {
    "/close": _close,
    "/open": _open,
    "/requests": _requests,
    "/admit": _admit,
}


# -- issue 15: how mentions, forwards and locations look; /search, /forward, /location, /lastseen -------

SEARCH_SHOWN = 20


def geo_uri(location: tuple[int, int, int | None]) -> str:
    """RFC 5870 ``geo:`` URI of a location (no map tiles: any app the user has can open it)."""
    lat, lon, acc = location
    uri = f"geo:{lat / 1e6:.6f},{lon / 1e6:.6f}"
    return uri if acc is None else f"{uri};u={acc}"


def message_text(m: Any) -> str:
    """The text of a message as a terminal shows it: a location as coordinates and a geo: link, a
    forwarded message marked with who it was forwarded from."""
    if m.location is not None:
        lat, lon, acc = m.location
        body = f"📍 {lat / 1e6:.6f}, {lon / 1e6:.6f}" + (f" (±{acc} m)" if acc is not None else "")
        body += f" {geo_uri(m.location)}"
    else:
        body = m.text
    if m.forwarded_from is not None:
        body = f"[forwarded from {m.forwarded_from}] {body}"
    return str(body)


def ago(ms: int) -> str:
    import time

    s = max(0, int(time.time() - ms / 1000))
    if s < 60:
        return "just now" if s < 5 else f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _numbered(room: Any) -> list[tuple[int, Any]]:
    """Messages with their chat number: 1 is the last one, 2 the one before..."""
    msgs = room.messages()
    return [(len(msgs) - i, m) for i, m in enumerate(msgs)]


async def _search(room: Any, rest: str) -> list[str]:
    if not rest:
        return ["usage: /search WORDS"]
    hits = {m.id for m in room.search(rest)}
    found = [(n, m) for n, m in _numbered(room) if m.id in hits]
    if not found:
        return [f"no message matches {rest!r}"]
    out = [f"{len(found)} message(s) match {rest!r} (forward one with /forward N ROOM):"]
    for n, m in found[-SEARCH_SHOWN:]:
        text = message_text(m)
        out.append(f"  #{n} [{room.label(m.sender)}] {text[:200]}{'…' if len(text) > 200 else ''}")
    return out


async def _forward(room: Any, rest: str) -> list[str]:
    parts = rest.split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[0].isdigit()):
        return [
            "usage: /forward [N] ROOM (N: the Nth last message, 1 = last; ROOM: a room id prefix or invite)"
        ]
    n = int(parts[0]) if len(parts) == 2 else 1
    where = parts[-1]
    numbered = dict(_numbered(room))
    if n not in numbered:
        raise ValueError(f"no message #{n} here")
    peer = room._peer
    if "#" in where and "://" in where:
        target = await peer.join(where)
    else:
        hits = [
            h for rid, h in peer.rooms.items() if rid.startswith(where) and len(where) >= 4 and not h.closed
        ]
        if len(hits) != 1:
            rooms = ", ".join(r[:8] for r in peer.rooms if r != room.room_id) or "none"
            raise ValueError(
                f"{'no' if not hits else 'more than one'} room matches {where!r} (rooms: {rooms})"
            )
        target = hits[0]
    if target.room_id == room.room_id:
        raise ValueError("that is this room")
    msg = await room.forward(numbered[n].id, target)
    what = f"#{n}" if msg.file is None else f"#{n} ({file_label(msg.file)}, re-sealed under a new key)"
    return [
        f"forwarded {what} to room {target.room_id[:8]} (expires with the original at the latest: {msg.id[:8]}…)"
    ]


async def _location(room: Any, rest: str) -> list[str]:
    parts = rest.replace(",", " ").split()
    if len(parts) not in (2, 3):
        return ["usage: /location LAT LON [ACCURACY_M] (degrees, e.g. /location 52.52 13.405 25)"]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError("latitude, longitude and accuracy must be numbers") from None
    await room.send_location(values[0], values[1], values[2] if len(values) == 3 else None)
    return []


async def _lastseen(room: Any, rest: str) -> list[str]:
    if rest not in ("on", "off"):
        return [f"last seen is {'on' if room.share_last_seen else 'off'} here; usage: /lastseen on|off"]
    await room.set_share_last_seen(rest == "on")
    if rest == "on":
        return ["last seen on: members may see when you were last online (and you see theirs)"]
    return ["last seen off: members are asked not to show yours (and you see no one's)"]


async def _rooms(room: Any, rest: str) -> list[str]:
    return [
        f"  {rid[:8]}{' (this room)' if rid == room.room_id else ''}"
        for rid, h in room._peer.rooms.items()
        if not h.closed
    ]


_FEATURE_COMMANDS: dict[str, Any] = {
    "/search": _search,
    "/forward": _forward,
    "/location": _location,
    "/lastseen": _lastseen,
    "/rooms": _rooms,
}
