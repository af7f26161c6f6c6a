"""Server killed: A and C rebuild their link through B's relayed signaling and chat directly.

Four hosts on one bridge of the session's ``lans`` (``tests/net/lan_topology.py``): the signaling server
S (h5, ``ephemesh serve``) and three Python peers A, B, C (h1-h3, ``tests/net/relay_agent.py``), each a
real process.

1. A, B and C join one room through S and link pairwise (full mesh).
2. S is killed (SIGKILL). Every peer notices; S's list of who is present is gone.
3. A's link to C drops (as a heartbeat timeout would drop it) and A and C forget that S ever listed the
   other: members A-B and B-C linked, no A-C link, no server. Only B's reach gossip tells A and C that
   the other is up, and only B can carry their offer/answer.
4. A and C link again, through signaling relayed by B: both opened payloads that arrived through the
   mesh; the ICE pair A's data uses is A's address <-> C's address (not B's); B is killed and A-C chat
   goes on.

Figures (printed, and written to ``test-artifacts/relay-figures.json``): seconds from the kill of S to
the A-C link being up again (including the peers noticing S is gone), and from the drop to the link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.net.conftest import BIN, REPO, Agent, Procs
from tests.net.lan_topology import Lans

pytestmark = pytest.mark.timeout(180)

WAIT = 30.0
#: role -> host of the session's ``lans``: the signaling server S and the peers A, B, C (one bridge)
HOSTS = {"s": "h5", "a": "h1", "b": "h2", "c": "h3"}


def _ip(lans: Lans, role: str) -> str:
    return lans.hosts[HOSTS[role]]


def _agent(lans: Lans, procs: Procs, role: str) -> Agent:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    popen = lans.popen(
        HOSTS[role],
        [sys.executable, "-m", "tests.net.relay_agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(procs.tmp / f"{role}.err").open("w"),
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        agent = Agent(popen, role)  # waits for its "ready"
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    procs.add(agent)
    return agent


def _linked(agent: Agent, room: str, peer: str, after: float = 0.0) -> dict[str, Any]:
    return agent.next(
        lambda e: (
            e["ev"] == "link"
            and e["room"] == room
            and e["peer"] == peer
            and e["state"] == "direct"
            and e["t"] > after
        ),
        WAIT,
    )


def _ask(agent: Agent, cmd: dict[str, Any], ev: str) -> dict[str, Any]:
    agent.send(cmd)
    return agent.next(lambda e: e["ev"] == ev, WAIT)


def test_server_killed_a_and_c_link_through_b_and_chat_directly(lans: Lans, procs: Procs) -> None:
    server = procs.start(
        HOSTS["s"],
        "serve",
        [str(BIN / "ephemesh"), "serve", "--host", "0.0.0.0", "--port", "8080", "--no-invite"],  # noqa: S104
        merge_stderr=True,
    )
    server.expect(lambda s: "web client on" in s, 30)
    a, b, c = (_agent(lans, procs, role) for role in "abc")
    from peer.core.invite import Invite

    invite = Invite.new(f"http://{_ip(lans, 's')}:8080").url()
    room = a.join(invite)
    b.join(invite)
    c.join(invite)
    for x, y in ((a, b), (a, c), (b, a), (b, c), (c, a), (c, b)):
        _linked(x, room, y.peer_id)

    t_kill = time.time()
    server.popen.kill()
    server.popen.wait()
    for x in (a, b, c):
        _ask(x, {"cmd": "wait-server-gone", "room": room}, "server-gone")
    for x, y in ((a, c), (c, a)):
        _ask(x, {"cmd": "forget", "room": room, "peer": y.peer_id}, "forgot")
    before = {x.name: _ask(x, {"cmd": "state", "room": room}, "state") for x in (a, c)}
    t_drop = time.time()
    _ask(a, {"cmd": "drop", "room": room, "peer": c.peer_id}, "dropped")
    up_a = _linked(a, room, c.peer_id, after=t_drop)
    _linked(c, room, a.peer_id, after=t_drop)
    after = {x.name: _ask(x, {"cmd": "state", "room": room}, "state") for x in (a, c)}
    for name in ("a", "c"):
        assert after[name]["server_present"] == []
        assert after[name]["relayed_in"] > before[name]["relayed_in"], after  # payloads came through B
    assert after["a"]["relayed_out"] + after["c"]["relayed_out"] > 0

    pair = _ask(a, {"cmd": "pair", "room": room, "peer": c.peer_id}, "pair")
    assert pair["local"][0] == _ip(lans, "a"), pair
    assert pair["remote"][0] == _ip(lans, "c"), pair  # A's data goes to C's address, not B's

    text = "A to C, direct, with B gone"
    b.popen.kill()  # B is gone: the A-C link must not need it
    b.popen.wait()
    _ask(a, {"cmd": "send", "room": room, "text": text}, "sent")
    got = c.next(lambda e: e["ev"] == "message" and e["text"] == text, WAIT)
    assert got["sender"] == a.peer_id

    figures = {
        "server kill -> A-C link up through B (s)": round(up_a["t"] - t_kill, 3),
        "A-C link dropped -> up again through B (s)": round(up_a["t"] - t_drop, 3),
    }
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "relay-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print()
    for key, value in figures.items():
        print(f"  {key:48s} {value:6.2f}")
