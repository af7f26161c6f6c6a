"""``ephemesh`` — the command line.

Errors are one clear line on stderr and a non-zero exit, never a traceback:
exit 1 for a failure at run time (server unreachable, not delivered), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peer.core.errors import ProtocolError

DEFAULT_SERVER = "http://127.0.0.1:8080"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CliError(Exception):
    """A failure to report as one line."""


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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="home directory (identity and store); default $EPHEMESH_HOME")
    common.add_argument("-v", "--verbose", action="store_true", help="log protocol events to stderr")

    parser = argparse.ArgumentParser(prog="ephemesh", description="Peer-to-peer encrypted group chat.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the signaling server and web client")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-invite", action="store_true", help="do not print an invite for a fresh room")
    p.add_argument("--web-root", type=Path, help="directory served at / (default: the bundled web client)")
    p.add_argument("--redis", metavar="URL", help="share rooms with other instances through this Redis")
    p.add_argument("--turn-url", action="append", default=[], metavar="URL", help="TURN server to hand out")
    p.add_argument("--turn-secret", help="coturn static-auth-secret (or $EPHEMESH_TURN_SECRET)")
    from signaling.__main__ import add_network_args

    add_network_args(p)

    sub.add_parser("id", parents=[common], help="print your peer id and safety fingerprint")

    p = sub.add_parser("room", parents=[common], help="room commands")
    room_sub = p.add_subparsers(dest="room_command", required=True, metavar="ROOMCOMMAND")
    p_new = room_sub.add_parser("new", parents=[common], help="create a room and print its invite link")
    p_new.add_argument(
        "--server", help=f"signaling server URL (default $EPHEMESH_PUBLIC_URL, else {DEFAULT_SERVER})"
    )
    p_new.add_argument("--ttl", type=parse_duration, help="default message lifetime in the room")

    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("--name", help="your display name in the room")

    p = sub.add_parser("send", parents=[common, named], help="send one message and exit once delivered")
    p.add_argument("invite")
    p.add_argument("text")
    p.add_argument("--ttl", type=parse_duration, help="lifetime of this message")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery")

    p = sub.add_parser("listen", parents=[common, named], help="print messages and room events")
    p.add_argument("invite")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("chat", parents=[common, named], help="interactive terminal chat")
    p.add_argument("invite")
    p.add_argument("--ttl", type=parse_duration, help="lifetime of the messages you send")

    p = sub.add_parser("keep", parents=[common], help="always-on peer that buffers history for rooms")
    p.add_argument("invites", nargs="+", metavar="INVITE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # aioice/aiortc log transient ICE failures at WARNING; they are not the user's business.
        for name in ("aioice", "aiortc"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except (CliError, ProtocolError, OSError) as exc:
        print(f"ephemesh: {_describe(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        from peer.home import HomeError
        from peer.node import PeerError

        if isinstance(exc, HomeError | PeerError):
            print(f"ephemesh: {exc}", file=sys.stderr)
            return 1
        raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError):
        if exc.code.startswith("invite") or "invite" in exc.message:
            return f"invalid invite: {exc.message or exc.code}"
        return f"{exc.code}: {exc.message}" if exc.message else exc.code
    if isinstance(exc, ConnectionError | OSError) and not isinstance(exc, CliError):
        return f"network error: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
    return str(exc)


def _dispatch(args: argparse.Namespace) -> int:
    from peer.home import load_or_create_identity, resolve_home

    if args.command == "serve":
        return _serve(args)
    home = resolve_home(args.home)
    if args.command == "id":
        identity = load_or_create_identity(home)
        print(f"peer id:     {identity.peer_id}")
        print(f"fingerprint: {identity.fingerprint}")
        return 0
    if args.command == "room":
        import os

        from peer.core.invite import Invite

        server = args.server or os.environ.get("EPHEMESH_PUBLIC_URL")
        if not server:
            server = DEFAULT_SERVER
            print(
                f"ephemesh: no --server or $EPHEMESH_PUBLIC_URL: this invite ({server}) works on this machine only",
                file=sys.stderr,
            )
        invite = Invite.new(server.rstrip("/"), ttl_s=args.ttl)
        print(invite.url())
        return 0
    return asyncio.run(_run_async(args, home))


def _serve(args: argparse.Namespace) -> int:
    return asyncio.run(_serve_async(args))


async def _serve_async(args: argparse.Namespace) -> int:
    """Start the server, then print where it is and an invite (so a printed URL is always live).

    The URL printed (and put in invites) is ``--public-url`` / ``$EPHEMESH_PUBLIC_URL``; without it, the
    bind address, or for a wildcard bind (``0.0.0.0``) this machine's first non-loopback address, never
    127.0.0.1 unless that is all there is.
    """
    import os
    import signal
    from dataclasses import replace

    from peer.core.invite import Invite
    from signaling.__main__ import _DEFAULT_WEB, network_options
    from signaling.app import start_server
    from signaling.config import SignalingConfig, TurnConfig, public_urls

    web_root = args.web_root if args.web_root is not None else _DEFAULT_WEB
    logging.getLogger("signaling").setLevel(logging.INFO)
    secret = args.turn_secret or os.environ.get("EPHEMESH_TURN_SECRET")
    if args.turn_url and not secret:
        raise CliError("--turn-url needs --turn-secret or $EPHEMESH_TURN_SECRET")
    turn = TurnConfig(urls=tuple(args.turn_url), secret=secret) if args.turn_url and secret else None
    net = network_options(args, os.environ)
    try:
        config = SignalingConfig(
            host=args.host, port=args.port, web_root=web_root, turn=turn, redis_url=args.redis, **net
        )
        candidates = public_urls(config, args.port)
        if config.public_url is None and args.port != 0 and config.public_host is None:
            # a wildcard bind: advertise the first address (invites, and the host of the STUN URL)
            config = SignalingConfig(
                host=args.host,
                port=args.port,
                web_root=web_root,
                turn=turn,
                redis_url=args.redis,
                **{**net, "public_url": candidates[0]},
            )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    runner, port = await start_server(config)
    urls = public_urls(config, port)
    others = [u for u in public_urls(replace(config, public_url=None), port) if u != urls[0]]
    print(f"ephemesh signaling server and web client on {urls[0]}", flush=True)
    for other in others if net["public_url"] is None else []:
        print(f"  also reachable at {other} (choose with --public-url)", flush=True)
    if not args.no_invite:
        print(f"invite link for a fresh room: {Invite.new(urls[0]).url()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


async def _run_async(args: argparse.Namespace, home: Any) -> int:
    from peer.node import Peer

    async with Peer(home=home, name=getattr(args, "name", None)) as peer:
        if args.command == "send":
            return await _send(peer, args)
        if args.command == "listen":
            return await _listen(peer, args)
        if args.command == "chat":
            return await _chat(peer, args)
        if args.command == "keep":
            return await _keep(peer, args)
    raise CliError(f"unknown command {args.command}")


async def _send(peer: Any, args: argparse.Namespace) -> int:
    room = await peer.join(args.invite)
    await room.wait_connected(timeout=min(args.timeout, 10.0))
    msg = await room.send(args.text, ttl=args.ttl)
    online = room.online_members()
    if not online:
        raise CliError("no other member is online: the message is stored here but was not delivered")
    delivered = await room.wait_delivered(msg.id, timeout=args.timeout)
    missing = sorted(set(online) - set(delivered))
    if missing:
        raise CliError(
            f"not delivered to {len(missing)} of {len(online)} online members within {args.timeout:g}s"
        )
    print(f"delivered to {len(delivered)} member(s)", file=sys.stderr)
    return 0


def _event_json(ev: Any) -> dict[str, Any]:
    to_json = getattr(ev, "to_json", None)
    if callable(to_json):
        result: dict[str, Any] = to_json()
        return result
    return {"event": type(ev).__name__}


def render(room: Any, ev: Any) -> str:
    """One line for a terminal: names instead of peer ids where members set one."""
    from peer.node import MessageReceived, MessageUpdated

    if isinstance(ev, MessageReceived | MessageUpdated):
        m = ev.message
        reply = " ↩" if m.reply_to else ""
        marks = "  " + " ".join(f"{e}{len(p)}" for e, p in m.reactions) if m.reactions else ""
        edited = " (edited)" if m.edited else ""
        prefix = "* " if isinstance(ev, MessageUpdated) else ""
        return f"{prefix}[{room.label(m.sender)}]{reply} {m.text}{edited}{marks}"
    text = str(ev)
    peer = getattr(ev, "peer", None)
    if isinstance(peer, str):
        text = text.replace(peer[:8], room.label(peer), 1)
    return text


def _json_line(room: Any, ev: Any) -> str:
    obj = _event_json(ev)
    message = getattr(ev, "message", None)
    if message is not None:
        obj["sender_name"] = room.display_name(message.sender)
    return json.dumps(obj, ensure_ascii=False)


async def _listen(peer: Any, args: argparse.Namespace) -> int:
    room = await peer.join(args.invite)
    ready = {"event": "ready", "room": room.room_id, "peer": peer.peer_id}
    if args.json:
        print(json.dumps(ready), flush=True)
    else:
        print(f"listening in room {room.room_id[:8]} as {peer.peer_id[:8]}", file=sys.stderr, flush=True)
    async for ev in room.events(history=True):
        print(_json_line(room, ev) if args.json else render(room, ev), flush=True)
    return 0


CHAT_HELP = """commands: /name NAME · /edit TEXT (your last message) · /react EMOJI (the last message)
          /unsend (your last message) · /timer DURATION (room timer) · /who · /help · Ctrl-D quits"""


async def _chat(peer: Any, args: argparse.Namespace) -> int:
    room = await peer.join(args.invite)
    print(f"joined room {room.room_id[:8]} as {room.label(peer.peer_id)} — type a message and press Enter")
    print(CHAT_HELP, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def show() -> None:
        async for ev in room.events(history=True):
            print(render(room, ev), flush=True)
            message = getattr(ev, "message", None)
            if message is not None and message.sender != peer.peer_id:
                await room.mark_seen([message.id])

    shower = asyncio.create_task(show())
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip("\n")
            if text.startswith("/"):
                await _chat_command(peer, room, text)
            elif text.strip():
                await room.send(text, ttl=args.ttl)
    finally:
        shower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shower
    return 0


async def _chat_command(peer: Any, room: Any, line: str) -> None:
    cmd, _, rest = line.partition(" ")
    rest = rest.strip()
    mine = [m for m in room.messages() if m.sender == peer.peer_id]
    everyone = room.messages()
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
                if member == peer.peer_id:
                    state = "you"
                elif link is not None and (link.reachable or member not in online):
                    state = link.describe()  # direct, relayed, connecting…, unreachable (reason)
                else:
                    state = "online" if member in online else "offline"
                print(f"  {room.label(member)} ({member[:8]}) {state}", flush=True)
        else:
            print(CHAT_HELP, flush=True)
    except (ValueError, ProtocolError, argparse.ArgumentTypeError) as exc:  # a refusal, never a traceback
        print(f"! {exc}", flush=True)


async def _keep(peer: Any, args: argparse.Namespace) -> int:
    rooms = [await peer.join(invite, keeper=True) for invite in args.invites]
    print(f"keeping {len(rooms)} room(s) as {peer.peer_id[:8]}", file=sys.stderr, flush=True)
    await peer.run_forever()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
