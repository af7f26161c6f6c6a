"""Invites with several bootstraps (``.s``) or none (``ephemesh:``), and LAN instance names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.crypto import DeterministicRng
from peer.core.errors import ProtocolError
from peer.core.invite import MAX_EXTRA_SERVERS, Invite
from peer.core.lan import EPOCH_MS, LanMatcher, instance_name

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


def test_vector_good_invites_keep_the_room() -> None:
    v = _load("invite_servers")
    for case in v["good"]:
        inv = Invite.parse(case["url"])
        assert list(inv.servers) == case["servers"]
        assert inv.server == case["server"]
        assert inv.room_id == case["room_id"] == v["room_id"]
        assert inv.secret.hex() == v["secret"]
        assert inv.owner == v["owner"]
        assert inv.url() == case["url"]


@pytest.mark.parametrize("url", _load("invite_servers")["bad"])
def test_vector_bad_invites_are_refused(url: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        Invite.parse(url)
    assert exc.value.code == "bad-invite"


def test_old_invites_parse_as_before() -> None:
    v = _load("invite")
    inv = Invite.parse(v["url"])
    assert inv.servers == (v["server"],)
    assert inv.extra_servers == ()
    assert inv.url() == v["url"]
    assert inv.room_id == v["room_id"]


def test_with_servers_dedupes_and_bounds() -> None:
    inv = Invite.new("https://a.example", rng=DeterministicRng(b"x"))
    assert inv.with_servers(["https://b.example/", "https://b.example", "https://a.example"]).servers == (
        "https://b.example",
        "https://a.example",
    )
    many = [f"https://s{i}.example" for i in range(MAX_EXTRA_SERVERS + 1)]
    assert len(inv.with_servers(many).servers) == MAX_EXTRA_SERVERS + 1
    with pytest.raises(ProtocolError):
        inv.with_servers([*many, "https://one-too-many.example"])
    with pytest.raises(ProtocolError):
        inv.with_servers(["javascript:alert(1)"])


def test_lan_vector_and_matcher() -> None:
    v = _load("invite_servers")
    inv = Invite.parse(v["good"][0]["url"])
    lan = v["lan"]
    name = instance_name(inv, lan["now_ms"], bytes.fromhex(lan["nonce"]))
    assert name == lan["instance"]
    m = LanMatcher(inv)
    now = lan["now_ms"]
    assert m.matches(name, now)
    assert m.matches(name, now + EPOCH_MS)
    assert m.matches(name, now - EPOCH_MS)
    assert not m.matches(name, now + 2 * EPOCH_MS)
    other = Invite.new("https://chat.example", rng=DeterministicRng(b"other"))
    assert not LanMatcher(other).matches(name, now)
    for junk in (None, 3, "", name.upper(), name[:-1], name + "0", "z" * 32):
        assert not m.matches(junk, now)
    # one room, two announcers: unrelated names (nothing links them for a stranger)
    assert instance_name(inv, now, bytes(8))[16:] != instance_name(inv, now, b"\x01" * 8)[16:]
