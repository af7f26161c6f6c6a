"""LAN discovery with no signaling server anywhere: real ``ephemesh`` processes on hosts (network
namespaces) joined by bridges, mDNS on the wire, WebRTC between them.

Topology (the session's ``lans``, ``tests/net/lan_topology.py``): hosts h1, h2, h3 on one bridge
(10.77.0.0/24); h9 alone on another bridge (10.78.0.0/24). A capture process on h3 and one on h9 read
every mDNS packet, like a passive stranger on each network.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from zeroconf._protocol.incoming import DNSIncoming

from peer.core.invite import Invite
from peer.core.lan import SERVICE_TYPE, LanMatcher
from tests.net.conftest import BIN, Proc, Procs
from tests.net.lan_topology import Lans

WAIT = 40.0

pytestmark = pytest.mark.timeout(180)


def event(proc: Proc, pred: Any, timeout: float = WAIT) -> dict[str, Any]:
    """The first JSON event of ``proc`` (printed before, or within ``timeout``) matching ``pred``; the
    events read past are kept in ``proc.seen`` for later calls."""
    seen = proc.seen
    for ev in seen:
        if pred(ev):
            seen.remove(ev)
            return ev

    def match(line: str) -> bool:
        if not line.startswith("{"):
            return False
        ev = json.loads(line)
        if pred(ev):
            return True
        seen.append(ev)
        return False

    try:
        out: dict[str, Any] = json.loads(proc.expect(match, timeout))
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; events read past: {seen[-8:]}") from None
    return out


def drain(proc: Proc) -> list[str]:
    out = []
    while not proc.lines.empty():
        out.append(proc.lines.get_nowait())
    return out


def packets(capture: Proc) -> list[tuple[str, bytes]]:
    out = []
    for line in drain(capture):
        obj = json.loads(line)
        if "hex" in obj:
            out.append((obj["src"], bytes.fromhex(obj["hex"])))
    return out


def instance_labels(data: bytes) -> set[str]:
    """Service instance labels named in an mDNS packet (questions and records)."""
    msg = DNSIncoming(data)
    names = {q.name for q in msg.questions} | {r.name for r in msg.answers()}
    names |= {str(getattr(r, "alias", "")) for r in msg.answers()}
    return {n[: -len(SERVICE_TYPE) - 1] for n in names if n.endswith("." + SERVICE_TYPE)}


def test_lan_peers_find_each_other_and_chat_with_no_server(lans: Lans, procs: Procs) -> None:
    invite = Invite.new(None)
    url = invite.url()
    assert url.startswith("ephemesh:#")
    cap3, cap9 = procs.capture("h3"), procs.capture("h9")
    alice = procs.ephemesh("h1", "alice", "listen", url, "--lan", "--json", "--name", "alice-lan")
    bob = procs.ephemesh("h2", "bob", "listen", url, "--lan", "--json", "--name", "bob-lan")
    zed = procs.ephemesh("h9", "zed", "listen", url, "--lan", "--json", "--name", "zed-other-lan")
    ids = {p.name: event(p, lambda e: e["event"] == "ready")["peer"] for p in (alice, bob, zed)}
    # alice and bob find each other by mDNS alone and link
    event(alice, lambda e: e["event"] == "online" and e["peer"] == ids["bob"])
    event(bob, lambda e: e["event"] == "online" and e["peer"] == ids["alice"])

    t0 = time.monotonic()
    carol = procs.ephemesh(
        "h3", "carol", "send", url, "hello over the LAN", "--lan", "--name", "carol-lan", "-v"
    )
    event(alice, lambda e: e["event"] == "message" and e["text"] == "hello over the LAN")
    received_at = time.time()
    first_message = time.monotonic() - t0
    event(bob, lambda e: e["event"] == "message" and e["text"] == "hello over the LAN")
    assert carol.popen.wait(timeout=WAIT) == 0
    # the sender's log says when its LAN discovery started (after the process's start-up and imports)
    started = next(
        line for line in (procs.tmp / "carol.err").read_text().splitlines() if "LAN discovery on" in line
    )
    at = time.mktime(time.strptime(started[:19], "%Y-%m-%d %H:%M:%S")) + int(started[20:23]) / 1000
    print(
        f"\nLAN, no server: time to first message {first_message:.2f} s from the send process's start,"
        f" {received_at - at:.2f} s from its LAN discovery start"
    )

    # zed, same room on the other bridge, never learnt of anyone (and no announcement crossed)
    zed_events = zed.seen + [json.loads(s) for s in drain(zed) if s.startswith("{")]
    assert not [e for e in zed_events if e["event"] in ("online", "message")], zed_events

    seen3, seen9 = packets(cap3), packets(cap9)
    matcher = LanMatcher(invite)
    now = int(time.time() * 1000)
    ours3 = {lab for _, data in seen3 for lab in instance_labels(data) if matcher.matches(lab, now)}
    assert len(ours3) >= 2, "the capture saw the announcements of alice and bob (carol may leave before hers)"
    secret_forms = [invite.room_id, invite.fragment().split(".")[1], *ids.values()]
    forbidden = [s.encode() for s in secret_forms] + [
        bytes.fromhex(h) for h in [invite.room_id, *ids.values()]
    ]
    forbidden += [b"alice-lan", b"bob-lan", b"carol-lan", b"zed-other-lan", socket.gethostname().encode()]
    for _, data in seen3 + seen9:
        for bad in forbidden:
            assert bad not in data, f"an mDNS packet carries {bad!r}"
    assert [src for src, _ in seen9 if src.startswith("10.77.")] == []
    assert {lab for _, data in seen9 for lab in instance_labels(data)} & ours3 == set()
    # the capture on h9 works: it saw zed's own announcement
    assert any(matcher.matches(lab, now) for _, data in seen9 for lab in instance_labels(data))


def test_the_announcement_is_renamed_at_each_epoch(lans: Lans, procs: Procs) -> None:
    from peer.core.lan import EPOCH_MS, instance_name

    invite = Invite.new(None)
    cap = procs.capture("h3")
    rotor = procs.start(
        "h1", "rotor", [str(BIN / "python"), "-m", "tests.net.lan_rotor", invite.url(), lans.hosts["h1"]]
    )
    offset_ms = json.loads(rotor.expect(lambda s: "offset_ms" in s, 30))["offset_ms"]
    rotor.expect(lambda s: "renamed" in s, 30)
    assert rotor.popen.wait(timeout=30) == 0
    labels: list[str] = []
    for src, data in packets(cap):
        if src == lans.hosts["h1"]:
            labels += [lab for lab in sorted(instance_labels(data)) if lab not in labels]
    assert len(labels) == 2, labels
    epoch = int((time.time() * 1000 + offset_ms) // EPOCH_MS)  # the epoch after the change

    def of_epoch(e: int) -> list[str]:
        return [lab for lab in labels if instance_name(invite, e * EPOCH_MS, bytes.fromhex(lab)[:8]) == lab]

    assert len(of_epoch(epoch - 1)) == 1  # one name before the change...
    assert len(of_epoch(epoch)) == 1  # ...another after it, with nothing in common
    assert of_epoch(epoch - 1) != of_epoch(epoch)


def test_a_room_joined_through_a_server_opts_in_to_the_lan_later(lans: Lans, procs: Procs) -> None:
    """alice joined through a server (no --lan); bob only has the no-server invite of the same room and
    --lan. A later ``send --lan`` through alice's control socket turns LAN discovery on for her room:
    bob finds her and gets the message."""
    server = procs.start(
        "h3",
        "serve",
        [str(BIN / "ephemesh"), "serve", "--host", lans.hosts["h3"], "--port", "8080", "--no-invite"],
        merge_stderr=True,
    )
    server.expect(lambda s: "web client on" in s, 30)
    invite = Invite.new(f"http://{lans.hosts['h3']}:8080")
    lan_only = invite.with_servers([])
    assert lan_only.room_id == invite.room_id
    alice = procs.ephemesh("h1", "alice", "listen", invite.url(), "--json")
    bob = procs.ephemesh("h2", "bob", "listen", lan_only.url(), "--lan", "--json")
    ids = {p.name: event(p, lambda e: e["event"] == "ready")["peer"] for p in (alice, bob)}
    send = procs.ephemesh(
        "h1", "alice-send", "send", invite.url(), "now on the LAN too", "--lan", home="alice"
    )
    assert send.popen.wait(timeout=WAIT) == 0
    got = event(bob, lambda e: e["event"] == "message" and e["text"] == "now on the LAN too")
    assert got["sender"] == ids["alice"]
