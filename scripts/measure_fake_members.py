"""CPU the victim spends, and members it ends with, for N fake self-ADDs relayed by one neighbour in one
window, without the admission budget (as before) and with it (issue 13 item 8).

    .venv/bin/python scripts/measure_fake_members.py 300
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peer.core import wire  # noqa: E402
from peer.core.invite import Invite  # noqa: E402
from peer.core.room.admission import AddBudget  # noqa: E402
from peer.testing import FakeClock  # noqa: E402
from tests.peer.room_net import Net, ready_pair, self_adds  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    net = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    adds = self_adds(net, n)
    for label, budget in (
        ("no budget (before)", AddBudget(per_window=10**9)),
        ("budget (after)", AddBudget()),
    ):
        a, b = ready_pair(net)
        a.admission = budget
        start = time.process_time()
        for frame in wire.encode_envelopes(adds):
            a.receive(b.peer_id, frame, net.clock.now + 20_000)
        cpu = time.process_time() - start
        print(f"{n} fake self-ADDs, {label}: {cpu:.2f} s CPU, {len(a.members())} members")


if __name__ == "__main__":
    main()
