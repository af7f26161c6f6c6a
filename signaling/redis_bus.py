"""Scale-out: several signaling instances share rooms through Redis.

Model — every instance mirrors the peers of the others as *ghost* connections in its own registry:

- The sans-IO :class:`~signaling.registry.Registry` of each instance stays the only place where rules are
  applied (auth, bounds, replacement, room membership, ``peer-joined``/``peer-left``).
- A peer connected to instance B appears in instance A's registry as a ghost connection (a negative
  connection id). A's registry creates it by *re-verifying the peer's own auth proof*: B publishes the
  challenge nonce it issued together with the peer's public key and signature, and A feeds the same
  ``auth`` frame to a ghost connection opened with that nonce. A bus message therefore cannot introduce a
  peer id without that key's signature.
- B then publishes every ``join``/``leave`` its registry accepted and the disconnect (``gone``); A replays
  them on the ghost, so A's members get ``joined`` lists, ``peer-joined`` and ``peer-left`` from A's own
  registry.
- Deliveries A's registry addresses to a ghost are dropped, except ``signal`` frames: they are published
  on B's channel and B writes them to the connection if it still holds that peer id (A already applied
  the membership rules; B does not check them twice).

Redis layout (``P`` = ``config.redis_prefix``, ``I`` = a random instance id per process):

- ``P state:I`` hash: ``seq`` = last event number; ``c:<conn>`` = JSON of a connection (auth proof, auth
  time, rooms). Its TTL is ``redis_ttl_s``, refreshed every ``redis_heartbeat_s``: *its existence is the
  instance's liveness*.
- ``P bus`` channel: presence events of every instance (``auth``, ``join``, ``leave``, ``gone``, ``bye``),
  each numbered by its instance's ``seq``.
- ``P to:I`` channel: signal frames for connections of instance ``I``.

Rules:

- One writer task per instance performs every write as a MULTI/EXEC (hash update + ``seq`` + publish), in
  order: subscribers see an instance's events in ``seq`` order and the hash never lags its events.
- Start: subscribe (confirmed), write the own empty state, then load the hash of every live instance and
  replay it; bus events with ``seq`` at or below a loaded snapshot are skipped. Any gap in an instance's
  ``seq`` (lost message, instance seen for the first time mid-stream) reloads its snapshot and reconciles.
- Liveness: every ``redis_heartbeat_s`` each instance checks the state keys of the instances it mirrors.
  A missing key (the instance died and its TTL ran out) or a ``bye`` drops all its ghosts, so local members
  get ``peer-left`` within ``redis_ttl_s + redis_heartbeat_s``. Ghosts of live instances are pinged locally
  so the registry's idle timeout never fires on them.
- Replacement across instances: of two connections with one peer id, the one with the greater
  ``(auth time ms, instance id)`` wins on every instance. A local auth that replaces a ghost takes a time
  above the ghost's, so a clock behind cannot undo a reconnect. The losing instance replays the winner's
  auth into a ghost, and its registry closes the local connection with ``replaced`` (4001).
- Not serialised across instances: two instances may each admit a member to a room one short of
  ``max_peers_per_room`` (the room then holds one more); a ghost refused that way simply stays out of the
  room locally.
- A malformed bus message is dropped and counted (``ProtocolError`` ``bad-bus``); it never stops the bus.
  Nothing here logs frames, payloads or signatures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from peer.core.errors import ProtocolError
from signaling import protocol
from signaling.config import SignalingConfig
from signaling.registry import Close, Delivery, Send

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline, PubSub

    from signaling.app import Hub

log = logging.getLogger("ephemesh.signaling.redis")

_IID = re.compile(r"[0-9a-f]{16}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
MAX_BUS_MESSAGE = 512 * 1024  # a signal frame (<= 2 x 128 KiB of JSON) plus envelope

# ----------------------------------------------------------------------------------- bus messages


@dataclass(frozen=True, slots=True)
class AuthProof:
    """What lets another instance re-verify a peer's authentication."""

    peer: str
    pubkey: bytes
    nonce: bytes
    sig: bytes
    t_ms: int


@dataclass(frozen=True, slots=True)
class AuthEvent:
    iid: str
    seq: int
    conn: int
    proof: AuthProof


@dataclass(frozen=True, slots=True)
class JoinEvent:
    iid: str
    seq: int
    conn: int
    room: str


@dataclass(frozen=True, slots=True)
class LeaveEvent:
    iid: str
    seq: int
    conn: int
    room: str


@dataclass(frozen=True, slots=True)
class GoneEvent:
    iid: str
    seq: int
    conn: int


@dataclass(frozen=True, slots=True)
class ByeEvent:
    iid: str
    seq: int


BusEvent = AuthEvent | JoinEvent | LeaveEvent | GoneEvent | ByeEvent


@dataclass(frozen=True, slots=True)
class SignalForward:
    """A signal frame for connection ``conn`` of the receiving instance, if it still is ``peer``."""

    conn: int
    peer: str
    frame: dict[str, str]


@dataclass(frozen=True, slots=True)
class ConnRecord:
    """One connection in an instance's state hash."""

    proof: AuthProof
    rooms: frozenset[str]


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad-bus", message)


def _load(data: object) -> dict[str, Any]:
    if isinstance(data, bytes):
        if len(data) > MAX_BUS_MESSAGE:
            raise _bad("message too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("not UTF-8") from exc
    if not isinstance(data, str):
        raise _bad("not text")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _bad("not JSON") from exc
    if not isinstance(obj, dict):
        raise _bad("not an object")
    return obj


def _str(obj: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _bad(f"bad '{name}'")
    return value


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise _bad(f"bad '{name}'")
    return value


def _b64(obj: dict[str, Any], name: str, length: int) -> bytes:
    try:
        value = protocol.b64u_decode(_str(obj, name))
    except ProtocolError as exc:
        raise _bad(f"bad '{name}'") from exc
    if len(value) != length:
        raise _bad(f"bad '{name}'")
    return value


def _proof(obj: dict[str, Any]) -> AuthProof:
    return AuthProof(
        peer=_str(obj, "p", _HEX32),
        pubkey=_b64(obj, "pk", 32),
        nonce=_b64(obj, "n", protocol.NONCE_BYTES),
        sig=_b64(obj, "s", 64),
        t_ms=_int(obj, "t"),
    )


def _proof_json(proof: AuthProof) -> dict[str, Any]:
    return {
        "p": proof.peer,
        "pk": protocol.b64u_encode(proof.pubkey),
        "n": protocol.b64u_encode(proof.nonce),
        "s": protocol.b64u_encode(proof.sig),
        "t": proof.t_ms,
    }


def parse_event(data: object) -> BusEvent:
    """Parse a message of the ``bus`` channel; ``ProtocolError('bad-bus')`` on anything malformed."""
    obj = _load(data)
    iid, seq, kind = _str(obj, "i", _IID), _int(obj, "q"), _str(obj, "k")
    if kind == "bye":
        return ByeEvent(iid, seq)
    conn = _int(obj, "c")
    if kind == "auth":
        return AuthEvent(iid, seq, conn, _proof(obj))
    if kind == "join":
        return JoinEvent(iid, seq, conn, _str(obj, "r", _HEX32))
    if kind == "leave":
        return LeaveEvent(iid, seq, conn, _str(obj, "r", _HEX32))
    if kind == "gone":
        return GoneEvent(iid, seq, conn)
    raise _bad("unknown kind")


def parse_signal(data: object) -> SignalForward:
    """Parse a message of a ``to:`` channel; ``ProtocolError('bad-bus')`` on anything malformed."""
    obj = _load(data)
    frame = obj.get("f")
    if not isinstance(frame, dict) or frame.get("type") != "signal":
        raise _bad("bad 'f'")
    room, sender, payload = _str(frame, "room", _HEX32), _str(frame, "from", _HEX32), _str(frame, "payload")
    return SignalForward(
        _int(obj, "c"),
        _str(obj, "p", _HEX32),
        {"type": "signal", "room": room, "from": sender, "payload": payload},
    )


def parse_record(data: object) -> ConnRecord:
    """Parse one ``c:<conn>`` value of a state hash; ``ProtocolError('bad-bus')`` if malformed."""
    obj = _load(data)
    rooms = obj.get("r")
    if not isinstance(rooms, list) or not all(isinstance(r, str) and _HEX32.fullmatch(r) for r in rooms):
        raise _bad("bad 'r'")
    return ConnRecord(_proof(obj), frozenset(rooms))


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------------------- the bus


@dataclass(slots=True)
class _Local:
    conn: int
    proof: AuthProof
    rooms: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Ghost:
    gid: int
    iid: str
    conn: int
    proof: AuthProof
    rooms: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Remote:
    seq: int = 0


Op = Callable[["Pipeline"], None]


class RedisBus:
    """Connects one instance's :class:`~signaling.app.Hub` to the others; see the module docstring."""

    def __init__(self, config: SignalingConfig, hub: Hub) -> None:
        assert config.redis_url is not None
        self._config = config
        self._hub = hub
        self.iid = secrets.token_hex(8)
        p = config.redis_prefix
        self._bus_channel = f"{p}bus"
        self._my_channel = f"{p}to:{self.iid}"
        self._my_key = self._state_key(self.iid)
        self._redis: aioredis.Redis = aioredis.from_url(config.redis_url)
        self._pubsub: PubSub | None = None
        self._seq = 0
        self._locals: dict[int, _Local] = {}
        self._ghosts: dict[int, _Ghost] = {}  # ghost conn id -> ghost
        self._ghost_of: dict[tuple[str, int], int] = {}  # (instance, remote conn) -> ghost conn id
        self._remotes: dict[str, _Remote] = {}
        self._gids = itertools.count(-1, -1)
        self._ops: asyncio.Queue[Op | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_ghost_ping = 0.0
        self._closed = False
        self._changed = asyncio.Event()
        self.bad_messages = 0

    # ------------------------------------------------------------------------------ queries

    @property
    def ghost_count(self) -> int:
        return len(self._ghosts)

    @property
    def instances(self) -> list[str]:
        """Ids of the other live instances this one mirrors."""
        return sorted(self._remotes)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checking after each applied bus message or liveness check.

        Raises ``TimeoutError``. For tests and tools: the bus is eventually consistent, so a member that just
        joined on another instance is visible here only once its event arrived.
        """
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _state_key(self, iid: str) -> str:
        return f"{self._config.redis_prefix}state:{iid}"

    def _ttl_ms(self) -> int:
        return int(self._config.redis_ttl_s * 1000)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe, publish the own (empty) state, load the others' state, start the tasks."""
        pubsub = self._pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._bus_channel, self._my_channel)
        confirmed = 0
        while confirmed < 2:
            msg = await pubsub.get_message(timeout=self._config.redis_ttl_s)
            if msg is None:
                raise ConnectionError("redis did not confirm the subscription")
            if msg["type"] == "subscribe":
                confirmed += 1
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._my_key)
        pipe.hset(self._my_key, "seq", 0)
        pipe.pexpire(self._my_key, self._ttl_ms())
        await pipe.execute()
        prefix = self._state_key("")
        async for raw in self._redis.scan_iter(match=f"{prefix}*", count=1000):
            iid = (raw.decode() if isinstance(raw, bytes) else str(raw))[len(prefix) :]
            if iid != self.iid and _IID.fullmatch(iid):
                await self._resync(iid)
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="redis-bus-writer"),
            asyncio.create_task(self._read_loop(pubsub), name="redis-bus-reader"),
            asyncio.create_task(self._heartbeat_loop(), name="redis-bus-heartbeat"),
        ]
        log.info("redis bus up: instance %s, %d other instance(s)", self.iid, len(self._remotes))

    async def stop(self) -> None:
        """Flush pending writes, say ``bye``, delete the own state and disconnect."""
        if self._closed:
            return
        self._closed = True
        writer, reader, heartbeat = self._tasks or (None, None, None)
        for task in (reader, heartbeat):
            if task is not None:
                task.cancel()
        if writer is not None:
            self._ops.put_nowait(None)
            await asyncio.wait([writer], timeout=self._config.redis_ttl_s)
            writer.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError, aioredis.RedisError):
            self._seq += 1
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._my_key)
            pipe.publish(self._bus_channel, _dumps({"i": self.iid, "q": self._seq, "k": "bye"}))
            await pipe.execute()
        if self._pubsub is not None:
            with contextlib.suppress(OSError, aioredis.RedisError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(OSError, aioredis.RedisError):
            await self._redis.aclose()

    # ------------------------------------------------------------------------------ local side

    def local_auth(self, conn: int, peer: str, nonce: bytes, pubkey: bytes, sig: bytes) -> None:
        """A local connection authenticated (the registry accepted ``pubkey``/``sig`` over ``nonce``)."""
        if self._closed:
            return
        t_ms = int(self._hub.clock() * 1000)
        for ghost in self._ghosts.values():  # never lose against the connection being replaced
            if ghost.proof.peer == peer:
                t_ms = max(t_ms, ghost.proof.t_ms + 1)
        proof = AuthProof(peer, pubkey, nonce, sig, t_ms)
        self._locals[conn] = _Local(conn, proof)
        event = {"k": "auth", "c": conn, **_proof_json(proof)}
        self._publish_event(event, conn)

    def local_gone(self, conn: int) -> None:
        """A local connection is gone (closed, replaced, killed). Idempotent."""
        if self._closed or self._locals.pop(conn, None) is None:
            return
        self._publish_event({"k": "gone", "c": conn}, conn, delete=True)

    def observe(self, item: Delivery) -> bool:
        """See every delivery before the hub performs it; True when it was for a ghost (consumed)."""
        if item.conn_id < 0:
            ghost = self._ghosts.get(item.conn_id)
            if isinstance(item, Close):
                self._forget_ghost(item.conn_id)
            elif ghost is not None and item.frame.get("type") == "signal" and not self._closed:
                forward = {"c": ghost.conn, "p": ghost.proof.peer, "f": item.frame}
                channel = f"{self._config.redis_prefix}to:{ghost.iid}"
                message = _dumps(forward)

                def op(pipe: Pipeline) -> None:
                    pipe.publish(channel, message)

                self._ops.put_nowait(op)
            return True
        local = self._locals.get(item.conn_id)
        if local is None:
            return False
        if isinstance(item, Close):
            self.local_gone(item.conn_id)
            return False
        kind, room = item.frame.get("type"), item.frame.get("room")
        if kind == "joined" and isinstance(room, str) and room not in local.rooms:
            local.rooms.add(room)
            self._publish_event({"k": "join", "c": local.conn, "r": room}, local.conn)
        elif kind == "left" and isinstance(room, str) and room in local.rooms:
            local.rooms.discard(room)
            self._publish_event({"k": "leave", "c": local.conn, "r": room}, local.conn)
        return False

    def _publish_event(self, event: dict[str, Any], conn: int, *, delete: bool = False) -> None:
        self._seq += 1
        seq = self._seq
        message = _dumps({"i": self.iid, "q": seq, **event})
        key, fname, ttl = self._my_key, f"c:{conn}", self._ttl_ms()
        local = self._locals.get(conn)
        record = (
            None
            if delete or local is None
            else _dumps({**_proof_json(local.proof), "r": sorted(local.rooms)})
        )

        def op(pipe: Pipeline) -> None:
            if record is None:
                pipe.hdel(key, fname)
            else:
                pipe.hset(key, fname, record)
            pipe.hset(key, "seq", seq)
            pipe.pexpire(key, ttl)
            pipe.publish(self._bus_channel, message)

        self._ops.put_nowait(op)

    def _full_state_op(self) -> Op:
        key, ttl, seq = self._my_key, self._ttl_ms(), self._seq
        mapping: dict[str, str | int] = {"seq": seq}
        for local in self._locals.values():
            mapping[f"c:{local.conn}"] = _dumps({**_proof_json(local.proof), "r": sorted(local.rooms)})

        def op(pipe: Pipeline) -> None:
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpire(key, ttl)

        return op

    async def _write_loop(self) -> None:
        while True:
            ops = [await self._ops.get()]
            while not self._ops.empty():
                ops.append(self._ops.get_nowait())
            done = None in ops
            pipe = self._redis.pipeline(transaction=True)
            for op in ops:
                if op is not None:
                    op(pipe)
            try:
                await pipe.execute()
            except (OSError, aioredis.RedisError) as exc:
                log.warning("redis write failed (%s); republishing state", type(exc).__name__)
                self._ops.put_nowait(self._full_state_op())
            if done:
                return

    # ------------------------------------------------------------------------------ remote side

    async def _read_loop(self, pubsub: PubSub) -> None:
        async for msg in pubsub.listen():
            if msg.get("type") != "message":
                continue
            channel = msg["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            try:
                if channel == self._my_channel:
                    self._deliver(parse_signal(msg["data"]))
                else:
                    await self._apply(parse_event(msg["data"]))
            except ProtocolError as exc:
                self.bad_messages += 1
                log.warning("dropped a bus message: %s", exc.code)
            self._notify()

    def _deliver(self, fwd: SignalForward) -> None:
        if fwd.conn > 0 and self._hub.registry.peer_of(fwd.conn) == fwd.peer:
            self._hub.dispatch([Send(fwd.conn, fwd.frame)])

    async def _apply(self, event: BusEvent) -> None:
        if event.iid == self.iid:
            return
        if isinstance(event, ByeEvent):
            self._drop_instance(event.iid)
            return
        remote = self._remotes.get(event.iid)
        if remote is None or event.seq > remote.seq + 1:
            await self._resync(event.iid)  # first sight mid-stream, or a gap: the snapshot is the truth
            return
        if event.seq <= remote.seq:
            return  # already in a snapshot
        remote.seq = event.seq
        now = self._hub.clock()
        match event:
            case AuthEvent(iid, _, conn, proof):
                self._ghost_auth(iid, conn, proof, now)
            case JoinEvent(iid, _, conn, room):
                self._ghost_room(iid, conn, room, True, now)
            case LeaveEvent(iid, _, conn, room):
                self._ghost_room(iid, conn, room, False, now)
            case GoneEvent(iid, _, conn):
                gid = self._ghost_of.get((iid, conn))
                if gid is not None:
                    self._drop_ghost(gid, now)

    async def _resync(self, iid: str) -> None:
        """Load instance ``iid``'s state hash and make its ghosts match it."""
        raw = {
            _as_bytes(k): _as_bytes(v) for k, v in (await self._redis.hgetall(self._state_key(iid))).items()
        }
        now = self._hub.clock()
        if b"seq" not in raw:
            self._drop_instance(iid)
            return
        try:
            seq = int(raw[b"seq"])
        except ValueError:
            seq = 0
        records: dict[int, ConnRecord] = {}
        for name, value in raw.items():
            if name.startswith(b"c:"):
                try:
                    records[int(name[2:])] = parse_record(value)
                except (ProtocolError, ValueError):
                    self.bad_messages += 1
        self._remotes.setdefault(iid, _Remote()).seq = seq
        for (g_iid, conn), gid in list(self._ghost_of.items()):
            rec = records.get(conn)
            if g_iid == iid and (rec is None or rec.proof != self._ghosts[gid].proof):
                self._drop_ghost(gid, now)
        for conn, rec in sorted(records.items()):
            if (iid, conn) not in self._ghost_of:
                self._ghost_auth(iid, conn, rec.proof, now)
            found = self._ghost_of.get((iid, conn))
            if found is None:
                continue
            ghost = self._ghosts[found]
            for room in sorted(ghost.rooms - rec.rooms):
                self._ghost_room(iid, conn, room, False, now)
            for room in sorted(rec.rooms - ghost.rooms):
                self._ghost_room(iid, conn, room, True, now)

    def _ghost_auth(self, iid: str, conn: int, proof: AuthProof, now: float) -> None:
        if (iid, conn) in self._ghost_of:
            return
        rank = (proof.t_ms, iid)
        for local in self._locals.values():
            if local.proof.peer == proof.peer and (local.proof.t_ms, self.iid) > rank:
                return  # ours is newer: that instance replaces its connection when it sees our auth
        for ghost in self._ghosts.values():
            if ghost.proof.peer == proof.peer and (ghost.proof.t_ms, ghost.iid) > rank:
                return
        registry = self._hub.registry
        gid = next(self._gids)
        registry.connect(gid, proof.nonce, now)  # the challenge goes nowhere
        self._ghosts[gid] = _Ghost(gid, iid, conn, proof)
        self._ghost_of[(iid, conn)] = gid
        frame = {
            "type": "auth",
            "pubkey": protocol.b64u_encode(proof.pubkey),
            "sig": protocol.b64u_encode(proof.sig),
        }
        self._hub.dispatch(registry.handle(gid, _dumps(frame), now))
        if registry.peer_of(gid) != proof.peer:
            log.warning("a bus auth proof did not verify")
            self.bad_messages += 1
            self._drop_ghost(gid, now)

    def _ghost_room(self, iid: str, conn: int, room: str, join: bool, now: float) -> None:
        gid = self._ghost_of.get((iid, conn))
        if gid is None:
            return
        ghost = self._ghosts[gid]
        if join:
            ghost.rooms.add(room)
        else:
            ghost.rooms.discard(room)
        frame = {"type": "join" if join else "leave", "room": room}
        self._hub.dispatch(self._hub.registry.handle(gid, _dumps(frame), now))

    def _forget_ghost(self, gid: int) -> None:
        ghost = self._ghosts.pop(gid, None)
        if ghost is not None:
            self._ghost_of.pop((ghost.iid, ghost.conn), None)

    def _drop_ghost(self, gid: int, now: float) -> None:
        self._forget_ghost(gid)
        self._hub.dispatch(self._hub.registry.disconnect(gid, now))

    def _drop_instance(self, iid: str) -> None:
        now = self._hub.clock()
        self._remotes.pop(iid, None)
        dropped = [gid for gid, g in self._ghosts.items() if g.iid == iid]
        for gid in dropped:
            self._drop_ghost(gid, now)
        if dropped:
            log.info("instance gone: dropped %d remote connection(s)", len(dropped))

    # ------------------------------------------------------------------------------ heartbeat

    async def _heartbeat_loop(self) -> None:
        interval = self._config.redis_heartbeat_s
        while True:
            await asyncio.sleep(interval)  # a timer, not synchronisation
            try:
                await self._heartbeat()
            except (OSError, aioredis.RedisError) as exc:
                log.warning("redis heartbeat failed: %s", type(exc).__name__)

    async def _heartbeat(self) -> None:
        refreshed: Awaitable[bool] = self._redis.pexpire(self._my_key, self._ttl_ms())
        if not await refreshed:
            log.warning("own redis state expired; republishing it")
            self._ops.put_nowait(self._full_state_op())
        iids = sorted(self._remotes)
        if iids:
            pipe = self._redis.pipeline(transaction=False)
            for iid in iids:
                pipe.exists(self._state_key(iid))
            alive = await pipe.execute()
            for iid, exists in zip(iids, alive, strict=True):
                if not exists:
                    self._drop_instance(iid)
            self._notify()
        now = self._hub.clock()
        if now - self._last_ghost_ping >= self._config.idle_timeout_s / 3:
            self._last_ghost_ping = now
            ping = _dumps({"type": "ping"})
            for gid in list(self._ghosts):
                self._hub.dispatch(self._hub.registry.handle(gid, ping, now))
