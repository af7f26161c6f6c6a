"""The CLI's attachment commands: ``send --file``, ``fetch`` (a tqdm progress bar) and chat's ``/save``.

They work through the same operations as every command (this process owning the home, or the one that
does, over its control socket): ``send_file``, ``files``, ``save``; progress comes from the room's
``attachment-progress`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _resolve(text: str) -> Path:
    return Path(text).expanduser().resolve()


def _is_file(path: Path) -> bool:
    return path.is_file()


def _error(message: str) -> Exception:
    from peer.cli import CliError

    return CliError(message)


async def send_file(ops: Any, args: Any, state: dict[str, Any]) -> int:
    """``ephemesh send INVITE --file PATH``: send the file, then wait for the message's delivery (the
    file itself is fetched by members from whoever holds it; this process serves it while it runs)."""
    loop = asyncio.get_running_loop()
    path = _resolve(str(args.file))
    if not _is_file(path):
        raise _error(f"no such file: {args.file}")
    info = await ops.call("join", invite=args.invite, name=args.name)
    room = info["room"]
    if "sent" not in state:
        state["deadline"] = loop.time() + args.timeout
        await ops.call("wait_connected", room=room, timeout=min(args.timeout, 10.0))
        reply = await ops.call("send_file", room=room, path=str(path), ttl=args.ttl)
        state["sent"] = reply["message"]
        print(f"sent {reply['file']['name']} as message {reply['message']}", file=sys.stderr)
    remaining = max(0.0, state["deadline"] - loop.time())
    res = await ops.call("wait_delivered", room=room, message=state["sent"], timeout=remaining, all=args.all)
    n, m = len(res["delivered"]), len(res["members"])
    if not res["complete"]:
        raise _error(f"delivered to {n} of {m} members within {args.timeout:g}s")
    # a one-shot sender stays until a whole copy of the file has left (someone can serve it on)
    remaining = max(0.0, state["deadline"] - loop.time())
    served = await ops.call("wait_served", room=room, message=state["sent"], timeout=remaining)
    if not served["complete"]:
        raise _error(
            f"delivered to {n} of {m} members, but nobody fetched the whole file within {args.timeout:g}s"
            " (it stays available while this home is online)"
        )
    print(f"delivered to {n} of {m} members; the file was fetched", file=sys.stderr)
    return 0


async def _pick(ops: Any, room: str, message: str | None) -> dict[str, Any]:
    files = (await ops.call("files", room=room))["files"]
    if message is not None:
        for f in files:
            if f["message"] == message:
                return dict(f)
        raise _error(f"no attachment with message id {message} in this room")
    if not files:
        raise _error("no attachment in this room (yet)")
    return dict(files[-1])


async def _pick_when_synced(ops: Any, room: str, message: str | None, timeout: float) -> dict[str, Any]:
    """:func:`_pick` once we have caught up with whoever is online; "none" only once we have (a slow
    link-up, e.g. a loaded machine, is waited for up to ``timeout``, not taken for an empty room)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = max(0.1, min(10.0, deadline - loop.time()))
        synced = (await ops.call("wait_connected", room=room, timeout=left))["complete"]
        try:
            return await _pick(ops, room, message)
        except Exception:
            if synced or loop.time() >= deadline:
                raise


async def _save_with_progress(
    ops: Any, room: str, f: dict[str, Any], path: Path, timeout: float, bar: bool
) -> str:
    progress = tqdm(
        total=f["size"], unit="B", unit_scale=True, desc=f["name"][:30], disable=not bar, file=sys.stderr
    )
    progress.update(min(f["held"], f["size"]))

    async def follow() -> None:
        async for item in ops.subscribe(room, history=False):
            ev = item["event"]
            if ev.get("event") == "attachment-progress" and ev.get("id") == f["message"]:
                progress.update(max(0, ev["bytes"] - progress.n))

    follower = asyncio.ensure_future(follow())
    try:
        reply = await ops.call("save", room=room, message=f["message"], path=str(path), timeout=timeout)
        progress.update(max(0, f["size"] - progress.n))
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
        progress.close()
    return str(reply["path"])


async def fetch(ops: Any, args: Any) -> int:
    """``ephemesh fetch INVITE PATH [--message ID]``: fetch, verify and write an attachment."""
    info = await ops.call("join", invite=args.invite, name=args.name)
    room = info["room"]
    f = await _pick_when_synced(ops, room, args.message, args.timeout)
    out = await _save_with_progress(
        ops, room, f, _resolve(str(args.path)), args.timeout, bar=not args.no_progress
    )
    print(f"saved {out}", file=sys.stderr)
    return 0


async def save_command(ops: Any, room: str, line: str) -> list[str]:
    """chat's ``/save [PATH]``: the latest attachment to PATH (default: the current directory)."""
    from peer.control import ControlError

    _, _, rest = line.partition(" ")
    target = _resolve(rest.strip() or ".")
    try:
        f = await _pick(ops, room, None)
        out = await _save_with_progress(ops, room, f, target, 600.0, bar=True)
    except ControlError as exc:
        return [f"! {exc.message}"]
    except Exception as exc:
        from peer.cli import CliError

        if isinstance(exc, CliError):
            return [f"! {exc}"]
        raise
    return [f"saved {out}"]
