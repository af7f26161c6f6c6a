"""What chain windows cost: SENDER_KEY envelopes one sender publishes (issue 13 item 6, second half).

    .venv/bin/python scripts/measure_sender_key_cost.py
    PYTHONPATH=<checkout of 9a68797> .venv/bin/python scripts/measure_sender_key_cost.py   # before

Ten members learn of each other, then A sends one message a minute for three hours with the default
24 h lifetime (the other members offline: sealed copies are published all the same). Printed: chains A
used, SENDER_KEY envelopes it published, and how many of them are still held when the last message is
sent and 25 h later.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: "before" checkouts win

from peer.core.envelope import Kind, parse_envelope
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.testing import FakeClock
from tests.peer.room_net import Net


def main() -> None:
    net = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    rooms = [net.add(Identity.generate()) for _ in range(10)]
    a = rooms[0]
    for i, x in enumerate(rooms):
        for y in rooms[i + 1 :]:
            net.link(x, y)
    net.pump()
    net.tick(1000)
    for x in rooms[1:]:
        net.unlink(a, x)
    chains = set()
    for _ in range(180):
        a.send_text("tick", net.now(a))
        net.clock.advance(60_000)
        a.handle_timer(net.now(a))
    for e in a.sync.log.ordered():
        env = parse_envelope(e.data)
        if env.kind == Kind.CHAT and env.sender == a.peer_id:
            chains.add(env.chain_id)

    def held() -> int:
        return sum(1 for e in a.sync.log.ordered() if e.sender == a.peer_id and e.data[1] == Kind.SENDER_KEY)

    at_end = held()
    for _ in range(25 * 60):
        net.clock.advance(60_000)
        a.handle_timer(net.now(a))
    print(
        f"180 messages over 3 h, 9 other members: {len(chains)} chains, {at_end} SENDER_KEY envelopes"
        f" published and held after the last message, {held()} held 25 h later (all messages expired)"
    )


if __name__ == "__main__":
    main()
