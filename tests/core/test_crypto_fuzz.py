"""Every parser of remote input raises only ProtocolError."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.chains import SenderKeyMessage
from peer.core.content import decode_content
from peer.core.envelope import decode_tombstone, parse_envelope
from peer.core.errors import ProtocolError
from peer.core.identity import PublicBundle
from peer.core.invite import Invite
from peer.core.membership import MembershipOp
from peer.core.signal import ReplayCache, open_signal, seal_signal

from .helpers import NOW, identity, invite

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_binary_parsers(data: bytes) -> None:
    for parse in (
        parse_envelope,
        SenderKeyMessage.decode,
        MembershipOp.decode,
        decode_content,
        decode_tombstone,
    ):
        with contextlib.suppress(ProtocolError):
            parse(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=90, max_size=300))
def test_parse_envelope_with_valid_prefix(tail: bytes) -> None:
    data = b"\x01\x01" + tail
    with contextlib.suppress(ProtocolError):
        parse_envelope(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_text_parsers(text: str) -> None:
    inv, bob = invite(), identity("bob")
    for url in (text, "https://x/#v1." + text, "https://x/#" + text):
        with contextlib.suppress(ProtocolError):
            Invite.parse(url)
    for payload in (text, "v1." + text):
        with contextlib.suppress(ProtocolError):
            open_signal(inv, bob.peer_id, identity("alice").peer_id, payload, NOW, ReplayCache())


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_bundle_from_dict(value: object) -> None:
    for candidate in (value, {"v": 1, "ed25519": value, "x25519": value, "cert": value}):
        with contextlib.suppress(ProtocolError):
            PublicBundle.from_dict(candidate)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=3000), st.binary(min_size=1, max_size=1))
def test_open_signal_bitflips(pos: int, xor: bytes) -> None:
    alice, bob, inv = identity("alice"), identity("bob"), invite()
    payload = seal_signal(alice, inv, bob.peer_id, "offer", {"sdp": "v=0"}, NOW)
    i = pos % len(payload)
    mutated = payload[:i] + chr((ord(payload[i]) ^ xor[0]) % 0x110000 or 1) + payload[i + 1 :]
    with contextlib.suppress(ProtocolError):
        open_signal(inv, bob.peer_id, alice.peer_id, mutated, NOW, ReplayCache())
