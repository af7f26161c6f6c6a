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
          anyone: /leave (for good: only an admin can readmit you)"""


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
    from peer.core.events import MessageReceived, MessageUpdated

    if isinstance(ev, MessageReceived | MessageUpdated):
        m = ev.message
        reply = " ↩" if m.reply_to else ""
        marks = "  " + " ".join(f"{e}{len(p)}" for e, p in m.reactions) if m.reactions else ""
        edited = " (edited)" if m.edited else ""
        prefix = "* " if isinstance(ev, MessageUpdated) else ""
        body = m.text if m.file is None else file_label(m.file, m.text)
        return f"{prefix}[{room.label(m.sender)}]{reply} {body}{edited}{marks}"
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
            for member in room.members():
                link = links.get(member)
                if member == me:
                    state = "you"
                elif link is not None and (link.reachable or member not in online):
                    state = link.describe()  # direct, relayed, connecting…, unreachable (reason)
                else:
                    state = "online" if member in online else "offline"
                role = "owner" if member == room.owner else ("admin" if room.is_admin(member) else "")
                out.append(f"  {room.label(member)} ({member[:8]}) {state} {role}".rstrip())
            if room.announce:
                out.append("  announcement mode: only admins post")
        elif cmd == "/remove" and rest:
            await room.remove_member(find_member(room, rest, room.members()))
        elif cmd == "/readmit" and rest:
            await room.readmit(find_member(room, rest, room.removed_members()))
        elif cmd in ("/admin", "/unadmin") and rest:
            await room.set_admin(find_member(room, rest, room.members()), cmd == "/admin")
        elif cmd == "/announce" and rest in ("on", "off"):
            await room.set_announce(rest == "on")
        elif cmd == "/leave":
            await room.leave()
            out.append("you left the room")
            return out, True
        else:
            out.append(CHAT_HELP)
    except (ValueError, PermissionError, ProtocolError, argparse.ArgumentTypeError) as exc:  # a refusal
        out.append(f"! {exc}")
    return out, False
