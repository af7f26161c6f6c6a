"""Members admitted from a flood of fake self-ADDs (fresh identities holding the invite, lamport 1,
relayed by one neighbour across admission windows) in an open room vs a closed one; and the SENDER_KEY
envelopes the victim publishes meanwhile.

    .venv/bin/python scripts/measure_closed_room.py [N]     # default 300
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peer.core.identity import Identity  # noqa: E402
from peer.core.invite import Invite  # noqa: E402
from peer.testing import FakeClock  # noqa: E402
from tests.peer.room_net import Net, ready_pair  # noqa: E402
from tests.peer.test_closed_room import _sender_keys_by, flood  # noqa: E402


def run(n: int, close: bool) -> tuple[int, int, int]:
    owner = Identity.generate()
    net = Net(Invite.new("http://127.0.0.1:1", owner=owner.peer_id), FakeClock())
    a, b = ready_pair(net, owner)
    a.send_text("history", net.now(a), ttl_s=3600)
    net.pump()
    if close:
        a.close_admission(net.now(a))
        net.pump()
    keys = _sender_keys_by(a)
    admitted = flood(net, a, b, n)
    net.tick(60_000)
    return admitted, len(a.join_requests()), _sender_keys_by(a) - keys


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    for close in (False, True):
        admitted, requests, keys = run(n, close)
        print(
            f"{'closed' if close else 'open  '}: {n} fakes -> {admitted} admitted, "
            f"{requests} join requests shown, {keys} SENDER_KEY envelopes published"
        )


if __name__ == "__main__":
    main()
