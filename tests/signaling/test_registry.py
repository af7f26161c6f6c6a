"""Sans-IO registry: join/leave/signal/replace/limits/timers on a fake clock, no sockets."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from signaling import protocol
from signaling.config import Limits, SignalingConfig, TurnConfig
from signaling.registry import CLOSE_IDLE, CLOSE_POLICY, CLOSE_REPLACED, Close, Delivery, Registry, Send

from .conftest import Identity, room

NONCE = bytes(range(32))


def frames_for(out: list[Delivery], conn_id: int) -> list[dict[str, Any]]:
    return [d.frame for d in out if isinstance(d, Send) and d.conn_id == conn_id]


def closes(out: list[Delivery]) -> list[Close]:
    return [d for d in out if isinstance(d, Close)]


def auth_frame(ident: Identity, nonce: bytes = NONCE) -> str:
    sig = ident.sign(protocol.auth_message(nonce))
    return json.dumps(
        {"type": "auth", "pubkey": protocol.b64u_encode(ident.public_key), "sig": protocol.b64u_encode(sig)}
    )


class World:
    """A registry plus helpers to open authenticated connections."""

    def __init__(self, config: SignalingConfig | None = None) -> None:
        self.reg = Registry(config or SignalingConfig())
        self.now = 1_700_000_000.0
        self.next_id = 1

    def open(self, ident: Identity | None = None) -> tuple[int, Identity]:
        ident = ident or Identity.generate()
        cid = self.next_id
        self.next_id += 1
        out = self.reg.connect(cid, NONCE, self.now)
        assert frames_for(out, cid)[0]["type"] == "challenge"
        out = self.reg.handle(cid, auth_frame(ident), self.now)
        assert any(f["type"] == "welcome" for f in frames_for(out, cid)), out
        return cid, ident

    def send(self, cid: int, frame: dict[str, Any] | str) -> list[Delivery]:
        return self.reg.handle(cid, frame if isinstance(frame, str) else json.dumps(frame), self.now)

    def join(self, cid: int, room_id: str) -> list[Delivery]:
        return self.send(cid, {"type": "join", "room": room_id})


def test_challenge_announces_timers() -> None:
    reg = Registry(SignalingConfig(heartbeat_s=15, idle_timeout_s=45))
    [challenge] = frames_for(reg.connect(1, NONCE, 0.0), 1)
    assert challenge == {
        "type": "challenge",
        "v": 1,
        "nonce": protocol.b64u_encode(NONCE),
        "heartbeat_s": 15,
        "idle_timeout_s": 45,
    }


def test_join_announces_to_present_members_only() -> None:
    w = World()
    a, ia = w.open()
    b, ib = w.open()
    out = w.join(a, room(1))
    assert frames_for(out, a) == [{"type": "joined", "room": room(1), "peers": []}]
    out = w.join(b, room(1))
    assert frames_for(out, b) == [{"type": "joined", "room": room(1), "peers": [ia.peer_id]}]
    assert frames_for(out, a) == [{"type": "peer-joined", "room": room(1), "peer": ib.peer_id}]
    # joining again is idempotent and announces nothing
    out = w.join(b, room(1))
    assert frames_for(out, a) == []
    assert frames_for(out, b)[0]["peers"] == [ia.peer_id]
    assert w.reg.room_count == 1


def test_signal_is_relayed_verbatim_with_sender() -> None:
    w = World()
    a, ia = w.open()
    b, ib = w.open()
    w.join(a, room(1))
    w.join(b, room(1))
    out = w.send(a, {"type": "signal", "room": room(1), "to": ib.peer_id, "payload": "opaque\u2603"})
    assert out == [
        Send(b, {"type": "signal", "room": room(1), "from": ia.peer_id, "payload": "opaque\u2603"})
    ]


def test_signal_requires_shared_room() -> None:
    w = World()
    a, _ = w.open()
    b, ib = w.open()
    w.join(a, room(1))
    w.join(b, room(2))
    out = w.send(a, {"type": "signal", "room": room(1), "to": ib.peer_id, "payload": "x"})
    assert frames_for(out, a)[0]["code"] == "unknown-peer"
    out = w.send(a, {"type": "signal", "room": room(2), "to": ib.peer_id, "payload": "x"})
    assert frames_for(out, a)[0]["code"] == "not-in-room"
    assert frames_for(out, b) == []


def test_leave_and_disconnect_announce_peer_left() -> None:
    w = World()
    a, ia = w.open()
    b, ib = w.open()
    w.join(a, room(1))
    w.join(a, room(2))
    w.join(b, room(1))
    w.join(b, room(2))
    out = w.send(b, {"type": "leave", "room": room(1)})
    assert frames_for(out, b) == [{"type": "left", "room": room(1)}]
    assert frames_for(out, a) == [{"type": "peer-left", "room": room(1), "peer": ib.peer_id}]
    assert frames_for(w.send(b, {"type": "leave", "room": room(1)}), b)[0]["code"] == "not-in-room"
    out = w.reg.disconnect(b, w.now)
    assert frames_for(out, a) == [{"type": "peer-left", "room": room(2), "peer": ib.peer_id}]
    assert w.reg.disconnect(b, w.now) == []
    out = w.reg.disconnect(a, w.now)
    assert out == []
    assert w.reg.room_count == 0
    assert w.reg.connection_count == 0
    del ia


def test_same_peer_replaces_older_connection() -> None:
    w = World()
    a, ia = w.open()
    b, ib = w.open()
    w.join(a, room(1))
    w.join(b, room(1))
    a2 = w.next_id
    w.next_id += 1
    w.reg.connect(a2, NONCE, w.now)
    out = w.reg.handle(a2, auth_frame(ia), w.now)
    assert frames_for(out, a)[0]["code"] == "replaced"
    assert closes(out) == [Close(a, CLOSE_REPLACED, "replaced")]
    assert frames_for(out, b) == [{"type": "peer-left", "room": room(1), "peer": ia.peer_id}]
    assert frames_for(out, a2)[-1]["type"] == "welcome"
    # the stale connection is inert; the new one rejoins and is announced
    assert w.send(a, {"type": "ping"}) == []
    out = w.join(a2, room(1))
    assert frames_for(out, a2)[0]["peers"] == [ib.peer_id]
    assert frames_for(out, b) == [{"type": "peer-joined", "room": room(1), "peer": ia.peer_id}]
    # disconnecting the stale one later must not evict the new one
    w.reg.disconnect(a, w.now)
    assert w.reg.peers_in(room(1)) == sorted([ia.peer_id, ib.peer_id])


def test_room_and_membership_limits() -> None:
    w = World(SignalingConfig(limits=replace(Limits(), max_rooms_per_conn=2, max_peers_per_room=2)))
    a, _ = w.open()
    b, _ = w.open()
    c, _ = w.open()
    w.join(a, room(1))
    w.join(a, room(2))
    err = frames_for(w.join(a, room(3)), a)[0]
    assert (err["code"], err["ref"], err["room"]) == ("too-many-rooms", "join", room(3))
    w.join(b, room(1))
    assert frames_for(w.join(c, room(1)), c)[0]["code"] == "room-full"


def test_auth_is_required_and_verified() -> None:
    w = World()
    w.reg.connect(1, NONCE, w.now)
    out = w.send(1, {"type": "join", "room": room(1)})
    assert frames_for(out, 1)[0] == {
        "type": "error",
        "code": "not-authenticated",
        "message": "authenticate first",
        "ref": "join",
    }
    ident = Identity.generate()
    out = w.send(1, auth_frame(ident, nonce=bytes(32)))  # signed the wrong nonce
    assert frames_for(out, 1)[0]["code"] == "auth-failed"
    assert closes(out) == [Close(1, CLOSE_POLICY, "auth-failed")]
    assert w.reg.connection_count == 0


@pytest.mark.parametrize(
    "pubkey",
    [bytes(32), b"\x01" + bytes(31), bytes.fromhex("ec" + "ff" * 30 + "7f"), b"\x01" + bytes(30) + b"\x80"],
)
def test_small_order_keys_are_refused(pubkey: bytes) -> None:
    assert protocol.is_small_order(pubkey)
    assert not protocol.is_acceptable_public_key(pubkey)
    w = World()
    w.reg.connect(1, NONCE, w.now)
    # with R = identity and S = 0, lax verifiers accept this "signature" under a small-order key
    sig = b"\x01" + bytes(63)
    frame = {"type": "auth", "pubkey": protocol.b64u_encode(pubkey), "sig": protocol.b64u_encode(sig)}
    assert frames_for(w.send(1, frame), 1)[0]["code"] == "auth-failed"


def test_rate_limit_then_close_after_too_many_errors() -> None:
    w = World(SignalingConfig(limits=replace(Limits(), rate_per_s=10, rate_burst=5, max_errors=3)))
    a, _ = w.open()  # auth consumed one token
    codes = [frames_for(w.send(a, {"type": "ping"}), a)[0]["type"] for _ in range(4)]
    assert codes == ["pong"] * 4
    err = frames_for(w.send(a, {"type": "ping"}), a)[0]
    assert (err["type"], err["code"]) == ("error", "rate-limited")
    w.now += 0.15  # one and a half tokens back
    assert frames_for(w.send(a, {"type": "ping"}), a)[0]["type"] == "pong"
    for _ in range(2):
        assert frames_for(w.send(a, {"type": "ping"}), a)[0]["code"] == "rate-limited"
    out = w.send(a, {"type": "ping"})
    assert [f["code"] for f in frames_for(out, a)] == ["rate-limited", "too-many-errors"]
    assert closes(out) == [Close(a, CLOSE_POLICY, "too-many-errors")]


def test_idle_and_auth_timeouts() -> None:
    w = World(SignalingConfig(idle_timeout_s=10, auth_timeout_s=3))
    a, _ = w.open()
    w.reg.connect(99, NONCE, w.now)  # never authenticates
    w.now += 3
    out = w.reg.tick(w.now)
    assert closes(out) == [Close(99, CLOSE_POLICY, "auth-timeout")]
    w.now += 6
    w.send(a, {"type": "ping"})  # activity resets the idle timer
    w.now += 9.9
    assert w.reg.tick(w.now) == []
    w.now += 0.1
    out = w.reg.tick(w.now)
    assert frames_for(out, a)[0]["code"] == "idle-timeout"
    assert closes(out) == [Close(a, CLOSE_IDLE, "idle-timeout")]


def test_turn_credentials_in_welcome() -> None:
    turn = TurnConfig(urls=("turn:127.0.0.1:3478",), secret="s3cret", ttl_s=600)
    w = World(SignalingConfig(turn=turn))
    ident = Identity.generate()
    w.reg.connect(1, NONCE, w.now)
    [welcome] = frames_for(w.send(1, auth_frame(ident)), 1)
    creds = welcome["turn"]
    assert creds["username"] == f"{int(w.now) + 600}:{ident.peer_id}"
    assert creds["urls"] == ["turn:127.0.0.1:3478"]
    assert creds["ttl_s"] == 600
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"s3cret", creds["username"].encode(), hashlib.sha1).digest())
    assert creds["credential"] == expected.decode()
