"""Local control of the process that owns a home (see docs/control.md).

One process owns a home: it holds the home's lock (:class:`peer.home.HomeLock`) and serves a Unix socket,
``<home>/control.sock`` (mode 0600 in the 0700 home; connections from another uid are refused). Other
commands started on that home (``ephemesh send`` from a cron job while ``ephemesh keep`` runs) connect
to it and do their work through it, so there is only ever one writer of the home's store and seq counters.

The protocol is JSON lines, one object per line (UTF-8, at most :data:`MAX_LINE` bytes with the newline).
A request is ``{"id": ..., "op": "...", ...fields}``; each gets exactly one reply ``{"id", "ok": true,
...result}`` or ``{"id", "ok": false, "error": code, "message": text}``. ``subscribe`` replies, then
streams ``{"id", "event": {...}, "line": text}`` until the room closes (``{"id", "end": true}``) or the
client hangs up. Bad input gets an error line; a line over the limit ends the connection after it.

:class:`Controller` implements the operations on a :class:`peer.node.Peer` and is what the CLI calls when
it owns the home itself; :class:`ControlClient` has the same ``call``/``subscribe`` surface over the
socket, so a command behaves the same whichever process it runs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from peer import control_files as _control_files
from peer.core.content import MAX_CONTENT, ContentTooLong
from peer.core.errors import ProtocolError
from peer.home import CONTROL_SOCKET

if TYPE_CHECKING:
    from peer.node import Peer, RoomHandle

log = logging.getLogger(__name__)

VERSION: Final = 1
#: a message is at most 64,000 bytes of content; an event line carries its text twice (event and line)
MAX_LINE: Final = 512 * 1024
MAX_CLIENTS: Final = 16
MAX_INFLIGHT: Final = 8  # concurrent requests per connection
MAX_SUBSCRIPTIONS: Final = 4  # per connection
#: a text in a request: longer than any message may be, so the refusal is the clear "message too long"
MAX_REQUEST_TEXT: Final = 4 * MAX_CONTENT
MAX_BUFFERED: Final = 4 << 20  # bytes queued to a client that does not read: past this it is dropped
MAX_TIMEOUT_S: Final = 3600.0
MAX_IDS: Final = 1024
#: when the owner closes, requests that change something get this long to finish (waits are cut at once:
#: the client retries them with whoever owns the home next)
CLOSE_GRACE_S: Final = 5.0
_WAITS: Final = frozenset({"wait_connected", "wait_delivered", "subscribe"})


class ControlError(Exception):
    """An operation failed; ``code`` is stable, the message is one line for a user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControlUnavailable(Exception):
    """Nothing answers on the home's control socket (the owner is starting, or has just exited)."""


# -- addresses -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def socket_address(home: Path) -> Iterator[str]:
    """The path to bind/connect. A Unix socket path is limited to ~107 bytes: for a deeper home, go
    through ``/proc/self/fd/<dirfd>`` (Linux), which names the same file."""
    path = str(home / CONTROL_SOCKET)
    if len(os.fsencode(path)) < 100:
        yield path
        return
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{CONTROL_SOCKET}"
    finally:
        os.close(fd)


# -- request fields ----------------------------------------------------------------------------------------


def _bad(message: str) -> ControlError:
    return ControlError("bad-request", message)


def _str(req: Mapping[str, Any], name: str, *, max_len: int = 4096, optional: bool = False) -> str | None:
    value = req.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _bad(f"'{name}' must be a string of at most {max_len} characters")
    return value


def _req_str(req: Mapping[str, Any], name: str, *, max_len: int = 4096) -> str:
    value = _str(req, name, max_len=max_len)
    assert value is not None
    return value


def _bool(req: Mapping[str, Any], name: str) -> bool:
    value = req.get(name, False)
    if not isinstance(value, bool):
        raise _bad(f"'{name}' must be true or false")
    return value


def _number(
    req: Mapping[str, Any], name: str, *, lo: float, hi: float, default: float | None = None
) -> float:
    value = req.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _bad(f"'{name}' must be a number in [{lo:g}, {hi:g}]")
    return float(value)


def _opt_int(req: Mapping[str, Any], name: str, *, lo: int, hi: int) -> int | None:
    value = req.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(f"'{name}' must be an integer in [{lo}, {hi}]")
    return value


# -- the operations ---------------------------------------------------------------------------------------


class Controller:
    """The control operations, run on a :class:`Peer` in this process."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def _room(self, req: Mapping[str, Any]) -> RoomHandle:
        room_id = _req_str(req, "room", max_len=64)
        handle = self.peer.rooms.get(room_id)
        if handle is None or handle.closed:
            raise ControlError("no-room", "this process is not in that room")
        return handle

    async def call(self, op: str, req: Mapping[str, Any]) -> dict[str, Any]:
        """Run one operation; raises :class:`ControlError` (or PeerError/ValueError/ProtocolError)."""
        handler = _OPS.get(op)
        if handler is None:
            raise ControlError("unknown-op", f"unknown operation {op[:40]!r}")
        result: dict[str, Any] = await handler(self, req)
        return result

    async def _hello(self, req: Mapping[str, Any]) -> dict[str, Any]:
        rooms = [{"room": h.room_id, "keeper": h.keeper} for h in self.peer.rooms.values() if not h.closed]
        endpoints = {k: v for k, v in (("serve", self.peer.serve_url), ("lan", self.peer.lan_url)) if v}
        return {
            "version": VERSION,
            "peer": self.peer.peer_id,
            "pid": os.getpid(),
            "rooms": rooms,
            "endpoints": endpoints,
        }

    async def _join(self, req: Mapping[str, Any]) -> dict[str, Any]:
        invite = _req_str(req, "invite", max_len=8192)
        keeper = _bool(req, "keeper")
        lan = _bool(req, "lan")
        name = _str(req, "name", max_len=256, optional=True)
        handle = await self.peer.join(invite, keeper=keeper, lan=lan)
        if name and not handle.keeper and handle.display_name(self.peer.peer_id) != name:
            await handle.set_name(name)
        return self._room_info(handle)

    def _room_info(self, handle: RoomHandle) -> dict[str, Any]:
        return {
            "room": handle.room_id,
            "keeper": handle.keeper,
            "members": handle.members(),
            "online": handle.online_members(),
        }

    async def _info(self, req: Mapping[str, Any]) -> dict[str, Any]:
        handle = self._room(req)
        info = self._room_info(handle)
        info["names"] = {m: handle.display_name(m) for m in handle.members()}
        return info

    async def _wait_connected(self, req: Mapping[str, Any]) -> dict[str, Any]:
        handle = self._room(req)
        timeout = _number(req, "timeout", lo=0, hi=MAX_TIMEOUT_S)
        try:
            online = await handle.wait_connected(timeout)
            complete = True
        except TimeoutError:
            online, complete = set(handle.online_members()), False
        return {"online": sorted(online), "complete": complete}

    async def _send(self, req: Mapping[str, Any]) -> dict[str, Any]:
        handle = self._room(req)
        text = _req_str(req, "text", max_len=MAX_REQUEST_TEXT)
        ttl = _opt_int(req, "ttl", lo=0, hi=10 * 365 * 86400)
        reply_to = _str(req, "reply_to", max_len=128, optional=True)
        nonce = _str(req, "nonce", max_len=64, optional=True)
        if handle.keeper:
            raise ControlError("keeper", "the process owning this home keeps this room and cannot send in it")
        new = True
        try:
            if nonce is not None and reply_to is None:  # both return after the commit
                message_id, new = await handle.send_once(text, nonce, ttl=ttl)
            else:
                message_id = (await handle.send(text, ttl=ttl, reply_to=reply_to)).id
        except ContentTooLong as exc:
            raise ControlError("too-long", str(exc)) from None
        return {
            "message": message_id,
            "new": new,
            "members": handle.others(),
            "online": handle.online_members(),
        }

    async def _wait_delivered(self, req: Mapping[str, Any]) -> dict[str, Any]:
        from peer.node import DeliveryTimeout

        handle = self._room(req)
        message_id = _req_str(req, "message", max_len=128)
        timeout = _number(req, "timeout", lo=0, hi=MAX_TIMEOUT_S)
        everyone = _bool(req, "all")
        try:
            delivered = await handle.wait_delivered(message_id, timeout, everyone=everyone)
            complete = True
        except DeliveryTimeout as exc:
            delivered, complete = exc.delivered, False
        return {
            "delivered": sorted(delivered),
            "members": handle.others(),
            "online": handle.online_members(),
            "complete": complete,
        }

    async def _chat(self, req: Mapping[str, Any]) -> dict[str, Any]:
        from peer.terminal import chat_command

        handle = self._room(req)
        line = _req_str(req, "line", max_len=MAX_REQUEST_TEXT)
        ttl = _opt_int(req, "ttl", lo=0, hi=10 * 365 * 86400)
        if handle.keeper:
            raise ControlError("keeper", "the process owning this home keeps this room and cannot chat in it")
        if line.startswith("/"):
            output, left = await chat_command(handle, line)
            return {"output": output, "left": left}
        if line.strip():
            try:
                msg = await handle.send(line, ttl=ttl)
            except (PermissionError, ContentTooLong) as exc:  # announcement mode; a text over the limit
                return {"output": [f"! {exc}"]}
            return {"output": [], "message": msg.id}
        return {"output": []}

    async def _mark_seen(self, req: Mapping[str, Any]) -> dict[str, Any]:
        handle = self._room(req)
        ids = req.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(isinstance(i, str) for i in ids):
            raise _bad(f"'ids' must be a list of at most {MAX_IDS} message ids")
        await handle.mark_seen(ids)
        return {}

    def subscribe(self, room: str, *, history: bool) -> AsyncIterator[dict[str, Any]]:
        """The room's events as ``{"event": json, "line": text}`` (history first if asked); raises
        :class:`ControlError` at once for a room this process is not in."""
        return self._stream(self._room({"room": room}), history)

    async def _stream(self, handle: RoomHandle, history: bool) -> AsyncIterator[dict[str, Any]]:
        from peer.terminal import json_obj, render

        async for ev in handle.events(history=history):
            yield {"event": json_obj(handle, ev), "line": render(handle, ev)}


_OPS: dict[str, Callable[[Controller, Mapping[str, Any]], Any]] = {
    "hello": Controller._hello,
    "join": Controller._join,
    "info": Controller._info,
    "wait_connected": Controller._wait_connected,
    "send": Controller._send,
    "wait_delivered": Controller._wait_delivered,
    "chat": Controller._chat,
    "mark_seen": Controller._mark_seen,
}
_OPS.update(_control_files.OPS)


def describe(exc: BaseException) -> tuple[str, str]:
    """``(code, one-line message)`` for an operation failure."""
    from peer.attachments import AttachmentError
    from peer.core.files import FileLimitError
    from peer.node import PeerError

    if isinstance(exc, AttachmentError | FileLimitError):
        return exc.code, str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", "timed out"

    if isinstance(exc, ControlError):
        return exc.code, exc.message
    if isinstance(exc, ProtocolError):
        return exc.code, exc.message or exc.code
    if isinstance(exc, PeerError):
        return "peer", str(exc)
    if isinstance(exc, PermissionError):
        return "forbidden", str(exc)
    if isinstance(exc, ValueError | KeyError):
        return "invalid", str(exc)
    return "internal", type(exc).__name__


# -- the server ------------------------------------------------------------------------------------------


class ControlServer:
    """Serves :class:`Controller` on the home's Unix socket. Every bound is per connection or global."""

    def __init__(self, controller: Controller, home: Path) -> None:
        self._controller = controller
        self._home = home
        self._server: asyncio.base_events.Server | None = None
        self._clients: dict[asyncio.Task[None], _Connection] = {}

    async def start(self) -> None:
        with socket_address(self._home) as addr:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(addr)  # a stale socket of an owner that died: we hold the lock now
            self._server = await asyncio.start_unix_server(self._accept, path=addr, limit=MAX_LINE)
            os.chmod(addr, 0o600)

    async def close(self) -> None:
        """Stop accepting, let changes in flight finish (bounded), end every connection, remove the socket.

        Called before the owner closes its rooms, so a ``send`` that was accepted is committed and
        answered; waits and subscriptions end at once (their clients see the connection close).
        """
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        with socket_address(self._home) as addr, contextlib.suppress(FileNotFoundError):
            os.unlink(addr)
        clients = list(self._clients.items())
        await asyncio.gather(*(conn.shutdown() for _, conn in clients))
        # each connection task ends on its own once its transport is closed (never cancelled: asyncio's
        # stream callback would log a cancelled client task as an error)
        if clients:
            await asyncio.wait([task for task, _ in clients])
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= MAX_CLIENTS or not _same_user(writer):
            with contextlib.suppress(ConnectionError):
                writer.write(_line({"id": None, "ok": False, "error": "busy", "message": "refused"}))
                await writer.drain()
            writer.close()
            return
        conn = _Connection(self._controller, reader, writer)
        self._clients[task] = conn
        try:
            await conn.run()
        finally:
            del self._clients[task]


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class _Connection:
    def __init__(
        self, controller: Controller, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._controller = controller
        self._reader = reader
        self._writer = writer
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._subscriptions = 0
        self._dead = False
        self._closing = False

    async def shutdown(self) -> None:
        """End this connection: cut waits, give changes in flight ``CLOSE_GRACE_S``, close the transport."""
        self._closing = True
        for task, op in list(self._tasks.items()):
            if op in _WAITS:
                task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_GRACE_S)
        for task in list(self._tasks):
            task.cancel()
        self._writer.close()

    def _send(self, obj: dict[str, Any]) -> None:
        if self._dead or self._writer.is_closing():
            return
        data = _line(obj)
        if len(data) > MAX_LINE:
            data = _line(
                {"id": obj.get("id"), "ok": False, "error": "too-large", "message": "reply too large"}
            )
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            self._dead = True  # the client does not read: drop it rather than buffer without bound
            self._writer.transport.abort()

    async def run(self) -> None:
        try:
            while not self._dead:
                try:
                    raw = await self._reader.readline()
                except ValueError:  # over the limit
                    self._send(
                        {
                            "id": None,
                            "ok": False,
                            "error": "too-large",
                            "message": f"line over {MAX_LINE} bytes",
                        }
                    )
                    return
                except ConnectionError:
                    return
                if not raw:
                    return
                self._handle(raw)
                with contextlib.suppress(ConnectionError):
                    await self._writer.drain()
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                self._writer.close()

    def _handle(self, raw: bytes) -> None:
        try:
            req = json.loads(raw)
        except (ValueError, RecursionError):
            self._send({"id": None, "ok": False, "error": "bad-json", "message": "not a JSON line"})
            return
        if not isinstance(req, dict):
            self._send({"id": None, "ok": False, "error": "bad-request", "message": "not a JSON object"})
            return
        rid = req.get("id")
        if not (rid is None or isinstance(rid, int | str)) or (isinstance(rid, str) and len(rid) > 64):
            rid = None
        if self._closing:  # read but not run: the client may safely retry with the next owner
            self._send({"id": rid, "ok": False, "error": "closing", "message": "the owner is exiting"})
            return
        op = req.get("op")
        if not isinstance(op, str):
            self._send({"id": rid, "ok": False, "error": "bad-request", "message": "'op' missing"})
            return
        if len(self._tasks) >= MAX_INFLIGHT:
            self._send({"id": rid, "ok": False, "error": "busy", "message": "too many requests in flight"})
            return
        if op == "subscribe":
            if self._subscriptions >= MAX_SUBSCRIPTIONS:
                self._send({"id": rid, "ok": False, "error": "busy", "message": "too many subscriptions"})
                return
            self._spawn("subscribe", self._subscribe(rid, req))
        else:
            self._spawn(op, self._call(rid, op, req))

    def _spawn(self, op: str, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks[task] = op
        task.add_done_callback(lambda t: self._tasks.pop(t, None))

    async def _call(self, rid: Any, op: str, req: dict[str, Any]) -> None:
        try:
            result = await self._controller.call(op, req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code, message = describe(exc)
            if code == "internal":
                log.exception("control operation %s failed", op[:40])
            self._send({"id": rid, "ok": False, "error": code, "message": message})
            return
        self._send({**result, "id": rid, "ok": True})

    async def _subscribe(self, rid: Any, req: dict[str, Any]) -> None:
        self._subscriptions += 1
        try:
            try:
                room = _req_str(req, "room", max_len=64)
                history = _bool(req, "history")
                stream = self._controller.subscribe(room, history=history)
            except ControlError as exc:
                self._send({"id": rid, "ok": False, "error": exc.code, "message": exc.message})
                return
            self._send({"id": rid, "ok": True})
            async for item in stream:
                self._send({**item, "id": rid})
            self._send({"id": rid, "end": True})
        finally:
            self._subscriptions -= 1


# -- the client ------------------------------------------------------------------------------------------


class ControlClient:
    """A connection to the control socket of the process owning ``home``.

    ``call(op, **fields)`` returns the reply's fields or raises :class:`ControlError`; ``subscribe``
    iterates a room's events. If the owner goes away, pending calls raise :class:`ControlUnavailable`.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[int, asyncio.Queue[dict[str, Any] | None]] = {}
        self._closed = asyncio.Event()
        self._task = asyncio.create_task(self._read_loop(), name="control-client")

    @classmethod
    async def connect(cls, home: Path) -> ControlClient:
        try:
            with socket_address(home) as addr:
                reader, writer = await asyncio.open_unix_connection(addr, limit=MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as exc:
            raise ControlUnavailable(str(home)) from exc
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self._reader.readline()
                if not raw:
                    return
                obj = json.loads(raw)
                rid = obj.get("id")
                if not isinstance(rid, int):
                    continue
                queue = self._streams.get(rid)
                if queue is not None and ("event" in obj or "end" in obj):
                    queue.put_nowait(None if obj.get("end") else obj)
                    continue
                fut = self._pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(obj)
        except (ConnectionError, ValueError):
            return
        finally:
            self._closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ControlUnavailable("the process owning the home went away"))
            self._pending.clear()
            for queue in self._streams.values():
                queue.put_nowait(None)

    async def _request(self, op: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.closed:
            raise ControlUnavailable("the process owning the home went away")
        self._next += 1
        rid = self._next
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write(_line({**fields, "id": rid, "op": op}))
            await self._writer.drain()
        except ConnectionError as exc:
            self._pending.pop(rid, None)
            if fut.done():
                fut.exception()  # retrieved: we raise our own
            raise ControlUnavailable("the process owning the home went away") from exc
        return rid, await fut

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        _, reply = await self._request(op, fields)
        if reply.get("error") == "closing":
            raise ControlUnavailable("the process owning the home is exiting")
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "error")), str(reply.get("message", ""))[:500])
        return reply

    async def subscribe(self, room: str, *, history: bool) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        rid = self._next + 1
        self._streams[rid] = queue  # registered before the request, so no event can slip past
        try:
            _, reply = await self._request("subscribe", {"room": room, "history": history})
            if not reply.get("ok"):
                raise ControlError(str(reply.get("error", "error")), str(reply.get("message", ""))[:500])
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._streams.pop(rid, None)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
