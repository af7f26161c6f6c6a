"""Server killed: A and C rebuild their link through B's relayed signaling and chat directly.

Five network namespaces of this run (``em<tag>-<role>``): a switch (a Linux bridge) and four hosts on it,
the signaling server S (10.77.0.10, ``ephemesh serve``) and three Python peers A, B, C (10.77.0.2-4,
``tests/net/relay_agent.py``), each a real process.

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
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net.conftest import BIN, REPO, Agent, Proc
from tests.net.topology import _die_with_parent, _run, missing_tools, new_tag

pytestmark = pytest.mark.timeout(180)

WAIT = 30.0
SUBNET = "10.77.0"
HOSTS = {"s": 10, "a": 2, "b": 3, "c": 4}


class Lan:
    """A bridge in ``em<tag>-sw`` and one namespace per host, each with ``eth0`` on the bridge."""

    def __init__(self) -> None:
        self.tag = new_tag()
        self.created: list[str] = []

    def ns(self, role: str) -> str:
        return f"em{self.tag}-{role}"

    def ip(self, role: str) -> str:
        return f"{SUBNET}.{HOSTS[role]}"

    def build(self) -> None:
        for role in ("sw", *HOSTS):
            _run(["ip", "netns", "add", self.ns(role)])
            self.created.append(self.ns(role))
            _run(["ip", "-n", self.ns(role), "link", "set", "lo", "up"])
        sw = self.ns("sw")
        _run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", sw, "link", "set", "br0", "up"])
        for role in HOSTS:
            port = f"p{role}"
            _run(
                [
                    "ip",
                    "-n",
                    sw,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    self.ns(role),
                ]
            )
            _run(["ip", "-n", sw, "link", "set", port, "master", "br0"])
            _run(["ip", "-n", sw, "link", "set", port, "up"])
            _run(["ip", "-n", self.ns(role), "addr", "add", f"{self.ip(role)}/24", "dev", "eth0"])
            _run(["ip", "-n", self.ns(role), "link", "set", "eth0", "up"])

    def popen(self, role: str, args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *args], preexec_fn=_die_with_parent, **kwargs
        )

    def close(self) -> None:
        while self.created:
            subprocess.run(["ip", "netns", "del", self.created.pop()], capture_output=True, check=False)


@pytest.fixture
def lan() -> Iterator[Lan]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if missing_tools():
        pytest.skip(f"missing {', '.join(missing_tools())}")
    topo = Lan()
    try:
        topo.build()
        yield topo
    finally:
        topo.close()


def _agent(lan: Lan, role: str) -> Agent:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    popen = lan.popen(
        role,
        [sys.executable, "-m", "tests.net.relay_agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=env,
    )
    return Agent(popen, role)


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


def test_server_killed_a_and_c_link_through_b_and_chat_directly(lan: Lan) -> None:
    procs: list[Proc] = []
    try:
        server = Proc(
            lan.popen(
                "s",
                [str(BIN / "ephemesh"), "serve", "--host", "0.0.0.0", "--port", "8080", "--no-invite"],  # noqa: S104
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=REPO,
            ),
            "serve",
        )
        procs.append(server)
        server.expect(lambda s: "web client on" in s, 30)
        a, b, c = (_agent(lan, role) for role in "abc")
        procs += [a, b, c]
        from peer.core.invite import Invite

        invite = Invite.new(f"http://{lan.ip('s')}:8080").url()
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
        assert pair["local"][0] == lan.ip("a"), pair
        assert pair["remote"][0] == lan.ip("c"), pair  # A's data goes to C's address, not B's

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
    finally:
        for proc in reversed(procs):
            proc.stop()
