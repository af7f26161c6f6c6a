"""Frame parser: every input either parses or raises FrameError; never anything else."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.core.errors import ProtocolError
from signaling import protocol

MAX = 4096


def code_of(data: str | bytes) -> str:
    with pytest.raises(protocol.FrameError) as info:
        protocol.parse_frame(data, MAX, 1000)
    return info.value.code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{", "bad-json"),
        ("[1]", "bad-json"),
        ('{"type": NaN}', "bad-json"),
        ("[" * 5000 + "]" * 5000, "too-large"),
        ("[" * 2000 + "]" * 2000, "bad-json"),
        ('{"type": 1}', "bad-frame"),
        ('{"type": "nope"}', "unknown-type"),
        ('{"type": "join"}', "bad-frame"),
        ('{"type": "join", "room": "ABCDEF00ABCDEF00ABCDEF00ABCDEF00"}', "bad-room"),
        ('{"type": "join", "room": 7}', "bad-frame"),
        ('{"type": "signal", "room": "' + "a" * 32 + '", "to": "x", "payload": ""}', "bad-frame"),
        (
            '{"type": "signal", "room": "' + "a" * 32 + '", "to": "' + "b" * 32 + '", "payload": 1}',
            "bad-frame",
        ),
        ('{"type": "auth", "pubkey": "a=", "sig": ""}', "bad-frame"),
        (b"\x00binary", "bad-frame"),
        ("x" * (MAX + 1), "too-large"),
    ],
)
def test_refusals(data: str | bytes, code: str) -> None:
    assert code_of(data) == code


def test_deep_nesting_within_size_is_bad_json() -> None:
    with pytest.raises(protocol.FrameError) as info:
        protocol.parse_frame("[" * 100_000 + "]" * 100_000, 1 << 20, 1000)
    assert info.value.code == "bad-json"


def test_payload_limit() -> None:
    frame = {"type": "signal", "room": "a" * 32, "to": "b" * 32, "payload": "p" * 1001}
    assert code_of(json.dumps(frame)) == "too-large"


def test_b64u_is_strict() -> None:
    assert protocol.b64u_decode(protocol.b64u_encode(b"\xff\xfe")) == b"\xff\xfe"
    for bad in ("//8", "__8=", "_-9", "a"):
        with pytest.raises(ProtocolError):
            protocol.b64u_decode(bad)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=100)))
def test_parser_fails_closed_on_arbitrary_input(data: str | bytes) -> None:
    with contextlib.suppress(protocol.FrameError):
        protocol.parse_frame(data, MAX, 1000)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.sampled_from(["auth", "join", "leave", "signal", "ping", "x"]),
    st.dictionaries(st.sampled_from(["room", "to", "payload", "pubkey", "sig"]), _json),
)
def test_parser_fails_closed_on_typed_objects(kind: str, fields: dict[str, object]) -> None:
    with contextlib.suppress(protocol.FrameError):
        protocol.parse_frame(json.dumps({"type": kind, **fields}), MAX, 1000)
