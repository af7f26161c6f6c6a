"""Several bootstraps per room, with the signaling server killed: real ``ephemesh`` processes on hosts
(the session's ``lans``: network namespaces on one bridge, ``tests/net/lan_topology.py``), no LAN discovery.

h5 runs the invite's first server, h4 its second; h1 a keeper with ``keep --serve`` whose endpoint is
added to the invite (``room invite --server``); alice (h2), bob (h3) listen; carol (h4) arrives late.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from peer.core.invite import Invite
from tests.net.conftest import BIN, Proc, Procs
from tests.net.lan_topology import Lans
from tests.net.test_lan import event

pytestmark = pytest.mark.timeout(240)


def _has(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def cli(*args: str, home: Path) -> str:
    out = subprocess.run(
        [str(BIN / "ephemesh"), "--home", str(home), *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_server_killed_members_rejoin_through_other_bootstraps(
    lans: Lans, procs: Procs, tmp_path: Path
) -> None:
    s1_url, s2_url = f"http://{lans.hosts['h5']}:8080", f"http://{lans.hosts['h4']}:8080"
    servers: dict[str, Proc] = {}
    for host, url in (("h5", s1_url), ("h4", s2_url)):
        servers[host] = procs.start(
            host,
            f"serve-{host}",
            [str(BIN / "ephemesh"), "serve", "--host", lans.hosts[host], "--port", "8080", "--no-invite"],
            merge_stderr=True,
        )
        servers[host].expect(_has(url), 30)
    invite0 = cli("room", "new", "--server", s1_url, "--server", s2_url, home=tmp_path / "home-owner")
    assert Invite.parse(invite0).servers == (s1_url, s2_url)

    keeper = procs.ephemesh(
        "h1", "keeper", "keep", invite0, "--serve", f"{lans.hosts['h1']}:8090", merge_stderr=True
    )
    line = keeper.expect(lambda s: s.startswith("serve endpoint: "), 30)
    keeper_url = line.split()[-1]
    assert keeper_url == f"http://{lans.hosts['h1']}:8090"
    invite = cli("room", "invite", invite0, "--server", keeper_url, home=tmp_path / "home-owner")
    assert Invite.parse(invite).room_id == Invite.parse(invite0).room_id
    assert Invite.parse(invite).servers == (s1_url, s2_url, keeper_url)

    alice = procs.ephemesh("h2", "alice", "listen", invite, "--json")
    bob = procs.ephemesh("h3", "bob", "listen", invite, "--json")
    ids = {p.name: event(p, lambda e: e["event"] == "ready")["peer"] for p in (alice, bob)}
    event(alice, lambda e: e["event"] == "online" and e["peer"] == ids["bob"])
    send = procs.ephemesh("h3", "bob-send1", "send", invite, "before the outage", home="bob")
    send.popen.wait(timeout=60)
    event(alice, lambda e: e["event"] == "message" and e["text"] == "before the outage")

    figures: dict[str, float] = {}
    for killed, label in (("h5", "second bootstrap in the invite"), ("h4", "keeper's --serve endpoint")):
        servers[killed].stop()  # the invite's first (then also its second) server is gone
        alice.stop()
        t0 = time.monotonic()
        alice = procs.ephemesh("h2", f"alice-after-{killed}", "listen", invite, "--json", home="alice")
        event(alice, lambda e: e["event"] == "online" and e["peer"] == ids["bob"])
        figures[label] = time.monotonic() - t0
        event(alice, lambda e: e["event"] == "message" and e["text"] == "before the outage")  # history
        text = f"bob after {killed} died"
        send = procs.ephemesh("h3", f"bob-send-{killed}", "send", invite, text, home="bob")
        assert send.popen.wait(timeout=60) == 0
        event(alice, lambda e, text=text: e["event"] == "message" and e["text"] == text)

    # a brand-new member, both servers of the invite dead: joins through the keeper's endpoint
    t0 = time.monotonic()
    carol = procs.ephemesh("h4", "carol", "send", invite, "carol was here", "--timeout", "30")
    assert carol.popen.wait(timeout=60) == 0
    figures["new member, delivered via the keeper's endpoint"] = time.monotonic() - t0
    got = {
        p.name: event(p, lambda e: e["event"] == "message" and e["text"] == "carol was here")["id"]
        for p in (alice, bob)
    }
    assert len(set(got.values())) == 1
    # alice's history after the last restart: replayed from her store, printed again now
    alice.stop()
    alice = procs.ephemesh("h2", "alice-final", "listen", invite, "--json", home="alice")
    event(alice, lambda e: e["event"] == "online" and e["peer"] == ids["bob"])

    # everyone converged on one history: the same four messages (ids) at alice (restarted twice) and bob
    texts = ["before the outage", "bob after h5 died", "bob after h4 died", "carol was here"]
    alice_ids = [
        event(alice, lambda e, t=t: e["event"] == "message" and e["text"] == t, 0.1)["id"] for t in texts[:3]
    ]
    bob_ids = [event(bob, lambda e, t=t: e["event"] == "message" and e["text"] == t)["id"] for t in texts[:3]]
    alice_ids.append(event(alice, lambda e: e["event"] == "message" and e["text"] == texts[3], 0.1)["id"])
    assert alice_ids == [*bob_ids, got["bob"]]
    print("\nserver down, time to rejoin (restart -> linked), s:")
    for key, value in figures.items():
        print(f"  {key:50s} {value:5.2f}")
    print(json.dumps({"bootstrap-figures": figures}))
