"""Signed, encrypted signaling payloads."""

from __future__ import annotations

import json

import pytest

from peer.core.crypto import DeterministicRng, aead_open, aead_seal, b64u_decode, b64u_encode
from peer.core.errors import ProtocolError
from peer.core.invite import Invite
from peer.core.signal import ReplayCache, _aad, _seal, open_signal, sdp_fingerprints, seal_signal

from .helpers import NOW, identity, invite

FP1 = (
    "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
)
FP2 = (
    "sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00"
)
SDP = f"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\na=fingerprint:{FP1}\r\na=setup:actpass\r\n"


def test_roundtrip_carries_bundle_and_fingerprints() -> None:
    alice, bob, inv = identity("alice"), identity("bob"), invite()
    body = {"type": "offer", "sdp": SDP}
    payload = seal_signal(alice, inv, bob.peer_id, "offer", body, NOW)
    opened = open_signal(inv, bob.peer_id, alice.peer_id, payload, NOW + 1000, ReplayCache())
    assert opened.kind == "offer"
    assert opened.body == body
    assert opened.sent_at == NOW
    assert opened.sender_bundle == alice.public_bundle()
    assert sdp_fingerprints(SDP) == [FP1]


def test_replay_stale_recipient_and_room_checks() -> None:
    alice, bob, carol, inv = identity("alice"), identity("bob"), identity("carol"), invite()
    payload = seal_signal(
        alice, inv, bob.peer_id, "candidate", "candidate:1 1 udp 1 10.0.0.1 9 typ host", NOW
    )
    cache = ReplayCache()
    open_signal(inv, bob.peer_id, alice.peer_id, payload, NOW, cache)
    with pytest.raises(ProtocolError, match="replay"):
        open_signal(inv, bob.peer_id, alice.peer_id, payload, NOW, cache)
    with pytest.raises(ProtocolError, match="stale"):
        open_signal(inv, bob.peer_id, alice.peer_id, payload, NOW + 120_001, ReplayCache())
    with pytest.raises(ProtocolError, match="stale"):
        open_signal(inv, bob.peer_id, alice.peer_id, payload, NOW - 120_001, ReplayCache())
    with pytest.raises(ProtocolError, match="bad-aead"):  # redirected to carol: AAD binds the recipient
        open_signal(inv, carol.peer_id, alice.peer_id, payload, NOW, ReplayCache())
    with pytest.raises(ProtocolError, match="bad-aead"):  # relay lies about the sender
        open_signal(inv, bob.peer_id, carol.peer_id, payload, NOW, ReplayCache())
    other_room = Invite.new("https://chat.example", rng=DeterministicRng(b"other"))
    with pytest.raises(ProtocolError, match="bad-aead"):
        open_signal(other_room, bob.peer_id, alice.peer_id, payload, NOW, ReplayCache())


def _reseal_inner(inv: Invite, sender: str, to: str, payload: str, edit: dict[str, object]) -> str:
    """What a room member (who holds signal_key but not the sender's identity key) could do."""
    raw = b64u_decode(payload[3:])
    inner = json.loads(aead_open(inv.signal_key, raw[:12], raw[12:], _aad(inv.room_id, sender, to)))
    inner.update(edit)
    ct = aead_seal(inv.signal_key, raw[:12], json.dumps(inner).encode(), _aad(inv.room_id, sender, to))
    return "v1." + b64u_encode(raw[:12] + ct)


def test_swapped_dtls_fingerprint_rejected() -> None:
    alice, bob, inv = identity("alice"), identity("bob"), invite()
    payload = seal_signal(alice, inv, bob.peer_id, "offer", {"type": "offer", "sdp": SDP}, NOW)
    evil_body = json.dumps({"type": "offer", "sdp": SDP.replace(FP1, FP2)}, separators=(",", ":"))
    # 1. a member swaps the fingerprint in the SDP: the signature (over the body hash) breaks.
    swapped = _reseal_inner(inv, alice.peer_id, bob.peer_id, payload, {"body": evil_body})
    with pytest.raises(ProtocolError, match="bad-signature"):
        open_signal(inv, bob.peer_id, alice.peer_id, swapped, NOW, ReplayCache())
    # 2. also swapping the signed list does not help.
    both = _reseal_inner(inv, alice.peer_id, bob.peer_id, payload, {"body": evil_body, "fp": [FP2]})
    with pytest.raises(ProtocolError, match="bad-signature"):
        open_signal(inv, bob.peer_id, alice.peer_id, both, NOW, ReplayCache())
    # 3. a sender that signs a list different from its SDP is refused too.
    lying = _seal(alice, inv, bob.peer_id, "offer", {"sdp": SDP}, NOW, DeterministicRng(b"x"), [FP2])
    with pytest.raises(ProtocolError, match="fingerprint-mismatch"):
        open_signal(inv, bob.peer_id, alice.peer_id, lying, NOW, ReplayCache())


def test_sender_impersonation_rejected() -> None:
    alice, bob, mallory, inv = identity("alice"), identity("bob"), identity("mallory"), invite()
    payload = seal_signal(mallory, inv, bob.peer_id, "offer", {"sdp": SDP}, NOW)
    # Mallory re-labels her payload as Alice's but cannot produce Alice's key/signature.
    forged = _reseal_inner(inv, mallory.peer_id, bob.peer_id, payload, {})
    forged_raw = b64u_decode(forged[3:])
    inner = json.loads(
        aead_open(
            inv.signal_key, forged_raw[:12], forged_raw[12:], _aad(inv.room_id, mallory.peer_id, bob.peer_id)
        )
    )
    inner["from"] = alice.peer_id
    ct = aead_seal(
        inv.signal_key,
        forged_raw[:12],
        json.dumps(inner).encode(),
        _aad(inv.room_id, alice.peer_id, bob.peer_id),
    )
    with pytest.raises(ProtocolError, match="wrong-sender"):
        open_signal(
            inv, bob.peer_id, alice.peer_id, "v1." + b64u_encode(forged_raw[:12] + ct), NOW, ReplayCache()
        )
    inner["bundle"] = alice.public_bundle().to_dict()
    ct = aead_seal(
        inv.signal_key,
        forged_raw[:12],
        json.dumps(inner).encode(),
        _aad(inv.room_id, alice.peer_id, bob.peer_id),
    )
    with pytest.raises(ProtocolError, match="bad-signature"):
        open_signal(
            inv, bob.peer_id, alice.peer_id, "v1." + b64u_encode(forged_raw[:12] + ct), NOW, ReplayCache()
        )


def test_replay_cache_is_bounded_and_fails_closed() -> None:
    cache = ReplayCache(capacity=3)
    for i in range(5):
        cache.check_and_add("a" * 32, bytes([i]) * 16, NOW + i, NOW + i)
    assert len(cache) == 3
    # entry 0 and 1 were evicted; the floor makes their replay (ts <= floor) fail anyway
    with pytest.raises(ProtocolError, match="replay"):
        cache.check_and_add("a" * 32, bytes([0]) * 16, NOW, NOW + 5)
