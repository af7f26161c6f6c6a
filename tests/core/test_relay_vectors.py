"""The RELAY / REACH codec vectors (tests/vectors/relay.json) hold for the Python core, both ways; the
browser suite checks the same file against the JS core (``web/js/test/codec-vectors.js``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.crypto import ed25519_verify
from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.room import relay as rl

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return doc


V = _load("relay")


def _alice() -> Identity:
    return Identity.from_bytes(bytes.fromhex(_load("identity")["alice"]["identity_bytes"]))


@pytest.mark.parametrize("case", V["relay"], ids=lambda c: c["name"])
def test_relay_frame_both_ways(case: dict[str, Any]) -> None:
    body = rl.encode_relay(case["hops"], case["from"], case["to"], case["payload"])
    assert body.hex() == case["body"]
    frame = rl.decode_relay(bytes.fromhex(case["body"]))
    assert (frame.hops, frame.sender, frame.to, frame.payload, frame.id.hex()) == (
        case["hops"],
        case["from"],
        case["to"],
        case["payload"],
        case["id"],
    )


@pytest.mark.parametrize("case", V["relay_bad"], ids=lambda c: c["name"])
def test_bad_relay_frames_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        rl.decode_relay(bytes.fromhex(case["body"]))
    assert err.value.code == case["code"]


@pytest.mark.parametrize("case", V["reach"], ids=lambda c: c["name"])
def test_reach_both_ways_and_signed_by_the_announcer(case: dict[str, Any]) -> None:
    alice = _alice()
    hints = [(k, u) for k, u in case["hints"]]
    body = rl.encode_reach(alice, V["room_id"], case["ts"], case["ttl_s"], case["links"], hints)
    assert body.hex() == case["body"]
    reach = rl.decode_reach(body)
    assert (reach.announcer, reach.ts, reach.ttl_s, list(reach.links), [list(h) for h in reach.hints]) == (
        V["announcer"],
        case["ts"],
        case["ttl_s"],
        case["links"],
        case["hints"],
    )
    assert rl.reach_signed(V["room_id"], body).hex() == case["signed"]
    ed25519_verify(alice.public_key, bytes.fromhex(case["signed"]), reach.sig)


@pytest.mark.parametrize("case", V["reach_bad"], ids=lambda c: c["name"])
def test_bad_reach_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        rl.decode_reach(bytes.fromhex(case["body"]))
    assert err.value.code == case["code"]


def test_servers_state_value() -> None:
    st = V["servers_state"]
    relay = rl.Relay(_alice(), V["room_id"])
    relay.load({st["name"]: bytes.fromhex(st["value"])})
    assert relay.reach_hints() == st["urls"]
