"""Two Python peers in two homes behind two NAT routers, the server on the "internet".

Each test: home A joins a fresh room, home B joins and sends at once; we time from B's join to A
receiving the message (time to first message: signaling, ICE, DTLS, the room handshake and sync), and
check that both sides report the path the NAT allows: ``direct`` through cone NATs (server-reflexive
candidates from the embedded STUN responder: hole punching), ``relayed`` through coturn when the NATs
are symmetric or UDP between the homes is dropped. Without TURN and with symmetric NATs, both sides must
say ``unreachable`` rather than pretend.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.net.conftest import PLAIN, WITH_TURN, Agent, Net

pytestmark = pytest.mark.timeout(120)

WAIT = 30.0


def first_message(net: Net, server: str = WITH_TURN) -> tuple[float, str, Agent, Agent]:
    a, b = net.agents["home-a"], net.agents["home-b"]
    invite = net.new_invite(server)
    room = a.join(invite)
    t0 = time.time()
    b.join(invite)
    text = f"hello across two NATs {t0}"
    b.send({"cmd": "send", "room": room, "text": text})
    got = a.next(lambda e: e["ev"] == "message" and e["text"] == text, WAIT)
    return got["t"] - t0, room, a, b


def reachable_link(agent: Agent, room: str, peer: str) -> dict[str, Any]:
    return agent.next(
        lambda e: (
            e["ev"] == "link"
            and e["room"] == room
            and e["peer"] == peer
            and e["state"] in ("direct", "relayed")
        ),
        WAIT,
    )


@pytest.mark.parametrize(
    ("mode", "udp_blocked", "expected"),
    [("cone", False, "direct"), ("symmetric", False, "relayed"), ("cone", True, "relayed")],
    ids=["cone-direct", "symmetric-relayed", "udp-blocked-relayed"],
)
def test_python_python_across_two_nats(net: Net, mode: str, udp_blocked: bool, expected: str) -> None:
    net.nat(mode, udp_blocked=udp_blocked)
    elapsed, room, a, b = first_message(net)
    link_a = reachable_link(a, room, b.peer_id)
    link_b = reachable_link(b, room, a.peer_id)
    assert link_a["state"] == link_b["state"] == expected, (link_a["path"], link_b["path"])
    if expected == "direct":
        assert "relay" not in link_a["path"]
        assert "srflx" in link_a["path"] or "prflx" in link_a["path"], link_a  # punched through the NAT
    else:
        assert "relay" in link_a["path"]
    net.figures[f"python-python {expected} ({mode}{', udp blocked' if udp_blocked else ''})"] = elapsed


def test_plain_server_alone_connects_cone_nats_directly(net: Net) -> None:
    """``ephemesh serve`` with nothing else (embedded STUN, no TURN) is enough for two cone NATs."""
    net.nat("cone")
    elapsed, room, a, b = first_message(net, PLAIN)
    assert reachable_link(a, room, b.peer_id)["state"] == "direct"
    net.figures["python-python direct (cone, plain serve: STUN only)"] = elapsed


def test_symmetric_nats_without_turn_say_unreachable(net: Net) -> None:
    net.nat("symmetric")
    a, b = net.agents["home-a"], net.agents["home-b"]
    invite = net.new_invite(PLAIN)
    room = a.join(invite)
    b.join(invite)
    for me, other in ((a, b), (b, a)):

        def unreachable(e: dict[str, Any], o: Agent = other) -> bool:
            return bool(e["ev"] == "link" and e["room"] == room and e["peer"] == o.peer_id) and bool(
                e["state"] == "unreachable"
            )

        ev = me.next(unreachable, 45)
        assert ev["reason"] in ("no-route", "timed-out"), ev
    a.send({"cmd": "links", "room": room})
    links = a.next(lambda e: e["ev"] == "links" and e["room"] == room, 10)["links"]
    assert links[b.peer_id]["state"] in ("unreachable", "connecting")
