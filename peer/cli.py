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
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peer.core.errors import ProtocolError
from peer.lineinput import raw_terminal
from peer.terminal import CHAT_HELP, parse_duration, render

__all__ = ["CHAT_HELP", "CliError", "build_parser", "main", "parse_duration", "render"]

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_KEEP_SERVE = "0.0.0.0:8090"
#: how long a command waits for a home in use to answer on its control socket (the owner may be starting)
OWNER_WAIT_S = 15.0


class CliError(Exception):
    """A failure to report as one line."""


def build_parser() -> argparse.ArgumentParser:
    # --home and -v work before or after the command: the top-level parser sets the defaults, and the
    # subcommands' copies only set what was given (SUPPRESS), so neither overwrites the other.
    home_help = "home directory (identity and store); default $EPHEMESH_HOME"
    verbose_help = "log protocol events to stderr"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)

    parser = argparse.ArgumentParser(prog="ephemesh", description="Peer-to-peer encrypted group chat.")
    parser.add_argument("--home", default=None, help=home_help)
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help=verbose_help)
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
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help=f"signaling server URL; repeat to list several bootstraps (default $EPHEMESH_PUBLIC_URL, else {DEFAULT_SERVER})",
    )
    p_new.add_argument(
        "--no-server",
        action="store_true",
        help="an invite with no server: members meet by LAN discovery (--lan)",
    )
    p_new.add_argument("--ttl", type=parse_duration, help="default message lifetime in the room")
    p_inv = room_sub.add_parser(
        "invite", parents=[common], help="print an invite of the same room listing more signaling servers"
    )
    p_inv.add_argument("invite")
    p_inv.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help="add this server (e.g. a keeper's --serve)",
    )
    p_inv.add_argument("--drop-server", action="append", default=[], metavar="URL", help="remove this server")

    lan = argparse.ArgumentParser(add_help=False)
    lan.add_argument(
        "--lan",
        action="store_true",
        help="also find members on the local network (mDNS; announces only an opaque rotating token)",
    )

    named = argparse.ArgumentParser(add_help=False, parents=[lan])
    named.add_argument("--name", help="your display name in the room")

    p = sub.add_parser("send", parents=[common, named], help="send one message and exit once delivered")
    p.add_argument("invite")
    p.add_argument("text", nargs="?", help="the message (or --file)")
    p.add_argument("--file", type=Path, metavar="PATH", help="send this file (an attachment) instead of text")
    p.add_argument("--ttl", type=parse_duration, help="lifetime of this message")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery")
    p.add_argument(
        "--all", action="store_true", help="wait for (and require) every member, not only those online"
    )

    p = sub.add_parser("listen", parents=[common, named], help="print messages and room events")
    p.add_argument("invite")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("fetch", parents=[common, named], help="save a received attachment (progress bar)")
    p.add_argument("invite")
    p.add_argument("path", type=Path, help="where to write it (a directory: the file's own name in it)")
    p.add_argument("--message", metavar="ID", help="the file message's id (default: the latest file)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the whole file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("chat", parents=[common, named], help="interactive terminal chat")
    p.add_argument("invite")
    p.add_argument("--ttl", type=parse_duration, help="lifetime of the messages you send")

    p = sub.add_parser("keep", parents=[common, lan], help="always-on peer that buffers history for rooms")
    p.add_argument("invites", nargs="+", metavar="INVITE")
    p.add_argument(
        "--file-quota",
        type=float,
        default=None,
        metavar="MB",
        help="attachments held per room (ciphertext, served to members; default 1000 MB, 0: hold none)",
    )
    p.add_argument(
        "--serve",
        nargs="?",
        const=DEFAULT_KEEP_SERVE,
        metavar="HOST:PORT",
        help=f"also run a signaling endpoint (and the web client) here, a bootstrap for these rooms (default {DEFAULT_KEEP_SERVE})",
    )
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
        from peer.net.signaling import SignalingError
        from peer.node import PeerError

        if isinstance(exc, HomeError | PeerError):
            print(f"ephemesh: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, SignalingError):
            print(f"ephemesh: signaling server: {exc}", file=sys.stderr)
            return 1
        # a bug: still one line (the traceback with -v)
        if args.verbose:
            logging.getLogger("ephemesh").exception("internal error")
        print(f"ephemesh: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


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
        return _room(args, home)
    return asyncio.run(_run_async(args, home))


def _room(args: argparse.Namespace, home: Path) -> int:
    import os

    from peer.core.invite import Invite
    from peer.home import load_or_create_identity

    if args.room_command == "invite":
        inv = Invite.parse(args.invite)
        dropped = {u.rstrip("/") for u in args.drop_server}
        kept = [u for u in [*inv.servers, *args.server] if u.rstrip("/") not in dropped]
        print(inv.with_servers(kept).url())
        return 0
    servers: list[str] = list(args.server)
    if args.no_server:
        if servers:
            raise CliError("--no-server and --server exclude each other")
        print(
            "ephemesh: this invite lists no server: members meet with --lan on one network", file=sys.stderr
        )
    elif not servers:
        servers = [os.environ.get("EPHEMESH_PUBLIC_URL") or DEFAULT_SERVER]
        if servers[0] == DEFAULT_SERVER:
            print(
                f"ephemesh: no --server or $EPHEMESH_PUBLIC_URL: this invite ({DEFAULT_SERVER}) works on this machine only",
                file=sys.stderr,
            )
    owner = load_or_create_identity(home).peer_id  # the creator owns the room (bound by the invite)
    invite = Invite.new(None, ttl_s=args.ttl, owner=owner).with_servers(servers)
    print(invite.url())
    return 0


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


class _Local:
    """The room operations run in this process, which owns the home (same surface as ControlClient)."""

    def __init__(self, peer: Any) -> None:
        from peer.control import Controller

        self.peer = peer
        self._controller = Controller(peer)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        return await self._controller.call(op, fields)

    def subscribe(self, room: str, *, history: bool) -> Any:
        return self._controller.subscribe(room, history=history)

    async def run_forever(self) -> None:
        await self.peer.run_forever()


class _OwnerGone(Exception):
    """The process owning the home exited while we worked through it."""


async def _run_async(args: argparse.Namespace, home: Path) -> int:
    """Own the home, or do the command through the process that does (its control socket).

    While the home is locked but nothing answers on its socket (the owner is starting, or has just died
    and its lock is free again) retry, for up to ``OWNER_WAIT_S``.
    """
    from peer.control import ControlClient, ControlError, ControlUnavailable
    from peer.home import HomeInUse
    from peer.node import Peer

    loop = asyncio.get_running_loop()
    deadline = loop.time() + OWNER_WAIT_S
    delay = 0.02
    state: dict[str, Any] = {}  # what a command has done so far, kept across a change of owner
    while True:
        try:
            peer = Peer(
                home=home,
                name=getattr(args, "name", None),
                auto_fetch=_auto_fetch(args),
                file_limits=_file_limits(args),
                serve=getattr(args, "serve", None),
            )
        except HomeInUse as exc:
            if getattr(args, "serve", None):
                raise CliError(f"{exc}: --serve needs this command to own the home") from None
            try:
                client = await ControlClient.connect(home)
            except ControlUnavailable:
                if loop.time() > deadline:
                    raise CliError(f"{exc}, which does not answer on its control socket") from None
                await asyncio.sleep(delay * (0.5 + random.random()))  # backoff between attempts
                delay = min(delay * 2, 0.5)
                continue
            try:
                return await _command(client, args, state)
            except ControlError as err:
                raise CliError(err.message) from None
            except _OwnerGone:
                if args.command == "chat":
                    raise CliError(f"the process that owned {home} exited") from None
                deadline = loop.time() + OWNER_WAIT_S
                continue  # send resumes (nothing sent yet, or waiting for delivery); listen and keep take over
            finally:
                await client.close()
        async with peer:
            try:
                return await _command(_Local(peer), args, state)
            except ControlError as err:
                raise CliError(err.message) from None


#: ``listen`` and ``chat`` fetch attachments up to this size as they arrive (then serve them on)
AUTO_FETCH_BYTES = 25 * 1000 * 1000


def _file_limits(args: argparse.Namespace) -> Any:
    """``keep --file-quota MB``: the keeper's per-room quota of attachments (None: the default)."""
    mb = getattr(args, "file_quota", None)
    if mb is None:
        return None
    if mb < 0:
        raise CliError("--file-quota must be 0 or more (MB)")
    from peer.core.files import FileLimits

    return FileLimits(room_quota=int(mb * 1_000_000))


def _auto_fetch(args: argparse.Namespace) -> int:
    return AUTO_FETCH_BYTES if args.command in ("listen", "chat") else 0


async def _command(ops: Any, args: argparse.Namespace, state: dict[str, Any]) -> int:
    from peer.control import ControlUnavailable

    try:
        if args.command == "send" and args.file is not None:
            from peer.cli_files import send_file

            return await send_file(ops, args, state)
        if args.command == "send":
            if args.text is None:
                raise CliError("nothing to send: give a text or --file PATH")
            return await _send(ops, args, state)
        if args.command == "fetch":
            from peer.cli_files import fetch

            return await fetch(ops, args)
        if args.command == "listen":
            return await _listen(ops, args, state)
        if args.command == "chat":
            return await _chat(ops, args)
        if args.command == "keep":
            return await _keep(ops, args)
    except ControlUnavailable:
        raise _OwnerGone() from None
    raise CliError(f"unknown command {args.command}")


async def _send(ops: Any, args: argparse.Namespace, state: dict[str, Any]) -> int:
    """Send, then wait for delivery. Exit status (README, "Sending from scripts"): 0 when at least one
    other member has the message and so does every member online (``--all``: every member); else 1.

    Resumable: if the owner of the home exits under us, the command goes on with whoever owns the home
    next (this process, or another). The send carries a random idempotency key that is committed with
    the message, so a send whose reply was lost is never sent twice.
    """
    import secrets

    loop = asyncio.get_running_loop()
    info = await ops.call("join", invite=args.invite, name=args.name, lan=args.lan)
    room = info["room"]
    if "sent" not in state:
        if "nonce" not in state:
            state["nonce"] = secrets.token_hex(16)
            state["deadline"] = loop.time() + args.timeout
            await ops.call("wait_connected", room=room, timeout=min(args.timeout, 10.0))
        reply = await ops.call("send", room=room, text=args.text, ttl=args.ttl, nonce=state["nonce"])
        state["sent"] = reply["message"]
    # from here on the message is stored in the home (the send returned after its commit)
    remaining = max(0.0, state["deadline"] - loop.time())
    res = await ops.call("wait_delivered", room=room, message=state["sent"], timeout=remaining, all=args.all)
    n, m = len(res["delivered"]), len(res["members"])
    if res["complete"]:
        print(f"delivered to {n} of {m} members", file=sys.stderr)
        return 0
    if n == 0 and not res["online"]:
        raise CliError("no other member is online: the message is stored here but was not delivered")
    missing = len(set(res["members"] if args.all else res["online"]) - set(res["delivered"]))
    raise CliError(f"delivered to {n} of {m} members; {missing} not within {args.timeout:g}s")


async def _listen(ops: Any, args: argparse.Namespace, state: dict[str, Any]) -> int:
    """Print the room's events. If the owner of the home exits, take over (or follow the next owner)
    and go on without printing a message twice."""
    me = (await ops.call("hello"))["peer"]
    info = await ops.call("join", invite=args.invite, name=args.name, lan=args.lan)
    room = info["room"]
    if "ready" not in state:
        state["ready"] = True
        ready = {"event": "ready", "room": room, "peer": me}
        if args.json:
            print(json.dumps(ready), flush=True)
        else:
            print(f"listening in room {room[:8]} as {me[:8]}", file=sys.stderr, flush=True)
    printed: set[str] = state.setdefault("printed", set())
    async for item in ops.subscribe(room, history=True):
        ev = item["event"]
        if not args.json and ev.get("event") == "attachment-progress":
            continue  # a line per chunk is for --json readers (and `ephemesh fetch`'s bar)
        if ev.get("event") == "message" and isinstance(ev.get("id"), str):
            if ev["id"] in printed:
                continue  # shown before a change of owner
            printed.add(ev["id"])
        print(json.dumps(ev, ensure_ascii=False) if args.json else item["line"], flush=True)
    if getattr(ops, "closed", False):
        raise _OwnerGone()
    return 0


async def _chat(ops: Any, args: argparse.Namespace) -> int:
    me = (await ops.call("hello"))["peer"]
    info = await ops.call("join", invite=args.invite, name=args.name, lan=args.lan)
    room = info["room"]
    names = (await ops.call("info", room=room))["names"]
    label = names.get(me) or me[:8]
    with raw_terminal(sys.stdin.fileno()) as interactive:  # before the banner: typing may start after it
        print(f"joined room {room[:8]} as {label} — type a message and press Enter")
        print(CHAT_HELP, flush=True)
        return await _chat_loop(ops, args, me, room, interactive)


def _mention_line(line: str, tty: bool) -> str:
    """A message that mentions us: a bell, and the line highlighted (reverse video on a terminal)."""
    return f"\a\x1b[7m{line}\x1b[0m" if tty else f"\a{line}"


async def _chat_loop(ops: Any, args: argparse.Namespace, me: str, room: str, interactive: bool) -> int:
    from peer.control import MAX_REQUEST_TEXT, ControlError
    from peer.lineinput import LineEditor, TooLong

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gone = asyncio.Event()
    out = sys.stdout

    def echo(data: bytes) -> None:
        out.buffer.write(data)
        out.flush()

    editor = LineEditor(
        interactive=interactive, max_bytes=MAX_REQUEST_TEXT, echo=echo if interactive else None
    )
    tty = out.isatty()

    async def show() -> None:
        async for item in ops.subscribe(room, history=True):
            ev = item["event"]
            mention = ev.get("event") == "message" and ev.get("mentioned") is True
            print(_mention_line(item["line"], tty) if mention else item["line"], flush=True)
            if ev.get("event") == "message" and ev.get("sender") != me and isinstance(ev.get("id"), str):
                await ops.call("mark_seen", room=room, ids=[ev["id"]])
        gone.set()

    shower = asyncio.create_task(show())
    try:
        done = False
        while not done:
            read = asyncio.ensure_future(reader.read(65536))
            ended = asyncio.ensure_future(gone.wait())
            await asyncio.wait({read, ended}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            if not read.done():
                read.cancel()
                break
            data = read.result()
            items = editor.feed(data) if data else editor.end()
            for item in items:
                if item is None:
                    done = True
                    break
                if isinstance(item, TooLong):
                    print(f"! line too long ({item.size:,} bytes): not sent", flush=True)
                    continue
                text = item.decode(errors="replace")
                if text.startswith("/save"):
                    from peer.cli_files import save_command

                    for out in await save_command(ops, room, text):
                        print(out, flush=True)
                    continue
                try:
                    reply = await ops.call("chat", room=room, line=text, ttl=args.ttl)
                except ControlError as exc:  # refused (e.g. too long): say so and go on
                    print(f"! {exc.message}", flush=True)
                    continue
                for line in reply.get("output", []):
                    print(line, flush=True)
                if reply.get("left"):
                    done = True
                    break
    finally:
        shower.cancel()
        with contextlib.suppress(BaseException):
            await shower
    if gone.is_set() and getattr(ops, "closed", False):
        raise _OwnerGone()
    return 0


async def _keep(ops: Any, args: argparse.Namespace) -> int:
    me = (await ops.call("hello"))["peer"]
    rooms = [await ops.call("join", invite=invite, keeper=True, lan=args.lan) for invite in args.invites]
    print(f"keeping {len(rooms)} room(s) as {me[:8]}", file=sys.stderr, flush=True)
    endpoints = (await ops.call("hello")).get("endpoints", {})
    for kind, url in sorted(endpoints.items()):
        print(f"{kind} endpoint: {url}", file=sys.stderr, flush=True)
    if isinstance(ops, _Local):
        await ops.run_forever()
        return 0
    await ops.wait_closed()
    raise _OwnerGone()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
