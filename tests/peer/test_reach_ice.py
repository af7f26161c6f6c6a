"""While the signaling server is down, its embedded STUN responder is left out of ICE (peer/net/reach.py)."""

from __future__ import annotations

from typing import Any

from peer.net.reach import without_server_stun


def test_server_stun_dropped_turn_and_other_stun_kept() -> None:
    ice: Any = [
        {"urls": ["stun:10.77.0.10:8080", "stun:stun.other.example:3478"]},
        {"urls": "stun:10.77.0.10:8080"},
        {"urls": ["turn:10.77.0.10:3478?transport=udp"], "username": "u", "credential": "c"},
        "junk",
    ]
    assert without_server_stun(ice, "http://10.77.0.10:8080") == [
        {"urls": ["stun:stun.other.example:3478"]},
        {"urls": ["turn:10.77.0.10:3478?transport=udp"], "username": "u", "credential": "c"},
    ]


def test_ipv6_and_legacy_shapes() -> None:
    assert without_server_stun({"urls": "stun:[fd00::1]:3478"}, "https://[fd00::1]:8443") == []
    assert without_server_stun(None, "http://x") == []
    assert without_server_stun([{"urls": ["stuns:chat.example"]}], "https://CHAT.example") == []
