"""Measure what a neighbour can make a room spend (issue 10): parked envelopes and bad frames.

    .venv/bin/python scripts/measure_room_abuse.py

Runs against whatever ``peer`` package is importable (PYTHONPATH=<old checkout> measures an older one).
Prints: the cost of one PING with 2,048 envelopes parked from a sender whose bundle is known but who is not
a member; how many are still parked (re-validated) after 31 s; memory and link state after 100,000 bad
frames.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from peer.core import wire
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.testing import FakeClock
from tests.peer.room_net import Net


def main() -> None:
    net = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(1000)
    c = Net(net.invite, net.clock).add(Identity.generate())
    for i in range(2048):
        c.send_text(f"m{i}", net.clock.now)
    envs = [e.data for e in c.sync.log.ordered() if e.seq > 1]
    a.learn_bundle(c.identity.public_bundle())
    for frame in wire.encode_envelopes(envs):
        a.receive(b.peer_id, frame, net.clock.now)
    calls = 0
    inner = a.sync._validate

    def counting(data: bytes):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return inner(data)

    a.sync._validate = counting
    t0 = time.perf_counter()
    for nonce in range(1, 21):
        a.receive(b.peer_id, wire.encode_ping(nonce), net.clock.now)
    per_ping = (time.perf_counter() - t0) / 20 * 1000
    print(f"2,048 parked: {per_ping:.2f} ms per PING, {calls / 20:.0f} re-validations per PING")
    calls = 0
    net.tick(31_000)
    print(
        f"after 31 s of heartbeats: {calls} re-validations; the parked ones are then re-validated per frame: ",
        end="",
    )
    calls = 0
    a.receive(b.peer_id, wire.encode_ping(99), net.now(a))
    print(calls)
    a.sync._validate = inner

    net2 = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    x, y = net2.add(Identity.generate()), net2.add(Identity.generate())
    net2.link(x, y)
    net2.pump()
    net2.tick(1000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(100_000):
        x.receive(y.peer_id, b"\xee junk", net2.clock.now)
    grown = (tracemalloc.get_traced_memory()[0] - before) / 1e6
    tracemalloc.stop()
    print(f"100,000 bad frames: +{grown:.2f} MB held; link closed: {y.peer_id in x.take_dead_links()}")


if __name__ == "__main__":
    main()
