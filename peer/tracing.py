"""Recorded traces: the behavioural contract between the Python and the JS room cores.

A trace is JSON: a room invite, peers (label, identity bytes, the seed of the room's injected RNG,
keeper flag) and a list of steps. A step is one call into ONE peer's room at a given ``now``, with its
input (a frame received from a neighbour, an API call, a timer) and everything the call produced:
events (``to_json()``), the return value of API calls, the frames to transmit (``[to label, base64url]``),
the persisted delta (:meth:`PersistBatch.to_json`, with the canonical state view below), the links
reported dead and the next timer. Inputs are explicit, so each peer replays on its own.

Determinism: identities and the invite secret come from :class:`DeterministicRng` seeds; each room gets
its own ``DeterministicRng(rng seed)`` for every random draw (handshake ephemerals, prekeys, chain ids
and keys, envelope nonces, prekey sealing); ``now`` is given in every step; Ed25519 signatures are
deterministic. The JS core draws from its RNG in the same order, so replay is byte-exact.

Canonical persisted state (what both languages compare): every state value as base64url of its Python
bytes, except ``prekey`` and ``prekey/old/<hex>``, of which only what follows the private key
(``bytes[32:]``) is compared (the browser keeps the private half as a non-extractable CryptoKey).

Used by ``scripts/gen_traces.py`` (recording) and the test suites (replay).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from peer.core.crypto import DeterministicRng, b64u_decode, b64u_encode
from peer.core.events import RoomEvent
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.persist import Snapshot
from peer.core.room import Room

T0 = 1_700_000_000_000
SERVER = "http://127.0.0.1:1"


def _event_json(ev: RoomEvent) -> dict[str, Any]:
    return ev.to_json()


def _persist_json(room: Room, snapshot: Snapshot) -> dict[str, Any] | None:
    """Drain the room's persist batch into ``snapshot`` (what a store would hold) and as canonical JSON."""
    batch = room.take_persist()
    snapshot.apply(batch)
    if not batch:
        return None
    doc = batch.to_json()
    for name, value in batch.states.items():  # a prekey's private half never leaves the browser's keys
        if name == "prekey" or name.startswith("prekey/old/"):
            doc["states"][name] = b64u_encode(value[32:])
    return doc


class _Peer:
    def __init__(self, label: str, identity: Identity, rng_seed: bytes, keeper: bool) -> None:
        self.label, self.identity, self.rng_seed, self.keeper = label, identity, rng_seed, keeper
        self.room: Room | None = None
        self.stored = Snapshot()
        self.restarts = 0


class Trace:
    """Drive several rooms, recording (or, with ``expected``, checking) every step."""

    def __init__(
        self, name: str, description: str, seed: str, *, ttl_s: int | None = None, owner: str | None = None
    ) -> None:
        """``owner``: the label of the peer whose id the invite names as the room's owner (roles)."""
        self.name, self.description, self.seed = name, description, seed
        owner_id = None if owner is None else self._identity(owner).peer_id
        self.invite = Invite.new(SERVER, ttl_s, DeterministicRng(f"{seed}/invite".encode()), owner=owner_id)
        self.peers: dict[str, _Peer] = {}
        self.by_id: dict[str, str] = {}
        self.steps: list[dict[str, Any]] = []
        self.links: set[frozenset[str]] = set()
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.now = T0

    # -- setup -----------------------------------------------------------------------------------------

    def _identity(self, label: str) -> Identity:
        return Identity.generate(DeterministicRng(f"{self.seed}/{label}/identity".encode()))

    def peer(self, label: str, *, keeper: bool = False) -> None:
        identity = self._identity(label)
        self.peers[label] = _Peer(label, identity, f"{self.seed}/{label}/room".encode(), keeper)
        self.by_id[identity.peer_id] = label

    def id(self, label: str) -> str:
        return self.peers[label].identity.peer_id

    def room(self, label: str) -> Room:
        room = self.peers[label].room
        assert room is not None
        return room

    # -- one step ---------------------------------------------------------------------------------------

    def step(self, label: str, do: str, **args: Any) -> Any:
        p = self.peers[label]
        result: Any = None
        events: list[RoomEvent] = []
        now = self.now
        if do == "create":
            p.room = Room(p.identity, self.invite, now, keeper=p.keeper, rng=DeterministicRng(p.rng_seed))
        elif do == "restart":
            p.room = _restart(p.identity, self.invite, now, p.keeper, p.stored, b64u_decode(args["rng_seed"]))
        else:
            result, events = self._call(p, do, args, now)
        room = self.room(label)
        persist = _persist_json(room, p.stored)
        frames = room.data_to_send()
        record: dict[str, Any] = {"at": now, "peer": label, "do": do}
        if args:
            record["args"] = args
        record["events"] = [_event_json(e) for e in events]
        if result is not None:
            record["result"] = result
        record["frames"] = [[self.by_id[to], b64u_encode(data)] for to, data in frames]
        record["persist"] = persist
        record["dead"] = [self.by_id.get(d, d) for d in room.take_dead_links()]
        record["timer"] = room.next_timer()
        self.steps.append(record)
        for to, data in frames:
            if frozenset((p.identity.peer_id, to)) in self.links:
                self.queue.append((p.identity.peer_id, to, data))
        return result

    def _call(self, p: _Peer, do: str, a: dict[str, Any], now: int) -> tuple[Any, list[RoomEvent]]:
        assert p.room is not None
        return _apply(p.room, self.id, lambda label: self.peers[label].identity.public_bundle(), do, a, now)

    # -- driving the network -----------------------------------------------------------------------------

    def create(self, *labels: str) -> None:
        for label in labels:
            self.step(label, "create")

    def link(self, a: str, b: str) -> None:
        self.step(a, "learn", of=b)
        self.step(b, "learn", of=a)
        self.links.add(frozenset((self.id(a), self.id(b))))
        self.step(a, "link_up", **{"with": b})
        self.step(b, "link_up", **{"with": a})

    def unlink(self, a: str, b: str) -> None:
        self.links.discard(frozenset((self.id(a), self.id(b))))
        self.queue = deque(q for q in self.queue if {q[0], q[1]} != {self.id(a), self.id(b)})
        self.step(a, "link_down", **{"with": b})
        self.step(b, "link_down", **{"with": a})

    def deliver(self, limit: int = 10_000) -> None:
        """Deliver queued frames in order until the network is quiet."""
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, data = self.queue.popleft()
            if frozenset((src, dst)) in self.links and self.peers[self.by_id[dst]].room is not None:
                self.step(self.by_id[dst], "receive", **{"from": self.by_id[src], "frame": b64u_encode(data)})
        raise AssertionError("network did not settle")

    def advance(self, ms: int, step: int = 250) -> None:
        """Move time forward, firing due timers (in label order) and delivering what they send."""
        end = self.now + ms
        while self.now < end:
            self.now = min(self.now + step, end)
            for label, p in sorted(self.peers.items()):
                if p.room is not None:
                    when = p.room.next_timer()
                    if when is not None and when <= self.now:
                        self.step(label, "timer")
            self.deliver()

    def restart(self, label: str) -> None:
        """Take ``label`` offline (its links go down) and start it again from what it stored."""
        for other in sorted(self.peers):
            if frozenset((self.id(label), self.id(other))) in self.links:
                self.unlink(label, other)
        p = self.peers[label]
        p.restarts += 1
        self.step(label, "restart", rng_seed=b64u_encode(p.rng_seed + b"/restart/%d" % p.restarts))

    def message_id(self, label: str, seq: int) -> str:
        return f"{self.id(label)}:{seq}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "invite": self.invite.url(),
            "peers": {
                label: {
                    "peer_id": p.identity.peer_id,
                    "identity": b64u_encode(p.identity.to_bytes()),
                    "rng_seed": b64u_encode(p.rng_seed),
                    "keeper": p.keeper,
                }
                for label, p in self.peers.items()
            },
            "steps": self.steps,
        }


# -- replay ---------------------------------------------------------------------------------------------


def replay(doc: dict[str, Any]) -> list[str]:
    """Replay a recorded trace against this (Python) core; returns the mismatches (empty = identical)."""
    invite = Invite.parse(doc["invite"])
    rooms: dict[str, Room] = {}
    stored: dict[str, Snapshot] = {label: Snapshot() for label in doc["peers"]}
    labels = {p["peer_id"]: label for label, p in doc["peers"].items()}
    problems: list[str] = []

    def pid(label: str) -> str:
        return str(doc["peers"][label]["peer_id"])

    def bundle(label: str) -> PublicBundle:
        return Identity.from_bytes(b64u_decode(doc["peers"][label]["identity"])).public_bundle()

    for i, st in enumerate(doc["steps"]):
        label, do, now, a = st["peer"], st["do"], st["at"], st.get("args", {})
        spec = doc["peers"][label]
        result: Any = None
        events: list[RoomEvent] = []
        if do == "create":
            identity = Identity.from_bytes(b64u_decode(spec["identity"]))
            rng = DeterministicRng(b64u_decode(spec["rng_seed"]))
            rooms[label] = Room(identity, invite, now, keeper=spec["keeper"], rng=rng)
        elif do == "restart":
            identity = Identity.from_bytes(b64u_decode(spec["identity"]))
            rng_seed = b64u_decode(a["rng_seed"])
            rooms[label] = _restart(identity, invite, now, spec["keeper"], stored[label], rng_seed)
        else:
            result, events = _apply(rooms[label], pid, bundle, do, a, now)
        room = rooms[label]
        got: dict[str, Any] = {"events": [_event_json(e) for e in events]}
        if result is not None:
            got["result"] = result
        got["persist"] = _persist_json(room, stored[label])
        got["frames"] = [[labels[to], b64u_encode(data)] for to, data in room.data_to_send()]
        got["dead"] = [labels.get(d, d) for d in room.take_dead_links()]
        got["timer"] = room.next_timer()
        for field in ("events", "result", "frames", "persist", "dead", "timer"):
            if st.get(field) != got.get(field):
                problems.append(f"step {i} ({label} {do} at {now}): {field} differs")
        if problems:
            break  # later steps depend on this one
    return problems


def _restart(
    identity: Identity, invite: Invite, now: int, keeper: bool, stored: Snapshot, seed: bytes
) -> Room:
    """A room started again from a copy of what its store holds (as ``peer.store.sqlite.snapshot``)."""
    snap = Snapshot(
        list(stored.envelopes), list(stored.tombstones), dict(stored.message_keys), dict(stored.states)
    )
    return Room(identity, invite, now, keeper=keeper, snapshot=snap, rng=DeterministicRng(seed))


def _apply(
    room: Room,
    pid: Callable[[str], str],
    bundle: Callable[[str], PublicBundle],
    do: str,
    a: dict[str, Any],
    now: int,
) -> tuple[Any, list[RoomEvent]]:
    """One step's call into ``room``: (return value as JSON or None, events)."""
    if do == "learn":
        room.learn_bundle(bundle(a["of"]))
        return None, []
    if do == "link_up":
        room.link_up(pid(a["with"]), now)
        return None, []
    if do == "link_down":
        return None, room.link_down(pid(a["with"]), now)
    if do == "receive":
        return None, room.receive(pid(a["from"]), b64u_decode(a["frame"]), now)
    if do == "timer":
        return None, room.handle_timer(now)
    if do == "send_text":
        mentions = [pid(m) for m in a.get("mentions", [])]
        msg = room.send_text(
            a["text"], now, ttl_s=a.get("ttl_s"), reply_to=a.get("reply_to"), mentions=mentions
        )
        return msg.to_json(), []
    if do == "set_profile":
        return None, room.set_profile(a["name"], now)
    if do == "edit":
        return room.edit(a["target"], a["body"], now).to_json(), []
    if do == "react":
        return room.react(a["target"], a["emoji"], now, on=a["on"]).to_json(), []
    if do == "unsend":
        return None, room.unsend(a["target"], now)
    if do == "set_timer":
        return None, room.set_timer(a["ttl_s"], now)
    if do == "remove":
        return None, room.remove_member(pid(a["member"]), now)
    if do == "set_admin":
        return None, room.set_admin(pid(a["member"]), a["admin"], now)
    if do == "readmit":
        return None, room.readmit(pid(a["member"]), now)
    if do == "set_announce":
        return None, room.set_announce(a["on"], now)
    if do == "close_admission":
        return None, room.close_admission(now)
    if do == "open_admission":
        return None, room.open_admission(now)
    if do == "admit":
        return None, room.admit(pid(a["member"]), now)
    if do == "join_requests":
        return {"requests": list(room.join_requests()), "members": sorted(room.membership.members)}, []
    if do == "leave":
        return None, room.leave(now)
    if do == "typing":
        room.set_typing(a["typing"], now)
        return None, []
    if do == "seen":
        room.mark_seen(a["ids"], now)
        return None, []
    if do == "enable_reach":
        room.enable_reach([(k, u) for k, u in a["hints"]], now)
        return None, []
    if do == "relay_signal":
        return room.relay_signal(pid(a["to"]), a["payload"], now), []
    if do == "relay_state":
        relayed = [[sender, payload] for sender, payload in room.take_relayed()]
        return {"relayed": relayed, "reachable": room.reachable(now), "hints": room.reach_hints()}, []
    return _apply_features(room, do, a, now)


def _apply_features(room: Room, do: str, a: dict[str, Any], now: int) -> tuple[Any, list[RoomEvent]]:
    """Issue-15 steps: location, forward (from a message of this room), search, last seen."""
    from peer.core.content import Location

    if do == "send_location":
        where = Location(a["lat_e6"], a["lon_e6"], a.get("acc_m"))
        return room.send_location(where, now, ttl_s=a.get("ttl_s")).to_json(), []
    if do == "forward":
        source = room.message(a["source"])
        if source is None:
            return {"refused": "gone"}, []
        try:  # ``later_ms``: forward a copy of the source held until then (only ever refused)
            when = now + a.get("later_ms", 0)
            return room.forward(source, a["from_name"], when, ttl_s=a.get("ttl_s")).to_json(), []
        except ValueError:
            return {"refused": "expired"}, []
    if do in ("send_file", "forward_file", "keep_files", "kept"):
        return _apply_files(room, do, a, now)
    if do == "search":
        return [m.id for m in room.search(a["q"])], []
    if do == "last_seen":
        return room.last_seen(now), []
    if do == "share_last_seen":
        room.set_share_last_seen(a["share"], now)
        return None, []
    raise ValueError(f"unknown step {do!r}")


def _trace_file(a: dict[str, Any]) -> Any:
    from peer.core.files import File

    return File(a["name"], a["size"], a["mime"], b64u_decode(a["manifest"]), b64u_decode(a["key"]))


def _apply_files(room: Room, do: str, a: dict[str, Any], now: int) -> tuple[Any, list[RoomEvent]]:
    """``send_file`` (a content item; the blobs are the adapter's) and ``forward_file`` (``sealed``: the
    re-sealed content item; refusals as codes: gone, expired, reused-key, not-the-file)."""
    if do == "keep_files":  # a keeper holds attachments (peer.core.room.keeping)
        room.set_keep_files(a["on"])
        return None, []
    if do == "kept":
        return [n.to_json() for n in room.take_kept()], []
    if do == "send_file":
        if "blobs" in a["file"]:  # the blob ids of an author's file (keep_files): the adapter's lookup
            table = getattr(room.keeping.blob_ids, "__self__", None)
            if not isinstance(table, dict):
                table = {}
                room.set_blob_ids(table.get)
            table[b64u_decode(a["file"]["manifest"])] = [b64u_decode(x) for x in a["file"]["blobs"]]
        return room.send_file(_trace_file(a["file"]), now, ttl_s=a.get("ttl_s")).to_json(), []
    source = room.message(a["source"])
    if source is None:
        return {"refused": "gone"}, []
    try:
        when = now + a.get("later_ms", 0)
        sealed = _trace_file(a["sealed"])
        return room.forward_file(source, sealed, a["from_name"], when, ttl_s=a.get("ttl_s")).to_json(), []
    except ValueError as exc:
        text = str(exc)
        code = "expired" if "expired" in text else "reused-key" if "fresh key" in text else "not-the-file"
        return {"refused": code}, []


# -- part traces ------------------------------------------------------------------------------------------
#
# A part trace drives ONE part directly through its API (no crypto, no network): {"part": name,
# "params": {...}, "ops": [{"op": ..., <inputs>, "out": <what it returned or emitted>}, ...]}. The JS part
# of the same name replays it (web/js/test/traces.js). Parts traced this way: timeline (content JSON in,
# events out), parking (bounds and expiry), presence (typing rate limit, seen once, expiry).


def _events_json(events: list[RoomEvent]) -> list[dict[str, Any]]:
    return [e.to_json() for e in events]


def run_part(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a part trace's ops against the Python part; returns each op's output (for recording or
    comparing with ``op["out"]``)."""
    from peer.core.content import decode_content
    from peer.core.room.parking import Parking
    from peer.core.room.presence import Presence
    from peer.core.room.timeline import Meta, Timeline

    params = doc["params"]
    outs: list[dict[str, Any]] = []
    if doc["part"] == "files":
        from peer.tracing_files import run_files_part

        return run_files_part(doc)
    if doc["part"] == "timeline":
        tl = Timeline(params["self_id"])
        for op in doc["ops"]:
            events: list[RoomEvent] = []
            out: dict[str, Any] = {}
            if op["op"] == "apply":
                m = op["meta"]
                meta = Meta(m["sender"], m["seq"], m["lamport"], m["sent_at"], m["expires_at"])
                out["code"] = tl.apply(meta, decode_content(op["content"].encode()), events)
            elif op["op"] == "erase":
                tl.erase((op["sender"], op["seq"]), op["reason"], events)
            elif op["op"] == "track":
                tl.track_delivery(op["id"])
            elif op["op"] == "ack":
                tl.on_ack(op["neighbour"], op["sender"], op["seq"], events)
            elif op["op"] == "seen":
                tl.on_seen(op["member"], op["seqs"], op["of"], events)
            out["events"] = _events_json(events)
            out["messages"] = [msg.to_json() for msg in tl.messages()]
            outs.append(out)
    elif doc["part"] == "parking":
        pk = Parking(params["per_neighbour"], params["total"], params["ttl_ms"])
        for op in doc["ops"]:
            out = {}
            if op["op"] == "park":
                pk.park(op["neighbour"], op["sender"], b64u_decode(op["data"]), op["now"])
            elif op["op"] == "take":
                out["taken"] = [[n, b64u_encode(d)] for n, d in pk.take(op["sender"])]
            elif op["op"] == "drop":
                pk.drop_neighbour(op["neighbour"])
            elif op["op"] == "expire":
                out["dropped"] = pk.expire(op["now"])
            elif op["op"] == "defaults":
                d = Parking()
                out["defaults"] = [d.per_neighbour, d.total, d.ttl_ms]
            out["size"] = len(pk)
            out["deadline"] = pk.next_deadline()
            outs.append(out)
    elif doc["part"] == "presence":
        pr = Presence()
        for op in doc["ops"]:
            events = []
            out = {}
            if op["op"] == "set_typing":
                sent = pr.set_typing(op["typing"], op["now"], set(op["online"]))
                out["sent"] = [[p, b64u_encode(b)] for p, b in sent]
            elif op["op"] == "on_typing":
                pr.on_typing(op["peer"], op["typing"], op["now"], events)
            elif op["op"] == "seen":
                out["sent"] = [[p, b64u_encode(b)] for p, b in pr.seen([(s, q) for s, q in op["keys"]])]
            elif op["op"] == "expire":
                pr.expire(op["now"], events)
            out["events"] = _events_json(events)
            out["typing"] = pr.typing_members(op.get("now", 0))
            out["deadline"] = pr.next_deadline()
            outs.append(out)
    elif doc["part"] == "admission":
        from peer.core.room.admission import AddBudget

        budget = AddBudget(params["per_window"], params["window_ms"])
        for op in doc["ops"]:
            out = {}
            if op["op"] == "charge":
                out["ok"] = budget.charge(op["neighbour"], op["now"])
            elif op["op"] == "defaults":
                fresh = AddBudget()
                out["defaults"] = [fresh.per_window, fresh.window_ms]
            out["tracked"] = len(budget)
            outs.append(out)
    elif doc["part"] == "distribution":
        from peer.core.room.distribution import Distribution

        dist = Distribution(params["per_window"], params["window_ms"])
        for op in doc["ops"]:
            out = {}
            if op["op"] == "offer":
                out["serve"] = dist.offer(op["peer"], op["now"])
            elif op["op"] == "shown_life":
                dist.shown_life(op["peer"])
            elif op["op"] == "enqueue":
                dist.enqueue(op["peer"])
            elif op["op"] == "due":
                out["serve"] = dist.due(op["now"])
            elif op["op"] == "drop":
                dist.drop(op["peer"])
            elif op["op"] == "defaults":
                paced = Distribution()
                out["defaults"] = [paced.per_window, paced.window_ms]
            out["waiting"] = len(dist)
            outs.append(out)
    elif doc["part"] == "links":
        outs = _run_links(doc)
    else:
        raise ValueError(f"unknown part {doc['part']!r}")
    return outs


def _run_links(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The links part: two Links objects (X, Y) shake hands, then X counts faults until its budget."""
    from peer.core.errors import ProtocolError
    from peer.core.room.links import Links

    params = doc["params"]
    ids = {label: Identity.from_bytes(b64u_decode(v)) for label, v in params["identities"].items()}
    links = {
        label: Links(ids[label], params["room_id"], DeterministicRng(b64u_decode(params["rng_seeds"][label])))
        for label in ids
    }
    other = {"X": "Y", "Y": "X"}
    outs: list[dict[str, Any]] = []
    for op in doc["ops"]:
        at = op["at"]
        me, peer = links[at], ids[other[at]].peer_id
        out: dict[str, Any] = {}
        if op["op"] == "up":
            me.up(peer, ids[other[at]].public_bundle() if op["known"] else None)
        elif op["op"] == "deliver":  # our outbox goes to the other side's handshake, frame by frame
            frames = me.take_outbox()
            out["frames"] = [b64u_encode(f) for _, f in frames]
            out["results"] = [list(links[other[at]].on_handshake(ids[at].peer_id, f)) for _, f in frames]
        elif op["op"] == "handshake":
            out["result"] = list(me.on_handshake(peer, b64u_decode(op["frame"])))
        elif op["op"] == "fault":
            out["result"] = list(me.fault(peer, op["code"]))
        elif op["op"] == "seal":
            sealed = me.seal(peer, op["plaintext"].encode())
            out["result"] = None if sealed is None else b64u_encode(sealed)
            if sealed is not None:
                out["opened"] = links[other[at]].open(ids[at].peer_id, sealed).decode()
        elif op["op"] == "open":
            try:
                out["result"] = me.open(peer, b64u_decode(op["frame"])).decode()
            except ProtocolError as exc:
                out["result"] = exc.code
        elif op["op"] == "close":
            out["result"] = me.close(peer)
        elif op["op"] == "down":
            out["result"] = me.down(peer)
        state = me.state(peer)
        out["state"] = None if state is None else state.value
        out["dead"] = me.take_dead()
        outs.append(out)
    return outs


def replay_part(doc: dict[str, Any]) -> list[str]:
    """Mismatches between a recorded part trace and the Python part (empty = identical)."""
    problems: list[str] = []
    for i, (op, got) in enumerate(zip(doc["ops"], run_part(doc), strict=True)):
        if op["out"] != got:
            problems.append(f"op {i} ({op['op']}): output differs")
            break
    return problems


__all__ = ["T0", "Trace", "replay", "replay_part", "run_part"]
