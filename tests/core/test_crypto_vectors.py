"""The committed vectors are reproducible and every one of them opens/verifies."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.chains import ReceiverChain, SenderKeyMessage
from peer.core.envelope import open_envelope, parse_envelope
from peer.core.erasure import ErasureReceipt
from peer.core.errors import ProtocolError
from peer.core.handshake import PairwiseSession, PrekeyPrivate, SignedPrekey, open_from_prekey, open_pairwise
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.membership import MembershipOp, MembershipState
from peer.core.presence import decode_presence
from peer.core.safety import safety_number
from peer.core.signal import ReplayCache, open_signal

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _load(name: str) -> dict[str, Any]:
    data = json.loads((VECTORS / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def test_vectors_regenerate_identically() -> None:
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "scripts" / "gen_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, doc in module.build().items():
        assert (VECTORS / f"{name}.json").read_text() == module.render(doc), name


def _ids() -> tuple[Identity, Identity]:
    v = _load("identity")
    return Identity.from_bytes(bytes.fromhex(v["alice"]["identity_bytes"])), Identity.from_bytes(
        bytes.fromhex(v["bob"]["identity_bytes"])
    )


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_identity_vector(who: str) -> None:
    v = _load("identity")[who]
    ident = Identity.from_bytes(bytes.fromhex(v["identity_bytes"]))
    assert ident.public_key.hex() == v["ed25519_public"]
    assert ident.peer_id == v["peer_id"]
    assert ident.x25519_public.hex() == v["x25519_public"]
    assert ident.fingerprint == v["fingerprint"]
    assert PublicBundle.from_dict(v["bundle"]) == ident.public_bundle()


def test_invite_and_safety_vectors() -> None:
    v = _load("invite")
    inv = Invite.parse(v["url"])
    assert inv.secret.hex() == v["secret"]
    assert inv.room_id == v["room_id"]
    assert inv.signal_key.hex() == v["signal_key"]
    assert inv.member_key.hex() == v["member_key"]
    alice, bob = _ids()
    assert safety_number(bob.public_key, alice.public_key) == _load("identity")["safety_number"]


def test_chain_vector_opens() -> None:
    v = _load("chain")
    skm = SenderKeyMessage.decode(bytes.fromhex(v["sender_key_message"]))
    rx = ReceiverChain.from_sender_key_message(skm, bytes.fromhex(v["sender_ed25519"]))
    for m in reversed(v["messages"]):
        pt, rx = open_envelope(parse_envelope(bytes.fromhex(m["envelope"])), rx)
        assert pt.hex() == m["plaintext"]


def test_signal_vector_opens() -> None:
    v, inv = _load("signal"), Invite.parse(_load("invite")["url"])
    opened = open_signal(inv, v["to"], v["from"], v["payload"], v["now"], ReplayCache())
    assert opened.kind == v["kind"]
    assert opened.body == v["body"]


def test_handshake_and_prekey_vectors_open() -> None:
    alice, bob = _ids()
    h = _load("handshake")
    bob_session = PairwiseSession(
        alice.peer_id, bytes.fromhex(h["alice_recv_key"]), bytes.fromhex(h["alice_send_key"])
    )
    _, pt = open_pairwise(
        bob_session, bytes.fromhex(h["pairwise_frame_alice_to_bob"]), bytes.fromhex(h["pairwise_aad"])
    )
    assert pt.hex() == h["pairwise_plaintext"]
    p = _load("prekey")
    pk = PrekeyPrivate(
        bytes.fromhex(p["prekey_private"]), SignedPrekey.from_bytes(bytes.fromhex(p["signed_prekey"]))
    )
    opened = open_from_prekey(
        bob, pk, alice.public_bundle(), bytes.fromhex(p["frame"]), bytes.fromhex(p["aad"]), p["now"]
    )
    assert opened.plaintext.hex() == p["plaintext"]


def test_membership_vector_applies() -> None:
    v = _load("membership")
    ops = [MembershipOp.decode(bytes.fromhex(o)) for o in v["ops"]]
    state, rejected = MembershipState.from_ops(v["room_id"], ops, bytes.fromhex(v["member_key"]))
    assert rejected == []
    assert state.to_dict() == v["state"]


_RANGE_PARSERS: dict[str, Any] = {
    "envelope": parse_envelope,
    "membership": MembershipOp.decode,
    "receipt": ErasureReceipt.decode,
    "seen": lambda b: decode_presence(b),
}


@pytest.mark.parametrize("case", _load("ranges")["cases"], ids=lambda c: c["name"])
def test_range_vectors_one_integer_range(case: dict[str, Any]) -> None:
    """Every u64 read from remote input lies in 0..2**53-1 (the JS core refuses the same bytes:
    tests/browser/test_vectors.py runs this file in Chromium)."""
    parse = _RANGE_PARSERS[case["what"]]
    data = bytes.fromhex(case["hex"])
    if case["code"] is None:
        parse(data)
    else:
        with pytest.raises(ProtocolError) as exc:
            parse(data)
        assert exc.value.code == case["code"]


def test_timer_pin_vector() -> None:
    v = _load("membership")
    ops = [MembershipOp.decode(bytes.fromhex(h)) for h in v["timer_pin"]["ops"]]
    for order in (ops, ops[::-1]):
        state, rejected = MembershipState.from_ops(v["room_id"], order, bytes.fromhex(v["member_key"]))
        assert not rejected
        assert state.to_dict() == v["timer_pin"]["state"]


def test_governance_vectors_resolve_identically_in_any_order() -> None:
    """Roles, concurrent ops and announcement mode (tests/vectors/governance.json, checked in JS too)."""
    v = _load("governance")
    inv = Invite.parse(v["invite"]["url"])
    assert (inv.owner, inv.room_id) == (v["invite"]["owner"], v["invite"]["room_id"])
    assert (inv.signal_key.hex(), inv.member_key.hex()) == (
        v["invite"]["signal_key"],
        v["invite"]["member_key"],
    )
    assert Invite(inv.server, inv.secret, inv.ttl_s).room_id == v["invite"]["legacy_room_id"] != inv.room_id
    assert Invite.parse(inv.url()) == inv
    for bad in v["invite"]["bad"]:
        with pytest.raises(ProtocolError, match="bad-invite"):
            Invite.parse(bad)
    for sc in v["scenarios"]:
        ops = [MembershipOp.decode(bytes.fromhex(o)) for o in sc["ops"]]
        for order in (ops, ops[::-1], ops[1::2] + ops[::2]):
            state, rejected = MembershipState.from_ops(
                sc["room_id"], order, bytes.fromhex(sc["member_key"]), sc["owner"]
            )
            assert state.to_dict() == sc["state"], sc["name"]
            assert sorted(ops.index(op) for op in rejected) == sc["rejected"], sc["name"]
            assert sorted(p for p in state.members if state.is_admin(p)) == sc["admins"]
            assert [[p, n, state.may_post(p, n)] for p, n, _ in sc["posts"]] == sc["posts"]
