"""Pairwise handshake, pairwise sessions and prekey sealing."""

from __future__ import annotations

import pytest

from peer.core.crypto import DeterministicRng
from peer.core.errors import ProtocolError
from peer.core.handshake import (
    Handshake,
    PairwiseSession,
    generate_prekey,
    open_from_prekey,
    open_pairwise,
    seal_pairwise,
    seal_to_prekey,
)

from .helpers import NOW, identity, invite, prekey


def _pair() -> tuple[PairwiseSession, PairwiseSession]:
    alice, bob, room = identity("alice"), identity("bob"), invite().room_id
    ha = Handshake(alice, bob.public_bundle(), room, DeterministicRng(b"ea"))
    hb = Handshake(bob, alice.public_bundle(), room, DeterministicRng(b"eb"))
    fa, fb = ha.on_hello(hb.hello()), hb.on_hello(ha.hello())
    return ha.on_finish(fb), hb.on_finish(fa)


def test_handshake_agrees_and_sessions_work() -> None:
    sa, sb = _pair()
    assert sa.send_key == sb.recv_key
    assert sa.recv_key == sb.send_key
    assert sa.send_key != sa.recv_key
    sa, frame = seal_pairwise(sa, b"hi", b"ctx")
    sb, pt = open_pairwise(sb, frame, b"ctx")
    assert pt == b"hi"
    with pytest.raises(ProtocolError, match="replay"):
        open_pairwise(sb, frame, b"ctx")
    assert PairwiseSession.from_bytes(sb.to_bytes()) == sb


def test_handshake_rejects_wrong_identity_signature() -> None:
    alice, bob, mallory, room = identity("alice"), identity("bob"), identity("mallory"), invite().room_id
    ha = Handshake(alice, bob.public_bundle(), room)
    # Mallory runs the handshake with her own key while claiming Bob's bundle: her FINISH cannot verify.
    hm = Handshake(mallory, alice.public_bundle(), room)
    bob_id, mallory_id = bytes.fromhex(bob.peer_id), bytes.fromhex(mallory.peer_id)
    ha.on_hello(hm.hello()[:18] + bob_id + hm.hello()[34:])  # relabelled as from Bob
    finish = hm.on_hello(ha.hello()[:34] + mallory_id + ha.hello()[50:])
    with pytest.raises(ProtocolError, match="bad-signature"):
        ha.on_finish(finish[:18] + bob_id + finish[34:])
    with pytest.raises(ProtocolError, match="bad-handshake"):
        Handshake(alice, bob.public_bundle(), room).on_finish(b"x")


def test_handshake_rejects_small_order_ephemeral() -> None:
    alice, bob, room = identity("alice"), identity("bob"), invite().room_id
    ha, hb = Handshake(alice, bob.public_bundle(), room), Handshake(bob, alice.public_bundle(), room)
    with pytest.raises(ProtocolError, match="bad-key"):
        ha.on_hello(hb.hello()[:50] + bytes(32))


def test_prekey_seal_open() -> None:
    alice, bob = identity("alice"), identity("bob")
    pk = prekey(bob)
    frame = seal_to_prekey(alice, bob.public_bundle(), pk.signed, b"chain key", b"room|epoch", NOW)
    opened = open_from_prekey(bob, pk, alice.public_bundle(), frame, b"room|epoch", NOW)
    assert opened.plaintext == b"chain key"
    assert opened.sent_at == NOW
    assert len(opened.msg_id) == 16
    with pytest.raises(ProtocolError, match="bad-signature"):
        open_from_prekey(bob, pk, alice.public_bundle(), frame, b"other aad", NOW)
    carol = identity("carol")
    with pytest.raises(ProtocolError, match="wrong-peer"):  # only the recipient can open
        open_from_prekey(carol, prekey(carol), alice.public_bundle(), frame, b"room|epoch", NOW)
    with pytest.raises(ProtocolError, match="unknown-prekey"):
        open_from_prekey(bob, generate_prekey(bob, NOW), alice.public_bundle(), frame, b"room|epoch", NOW)
    for i in range(len(frame)):
        bad = frame[:i] + bytes([frame[i] ^ 1]) + frame[i + 1 :]
        with pytest.raises(ProtocolError):
            open_from_prekey(bob, pk, alice.public_bundle(), bad, b"room|epoch", NOW)


def test_seal_to_forged_prekey_refused() -> None:
    alice, bob, mallory = identity("alice"), identity("bob"), identity("mallory")
    forged = prekey(mallory).signed  # signed by Mallory, presented as Bob's
    with pytest.raises(ProtocolError, match="bad-signature"):
        seal_to_prekey(alice, bob.public_bundle(), forged, b"x", b"", NOW)
