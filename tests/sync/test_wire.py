"""Data-channel frame codec: round trips, limits, strictness and a fuzzer."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core import wire
from peer.core.errors import ProtocolError
from peer.core.log import Tombstone
from peer.testing import sim_id

ROOM, A, B = sim_id("room"), sim_id("a"), sim_id("b")


def test_hello_round_trip() -> None:
    have = {A: [(0, 5), (7, 7)], B: [(2, 2)]}
    frame = wire.decode_frame(wire.encode_hello(ROOM, have))
    assert frame == wire.Hello(ROOM, have)
    assert wire.decode_frame(wire.encode_hello(ROOM, {})) == wire.Hello(ROOM, {})


def test_want_ack_round_trip() -> None:
    ranges = {A: [(0, 2**53 - 1)], B: [(1, 1), (3, 4)]}
    [want] = wire.encode_want(ranges)
    [ack] = wire.encode_ack(ranges)
    assert wire.decode_frame(want) == wire.Want(ranges)
    assert wire.decode_frame(ack) == wire.Ack(ranges)
    assert wire.encode_want({}) == []


def test_envelope_batches_split_to_fit_and_keep_order() -> None:
    items = [bytes([i % 256]) * 10_000 for i in range(20)]
    frames = wire.encode_envelopes(items)
    assert len(frames) == 4  # 6 x 10,006 bytes fit in 64 KiB
    assert all(len(f) <= wire.MAX_FRAME for f in frames)
    out: list[bytes] = []
    for f in frames:
        decoded = wire.decode_frame(f)
        assert isinstance(decoded, wire.Envelopes)
        out.extend(decoded.items)
    assert out == items
    many = [b"x"] * 70_000
    frames = wire.encode_envelopes(many)
    batches = [wire.decode_frame(f) for f in frames]
    assert sum(len(b.items) for b in batches if isinstance(b, wire.Envelopes)) == 70_000


def test_envelope_that_cannot_fit_is_a_local_error() -> None:
    with pytest.raises(ValueError):
        wire.encode_envelopes([b"x" * wire.MAX_FRAME])


def test_large_range_maps_split() -> None:
    ranges = {A: [(i * 3, i * 3 + 1) for i in range(10_000)]}
    frames = wire.encode_want(ranges)
    assert len(frames) > 1
    merged: list[tuple[int, int]] = []
    for f in frames:
        assert len(f) <= wire.MAX_FRAME
        d = wire.decode_frame(f)
        assert isinstance(d, wire.Want)
        merged += d.ranges[A]
    assert merged == ranges[A]


def test_hello_under_claims_when_too_big() -> None:
    have = {sim_id(f"s{i}"): [(j * 3, j * 3) for j in range(50)] for i in range(100)}
    data = wire.encode_hello(ROOM, have)
    assert len(data) <= wire.MAX_FRAME
    frame = wire.decode_frame(data)
    assert isinstance(frame, wire.Hello)
    for sender, rs in frame.have.items():
        assert set(rs) <= set(have[sender])


def test_tombstones_ping_pong_opaque() -> None:
    ts = (Tombstone(A, 1, 99, b""), Tombstone(B, 2, 100, b"proof"))
    [data] = wire.encode_tombstones(ts)
    assert wire.decode_frame(data) == wire.Tombstones(ts)
    assert wire.decode_frame(wire.encode_ping(7)) == wire.Ping(7)
    assert wire.decode_frame(wire.encode_pong(7)) == wire.Pong(7)
    for t in (wire.FrameType.HANDSHAKE, wire.FrameType.PAIRWISE, wire.FrameType.APP):
        assert wire.decode_frame(wire.encode_opaque(t, b"abc")) == wire.Opaque(t, b"abc")
    with pytest.raises(ValueError):
        wire.encode_opaque(wire.FrameType.PING, b"")


def _code(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        wire.decode_frame(data)
    return info.value.code


def test_rejects_malformed_frames() -> None:
    hello = wire.encode_hello(ROOM, {A: [(0, 1)]})
    rng = struct.pack(">QQ", 5, 6)
    assert _code(b"") == "bad-frame"
    assert _code(b"\xee") == "unknown-type"
    assert _code(b"\x00" * (wire.MAX_FRAME + 1)) == "too-large"
    assert _code(hello[:-1]) == "truncated"
    assert _code(hello + b"\0") == "trailing-bytes"
    assert _code(b"\x01\x02" + hello[2:]) == "bad-version"
    assert _code(bytes([wire.FrameType.ENVELOPES]) + b"\0\0") == "empty"
    assert _code(bytes([wire.FrameType.WANT]) + b"\0\0") == "empty"
    unsorted = bytes([wire.FrameType.WANT]) + b"\0\x01" + bytes.fromhex(A) + b"\0\x02" + rng + rng
    assert _code(unsorted) == "bad-ranges"
    backwards = (
        bytes([wire.FrameType.WANT]) + b"\0\x01" + bytes.fromhex(A) + b"\0\x01" + struct.pack(">QQ", 6, 5)
    )
    assert _code(backwards) == "bad-ranges"
    assert _code(bytes([wire.FrameType.PING]) + struct.pack(">Q", 2**53)) == "bad-integer"
    big_proof = (
        bytes([wire.FrameType.TOMBSTONES]) + b"\0\x01" + bytes.fromhex(A) + struct.pack(">QQH", 1, 1, 2000)
    )
    assert _code(big_proof + b"p" * 2000) == "too-large"


@settings(max_examples=1500, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        wire.decode_frame(data)


@settings(max_examples=500, derandomize=True)
@given(st.integers(0, 7), st.binary(max_size=200), st.integers(0, 255))
def test_fuzz_mutated_valid_frames(which: int, junk: bytes, flip: int) -> None:
    base = [
        wire.encode_hello(ROOM, {A: [(0, 3)], B: [(5, 9)]}),
        *wire.encode_envelopes([b"abc", b"defg"]),
        *wire.encode_want({A: [(1, 2)]}),
        *wire.encode_ack({B: [(0, 0)]}),
        wire.encode_ping(1),
        wire.encode_pong(2),
        *wire.encode_tombstones([Tombstone(A, 1, 2, b"x")]),
        wire.encode_opaque(wire.FrameType.APP, b"hi"),
    ][which]
    mutated = bytearray(base + junk)
    mutated[flip % len(mutated)] ^= 0xFF
    for candidate in (bytes(mutated), base[: flip % len(base)], base + junk):
        with contextlib.suppress(ProtocolError):
            wire.decode_frame(candidate)
