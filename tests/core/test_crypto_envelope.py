"""Sender chains and envelopes: tampering, replay, forgery, forward secrecy, removal."""

from __future__ import annotations

import pytest

from peer.core import wire
from peer.core.chains import MAX_SKIP, ChainPolicy, ReceiverChain, SenderChain, SenderKeyMessage
from peer.core.content import Content, Text, decode_content, encode_content
from peer.core.crypto import DeterministicRng
from peer.core.envelope import (
    MAX_ENVELOPE,
    Kind,
    decode_tombstone,
    encode_tombstone,
    open_envelope,
    parse_envelope,
    seal_envelope,
    seal_unchained_envelope,
    verify_envelope,
)
from peer.core.errors import ProtocolError
from peer.core.identity import Identity

from .helpers import NOW, identity, invite


def _body(content: Content) -> str:
    assert isinstance(content, Text)
    return content.body


ROOM = invite().room_id


def _send(alice: Identity, chain: SenderChain, seq: int, text: str) -> tuple[bytes, SenderChain]:
    return seal_envelope(
        alice, ROOM, chain, Kind.CHAT, seq, seq, NOW, NOW + 60_000, encode_content(Text(text))
    )


def _receiver(alice: Identity, chain: SenderChain) -> ReceiverChain:
    skm = SenderKeyMessage.decode(SenderKeyMessage.create(alice, ROOM, chain).encode())
    return ReceiverChain.from_sender_key_message(skm, alice.public_key)


def test_roundtrip_out_of_order_and_replay() -> None:
    alice = identity("alice")
    chain = SenderChain.new(rng=DeterministicRng(b"c"))
    rx = _receiver(alice, chain)
    wires = []
    for i in range(5):
        wire, chain = _send(alice, chain, i, f"m{i}")
        wires.append(wire)
    for i in (3, 0, 4, 1, 2):
        env = parse_envelope(wires[i])
        pt, rx = open_envelope(env, rx)
        assert _body(decode_content(pt)) == f"m{i}"
        with pytest.raises(ProtocolError, match="replay"):
            open_envelope(env, rx)
    assert ReceiverChain.from_bytes(rx.to_bytes()) == rx
    assert SenderChain.from_bytes(chain.to_bytes()) == chain


def test_tampering_any_byte_rejected() -> None:
    alice = identity("alice")
    chain = SenderChain.new(rng=DeterministicRng(b"c"))
    rx = _receiver(alice, chain)
    wire, _ = _send(alice, chain, 0, "hello")
    for i in range(len(wire)):
        for flip in (0x01, 0x80):
            bad = wire[:i] + bytes([wire[i] ^ flip]) + wire[i + 1 :]
            with pytest.raises(ProtocolError):
                open_envelope(parse_envelope(bad), rx)
    assert _body(decode_content(open_envelope(parse_envelope(wire), rx)[0])) == "hello"


def test_member_cannot_forge_another_members_message() -> None:
    alice, mallory = identity("alice"), identity("mallory")
    chain = SenderChain.new(rng=DeterministicRng(b"c"))
    rx_alice = _receiver(alice, chain)
    # Mallory holds Alice's chain key (she is a member) and seals "as Alice" with it, signing with her key.
    forged, _ = seal_envelope(mallory, ROOM, chain, Kind.CHAT, 0, 0, NOW, NOW + 1, encode_content(Text("x")))
    env = parse_envelope(forged)
    assert env.sender == mallory.peer_id
    with pytest.raises(ProtocolError, match="unknown-chain"):
        open_envelope(env, rx_alice)
    # Swap the sender field to Alice: the signature no longer verifies under Alice's key.
    swapped = forged[:18] + bytes.fromhex(alice.peer_id) + forged[34:]
    with pytest.raises(ProtocolError, match="bad-signature"):
        open_envelope(parse_envelope(swapped), rx_alice)
    with pytest.raises(ProtocolError, match="wrong-sender"):
        verify_envelope(parse_envelope(forged), alice.public_key)
    # A sender-key message re-signed by Mallory is not accepted as Alice's.
    skm = SenderKeyMessage.create(mallory, ROOM, chain)
    with pytest.raises(ProtocolError, match="wrong-sender"):
        skm.verify(alice.public_key)


def test_chain_state_compromise_does_not_reveal_earlier_keys() -> None:
    alice = identity("alice")
    start = SenderChain.new(rng=DeterministicRng(b"c"))
    rx0 = _receiver(alice, start)
    chain, wires = start, []
    for i in range(3):
        wire, chain = _send(alice, chain, i, f"m{i}")
        wires.append(wire)
    # The attacker steals the current sender state (and a receiver state that has consumed the keys).
    stolen_rx = _receiver(alice, chain)
    for wire in wires:
        with pytest.raises(ProtocolError, match="replay"):
            open_envelope(parse_envelope(wire), stolen_rx)
    consumed = rx0
    for wire in wires:
        _, consumed = open_envelope(parse_envelope(wire), consumed)
    assert consumed.skipped == ()
    for wire in wires:
        with pytest.raises(ProtocolError, match="replay"):
            open_envelope(parse_envelope(wire), consumed)


def test_removed_member_cannot_read_after_rotation() -> None:
    alice, bob, eve = identity("alice"), identity("bob"), identity("eve")
    old = SenderChain.new(epoch=0, created_at=NOW, rng=DeterministicRng(b"old"))
    rx_eve = _receiver(alice, old)
    policy = ChainPolicy()
    assert not policy.must_rotate(old, now=NOW, epoch=0)
    assert policy.must_rotate(old, now=NOW, epoch=1)  # eve removed -> epoch 1 -> rotate
    new = SenderChain.new(epoch=1, created_at=NOW, rng=DeterministicRng(b"new"))
    rx_bob = _receiver(alice, new)  # distributed to bob only
    wire, _ = _send(alice, new, 10, "after removal")
    assert _body(decode_content(open_envelope(parse_envelope(wire), rx_bob)[0])) == "after removal"
    with pytest.raises(ProtocolError, match="unknown-chain"):
        open_envelope(parse_envelope(wire), rx_eve)
    # even pretending the chain id matches, eve's key material is unrelated
    fake = ReceiverChain(rx_eve.sender_key, new.chain_id, rx_eve.index, rx_eve.chain_key)
    with pytest.raises(ProtocolError, match="bad-aead"):
        open_envelope(parse_envelope(wire), fake)
    assert bob.peer_id != eve.peer_id


def test_chain_policy_and_skip_limit() -> None:
    policy = ChainPolicy(max_messages=2, max_age_ms=1000)
    chain = SenderChain.new(created_at=NOW, rng=DeterministicRng(b"c"))
    assert not policy.must_rotate(chain, now=NOW, epoch=0)
    assert policy.must_rotate(chain, now=NOW + 1000, epoch=0)
    chain, _ = chain.advance()
    chain, _ = chain.advance()
    assert policy.must_rotate(chain, now=NOW, epoch=0)
    rx = _receiver(identity("alice"), SenderChain.new(rng=DeterministicRng(b"d")))
    with pytest.raises(ProtocolError, match="too-far-ahead"):
        rx.message_key(MAX_SKIP + 1)
    rx, _ = rx.message_key(MAX_SKIP)
    assert len(rx.skipped) == MAX_SKIP


def test_unchained_kinds_and_tombstone() -> None:
    alice = identity("alice")
    wire = seal_unchained_envelope(
        alice, ROOM, Kind.TOMBSTONE, 7, 9, NOW, NOW + 5, encode_tombstone([3, 1, 3])
    )
    env = parse_envelope(wire)
    verify_envelope(env, alice.public_key)
    assert decode_tombstone(env.payload) == [1, 3]
    with pytest.raises(ProtocolError, match="bad-kind"):
        open_envelope(env, _receiver(alice, SenderChain.new()))


def test_parse_limits() -> None:
    alice = identity("alice")
    with pytest.raises(ProtocolError, match="too-large"):
        parse_envelope(bytes(64 * 1024 + 1))
    with pytest.raises(ProtocolError, match="too-large"):
        seal_unchained_envelope(alice, ROOM, Kind.MEMBERSHIP, 0, 0, NOW, NOW, bytes(64 * 1024))
    with pytest.raises(ProtocolError):
        seal_unchained_envelope(alice, ROOM, Kind.MEMBERSHIP, 0, 0, NOW, NOW - 1, b"")


def test_largest_envelope_fits_one_envelopes_frame() -> None:
    """MAX_ENVELOPE is what one ENVELOPES frame can carry; one byte more is refused when sealing and parsing."""
    alice = identity("alice")
    assert MAX_ENVELOPE == wire.MAX_FRAME - 1 - 2 - 4
    overhead = 90 + 4 + 64
    largest = seal_unchained_envelope(
        alice, ROOM, Kind.MEMBERSHIP, 1, 1, NOW, NOW, bytes(MAX_ENVELOPE - overhead)
    )
    assert len(largest) == MAX_ENVELOPE
    assert parse_envelope(largest).seq == 1
    (frame,) = wire.encode_envelopes([largest])
    assert len(frame) == wire.MAX_FRAME
    with pytest.raises(ProtocolError, match="too-large"):
        seal_unchained_envelope(
            alice, ROOM, Kind.MEMBERSHIP, 1, 1, NOW, NOW, bytes(MAX_ENVELOPE - overhead + 1)
        )
    with pytest.raises(ProtocolError, match="too-large"):
        parse_envelope(largest + b"\x00")
