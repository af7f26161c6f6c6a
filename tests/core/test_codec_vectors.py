"""The codec vectors (frames, content, APP bodies, room envelopes, key lists, RNG) hold for the Python core.

Each vector is checked both ways: decoding the bytes gives the recorded fields, and encoding the fields
gives the recorded bytes. The browser suite checks the same files against the JS core
(``web/js/test/vectors.js``), so the two cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peer.core import wire
from peer.core.chains import ReceiverChain, SenderKeyMessage
from peer.core.content import Content, Edit, Profile, Reaction, Text, decode_content, encode_content
from peer.core.crypto import (
    ED25519_SMALL_ORDER,
    X25519_SMALL_ORDER,
    DeterministicRng,
    sha256,
    validate_ed25519_public,
    validate_x25519_public,
)
from peer.core.envelope import (
    MAX_ENVELOPE,
    Kind,
    decode_tombstone,
    encode_tombstone,
    open_envelope,
    parse_envelope,
    verify_envelope,
)
from peer.core.erasure import ErasureReceipt
from peer.core.errors import ProtocolError
from peer.core.handshake import PairwiseSession, PrekeyPrivate, SignedPrekey, open_from_prekey, open_pairwise
from peer.core.identity import Identity
from peer.core.log import Tombstone
from peer.core.membership import MembershipOp, MembershipState
from peer.core.presence import SeenSignal, TypingSignal, decode_presence, encode_seen, encode_typing
from signaling.config import TurnConfig
from signaling.protocol import auth_message, is_acceptable_public_key, verify_auth
from signaling.turn import turn_credentials

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"


def _load(name: str) -> dict[str, Any]:
    data = json.loads((VECTORS / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def _ids() -> tuple[Identity, Identity]:
    v = _load("identity")
    return (
        Identity.from_bytes(bytes.fromhex(v["alice"]["identity_bytes"])),
        Identity.from_bytes(bytes.fromhex(v["bob"]["identity_bytes"])),
    )


def _code(parse: Any, data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(data)
    return info.value.code


# -- frames ------------------------------------------------------------------------------------------------


def _ranges(obj: dict[str, list[list[int]]]) -> dict[str, list[tuple[int, int]]]:
    return {s: [(a, b) for a, b in rs] for s, rs in obj.items()}


def _encode(name: str, f: dict[str, Any]) -> bytes:
    kind = name.split("-")[0]
    if kind == "hello":
        return wire.encode_hello(f["room_id"], _ranges(f["have"]))
    if kind == "envelopes":
        (frame,) = wire.encode_envelopes([bytes.fromhex(x) for x in f["items"]])
        return frame
    if kind in ("want", "ack"):
        enc = wire.encode_want if kind == "want" else wire.encode_ack
        (frame,) = enc(_ranges(f["ranges"]))
        return frame
    if kind in ("ping", "pong"):
        return (wire.encode_ping if kind == "ping" else wire.encode_pong)(f["nonce"])
    if kind == "tombstones":
        items = [Tombstone(t["sender"], t["seq"], t["until"], bytes.fromhex(t["proof"])) for t in f["items"]]
        (frame,) = wire.encode_tombstones(items)
        return frame
    ftype = {"handshake": wire.FrameType.HANDSHAKE, "pairwise": wire.FrameType.PAIRWISE}.get(
        kind, wire.FrameType.APP
    )
    return wire.encode_opaque(ftype, bytes.fromhex(f["body"]))


def _fields(frame: wire.Frame) -> dict[str, Any]:
    if isinstance(frame, wire.Hello):
        have = {s: [[a, b] for a, b in rs] for s, rs in frame.have.items()}
        return {"room_id": frame.room_id, "have": have, "version": frame.version}
    if isinstance(frame, wire.Envelopes):
        return {"items": [x.hex() for x in frame.items]}
    if isinstance(frame, wire.Want | wire.Ack):
        return {"ranges": {s: [[a, b] for a, b in rs] for s, rs in frame.ranges.items()}}
    if isinstance(frame, wire.Ping | wire.Pong):
        return {"nonce": frame.nonce}
    if isinstance(frame, wire.Tombstones):
        items = [
            {"sender": t.sender, "seq": t.seq, "until": t.until, "proof": t.proof.hex()} for t in frame.items
        ]
        return {"items": items}
    assert isinstance(frame, wire.Opaque)
    return {"body": frame.body.hex()}


@pytest.mark.parametrize("case", _load("frames")["frames"], ids=lambda c: c["name"])
def test_frame_vector(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    assert data[0] == case["type"]
    assert _fields(wire.decode_frame(data)) == case["fields"]
    assert _encode(case["name"], case["fields"]).hex() == case["hex"]


@pytest.mark.parametrize("case", _load("frames")["bad"], ids=lambda c: c["name"])
def test_bad_frame_vector(case: dict[str, Any]) -> None:
    assert _code(wire.decode_frame, bytes.fromhex(case["hex"])) == case["code"]


def test_frame_limits_and_splits() -> None:
    v = _load("frames")
    assert (v["max_frame"], v["max_envelope"], v["max_proof"]) == (
        wire.MAX_FRAME,
        MAX_ENVELOPE,
        wire.MAX_PROOF,
    )
    assert _code(wire.decode_frame, b"\x12" + bytes(wire.MAX_FRAME)) == v["too_large"]["code"]
    split = v["envelopes_split"]
    frames = wire.encode_envelopes([bytes([k + 1]) * n for k, n in enumerate(split["sizes"])])
    assert [len(f) for f in frames] == split["frame_lengths"]
    assert [sha256(f).hex() for f in frames] == split["frame_sha256"]
    with pytest.raises(ValueError, match="too large"):
        wire.encode_envelopes([bytes(MAX_ENVELOPE + 1)])
    under = v["hello_underclaim"]
    have = {
        sha256(b"sender" + i.to_bytes(4, "big"))[:16].hex(): [tuple(under["range"])]
        for i in range(under["n_senders"])
    }
    hello = wire.encode_hello(v["room_id"], have)
    assert (len(hello), sha256(hello).hex()) == (under["frame_length"], under["frame_sha256"])
    decoded = wire.decode_frame(hello)
    assert isinstance(decoded, wire.Hello)
    assert len(decoded.have) == under["claimed"]
    assert sorted(decoded.have) == sorted(have)[: under["claimed"]]


# -- content -----------------------------------------------------------------------------------------------


def _content(f: dict[str, Any]) -> Content:
    if f["t"] == "text":
        return Text(f["body"], f["reply_to"])
    if f["t"] == "profile":
        return Profile(f["name"])
    if f["t"] == "edit":
        return Edit(f["target"], f["body"])
    return Reaction(f["target"], f["emoji"], f["on"])


@pytest.mark.parametrize("case", _load("content")["valid"], ids=lambda c: c["name"])
def test_content_vector(case: dict[str, Any]) -> None:
    content = _content(case["content"])
    assert encode_content(content).hex() == case["plaintext"]
    assert decode_content(bytes.fromhex(case["plaintext"])) == content


@pytest.mark.parametrize("case", _load("content")["bad"], ids=lambda c: c["name"])
def test_bad_content_vector(case: dict[str, Any]) -> None:
    assert _code(decode_content, bytes.fromhex(case["plaintext"])) == case["code"]


# -- APP bodies --------------------------------------------------------------------------------------------


def test_presence_and_receipt_vectors() -> None:
    v = _load("app")
    alice, bob = _ids()
    for case in v["presence"]:
        body = bytes.fromhex(case["body"])
        f = case["fields"]
        if f["type"] == "typing":
            assert encode_typing(f["typing"]) == body
            assert decode_presence(body) == TypingSignal(f["typing"])
        else:
            assert encode_seen(f["seqs"]) == body
            assert decode_presence(body) == SeenSignal(tuple(f["seqs"]))
    for case in v["presence_bad"]:
        assert _code(decode_presence, bytes.fromhex(case["body"])) == case["code"], case["name"]
    r = v["receipt"]
    made = ErasureReceipt.create(bob, v["room_id"], alice.peer_id, r["seqs_given"])
    assert made.encode().hex() == r["body"]
    assert wire.encode_opaque(wire.FrameType.APP, made.encode()).hex() == r["app_frame"]
    parsed = ErasureReceipt.decode(bytes.fromhex(r["body"]))
    assert (parsed.member, parsed.sender, list(parsed.seqs)) == (r["member"], r["sender"], r["seqs"])
    parsed.verify(bob.public_key)
    with pytest.raises(ProtocolError, match="wrong-sender"):
        parsed.verify(alice.public_key)
    for case in v["receipt_bad"]:
        assert _code(ErasureReceipt.decode, bytes.fromhex(case["body"])) == case["code"], case["name"]


# -- the room's envelopes ----------------------------------------------------------------------------------


def test_room_vector() -> None:
    v = _load("room")
    alice, bob = _ids()
    room = v["room_id"]
    hs = _load("handshake")
    h = v["handshake"]
    assert h["alice_hello_frame"] == "1001" + hs["alice_hello"]
    assert h["bob_finish_frame"] == "1002" + hs["bob_finish"]
    assert h["alice_finish_frame"] == "1002" + hs["alice_finish"]
    sk = v["sender_key"]
    skm_bytes = bytes.fromhex(sk["sender_key_message"])
    skm = SenderKeyMessage.decode(skm_bytes)
    # the PAIRWISE frame carries the bare SenderKeyMessage (no type tag) under the pairwise aad
    bob_session = _load_bob_session(hs, alice)
    frame = wire.decode_frame(bytes.fromhex(sk["pairwise_frame_alice_to_bob"]))
    assert isinstance(frame, wire.Opaque)
    assert frame.type == wire.FrameType.PAIRWISE
    _, plaintext = open_pairwise(bob_session, frame.body, bytes.fromhex(v["pairwise_aad"]))
    assert plaintext == skm_bytes
    prekey = PrekeyPrivate(
        bytes.fromhex(sk["bob_prekey_private"]),
        SignedPrekey.from_bytes(bytes.fromhex(sk["bob_signed_prekey"])),
    )
    by_sender = {alice.peer_id: alice, bob.peer_id: bob}
    ops: list[MembershipOp] = []
    rx = ReceiverChain.from_sender_key_message(skm, alice.public_key)
    for e in v["envelopes"]:
        data = bytes.fromhex(e["envelope"])
        env = parse_envelope(data)
        sender = by_sender[e["sender"]]
        verify_envelope(env, sender.public_key)
        got = (env.kind, env.sender, env.seq, env.lamport, env.sent_at, env.expires_at)
        assert got == (e["kind"], e["sender"], e["seq"], e["lamport"], e["sent_at"], e["expires_at"])
        assert env.to_bytes() == data
        if env.kind == Kind.MEMBERSHIP:
            op = MembershipOp.decode(env.payload)
            assert op.lamport == e["op_lamport"] == env.lamport - 1
            ops.append(op)
        elif env.kind == Kind.SENDER_KEY:
            opened = open_from_prekey(
                bob, prekey, alice.public_bundle(), env.payload, bytes.fromhex(v["prekey_aad"]), env.sent_at
            )
            assert opened.plaintext == skm_bytes
        elif env.kind == Kind.CHAT:
            pt, rx = open_envelope(env, rx)
            assert pt.hex() == v["chat"]["plaintext"]
            assert decode_content(pt) == Text("hello, room")
        else:
            assert decode_tombstone(env.payload) == v["tombstone_seqs"]
            assert encode_tombstone(v["tombstone_seqs"]) == env.payload
            assert len(data) <= wire.MAX_PROOF  # it doubles as a tombstone proof
        if env.kind != Kind.CHAT:
            assert env.payload.hex() == e["payload"]
    state, rejected = MembershipState.from_ops(room, ops, _invite_member_key())
    assert rejected == []
    assert state.to_dict() == v["membership_state"]


@pytest.mark.parametrize("case", _load("room")["bad_envelopes"], ids=lambda c: c["name"])
def test_bad_envelope_vector(case: dict[str, Any]) -> None:
    alice, _ = _ids()

    def parse_and_verify(data: bytes) -> None:
        verify_envelope(parse_envelope(data), alice.public_key)

    assert _code(parse_and_verify, bytes.fromhex(case["envelope"])) == case["code"]


def test_envelope_size_and_tombstone_payload_limits() -> None:
    assert _code(parse_envelope, bytes(MAX_ENVELOPE + 1)) == "too-large"
    for case in _load("room")["bad_tombstone_payloads"]:
        assert _code(decode_tombstone, bytes.fromhex(case["payload"])) == case["code"]


def _load_bob_session(hs: dict[str, Any], alice: Identity) -> PairwiseSession:
    return PairwiseSession(
        alice.peer_id, bytes.fromhex(hs["alice_recv_key"]), bytes.fromhex(hs["alice_send_key"])
    )


def _invite_member_key() -> bytes:
    return bytes.fromhex(_load("invite")["member_key"])


# -- key lists and the RNG ---------------------------------------------------------------------------------


def test_key_validation_vectors() -> None:
    v = _load("keys")
    assert sorted(k.hex() for k in ED25519_SMALL_ORDER) == v["ed25519_small_order"]
    assert sorted(k.hex() for k in X25519_SMALL_ORDER) == v["x25519_small_order"]
    for k in [*v["ed25519_small_order"], *v["ed25519_non_canonical"], v["ed25519_mixed_order"]["key"]]:
        assert _code(validate_ed25519_public, bytes.fromhex(k)) == "bad-key", k
    for k in [*v["x25519_small_order"], *v["x25519_non_canonical"]]:
        assert _code(validate_x25519_public, bytes.fromhex(k)) == "bad-key", k
    validate_ed25519_public(bytes.fromhex(v["ed25519_valid"]))
    validate_x25519_public(bytes.fromhex(v["x25519_valid"]))


def test_rng_vector() -> None:
    v = _load("rng")
    rng = DeterministicRng(bytes.fromhex(v["seed"]))
    assert [rng(n).hex() for n in v["calls"]] == v["outputs"]
    first = sha256(bytes.fromhex(v["seed"]) + bytes(4))
    assert v["outputs"][0] == first[:8].hex()


def test_signaling_auth_vector() -> None:
    v = _load("auth")
    alice, _ = _ids()
    nonce = bytes.fromhex(v["nonce"])
    assert DeterministicRng(bytes.fromhex(v["nonce_rng_seed"]))(32) == nonce
    assert auth_message(nonce).hex() == v["message"]
    assert alice.sign(auth_message(nonce)).hex() == v["signature"]
    assert verify_auth(alice.public_key, bytes.fromhex(v["signature"]), nonce) == v["peer_id"]
    with pytest.raises(ProtocolError, match="auth-failed"):
        verify_auth(alice.public_key, bytes.fromhex(v["signature"]), bytes(32))
    # the server refuses every key the core refuses
    keys = _load("keys")
    for k in [
        *keys["ed25519_small_order"],
        *keys["ed25519_non_canonical"],
        keys["ed25519_mixed_order"]["key"],
    ]:
        assert not is_acceptable_public_key(bytes.fromhex(k)), k


def test_turn_credentials_vector() -> None:
    v = _load("auth")["turn"]
    creds = turn_credentials(
        TurnConfig(("turn:t.example:3478",), v["secret"], v["ttl_s"]), _ids()[0].peer_id, v["now_s"]
    )
    assert (creds["username"], creds["credential"]) == (v["username"], v["credential"])
