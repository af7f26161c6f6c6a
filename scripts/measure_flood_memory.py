"""Memory one hostile neighbour can make a sync engine hold (issue 13 items 4, 7): before/after figures.

    .venv/bin/python scripts/measure_flood_memory.py                      # this checkout
    PYTHONPATH=/tmp/old .venv/bin/python scripts/measure_flood_memory.py  # an older ``peer`` package
        (e.g. ``mkdir /tmp/old && git archive 29aaca1 peer | tar -x -C /tmp/old``)

Floods, each from one neighbour against a victim holding 500 entries of 200 bytes from one real member
(tracemalloc: memory still held by the engine after the flood, the engine kept alive):
  hello  300 HELLOs, each claiming a fresh sender [0, 10^6]
  want   300 WANTs for the whole log; the output is drained after each WANT (what the link must carry)
         and, separately, never drained (what the engine queues)
  tombs  80,000 proof-less tombstones for 2,000 non-members (40 each)
  all    the three together
"""

from __future__ import annotations

import inspect
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from peer.core import wire
from peer.core.log import Tombstone
from peer.core.sync import SyncEngine
from peer.testing import dummy_authorize_tombstone, dummy_validate, make_envelope, sim_id

NOW = 1_700_000_000_000
HOUR = 3_600_000
ROOM = sim_id("room")
HOSTILE = sim_id("hostile")
REAL = sim_id("real")


def victim() -> SyncEngine:
    kwargs: dict[str, object] = {"authorize_tombstone": dummy_authorize_tombstone}
    if "known_sender" in inspect.signature(SyncEngine).parameters:
        kwargs["known_sender"] = lambda p: p == REAL
    v = SyncEngine(sim_id("victim"), ROOM, dummy_validate, **kwargs)  # type: ignore[arg-type]
    for seq in range(500):
        v.publish(make_envelope(REAL, seq, seq + 1, NOW, NOW + HOUR, b"x" * 200), NOW)
    v.connect(HOSTILE, NOW)
    v.receive(HOSTILE, wire.encode_hello(ROOM, {}), NOW)
    v.data_to_send()
    return v


def hello(v: SyncEngine, drain: bool) -> int:
    for i in range(300):
        v.receive(HOSTILE, wire.encode_hello(ROOM, {sim_id(f"fake{i}"): [(0, 1_000_000)]}), NOW)
        if drain:
            v.data_to_send()
    return 0


def want(v: SyncEngine, drain: bool) -> int:
    sent = 0
    frames = wire.encode_want({REAL: [(0, 10_000)]})
    for _ in range(300):
        for f in frames:
            v.receive(HOSTILE, f, NOW)
        if drain:
            sent += sum(len(d) for _, d in v.data_to_send())
    return sent


def tombs(v: SyncEngine, drain: bool) -> int:
    flood = [Tombstone(sim_id(f"fake{i}"), j, NOW) for i in range(2_000) for j in range(40)]
    for f in wire.encode_tombstones(flood):
        v.receive(HOSTILE, f, NOW)
        if drain:
            v.data_to_send()
    return 0


def every(v: SyncEngine, drain: bool) -> int:
    return hello(v, drain) + want(v, drain) + tombs(v, drain)


def measure(flood: Callable[[SyncEngine, bool], int], drain: bool) -> tuple[float, int, int]:
    v = victim()
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    sent = flood(v, drain)
    held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    pending = v.pending_wants()
    return held / 1e6, pending, sent


def main() -> None:
    import peer

    print(f"peer package: {Path(peer.__file__).parent}")
    for name, flood in (("hello", hello), ("want", want), ("tombs", tombs), ("all", every)):
        for drain in (True, False) if name == "want" else (True,):
            mb, pending, sent = measure(flood, drain)
            extra = f", sent to the link {sent / 1e6:.1f} MB" if drain and name == "want" else ""
            mode = "" if name != "want" else (" (drained)" if drain else " (never drained)")
            print(f"{name:5s}{mode:17s} held {mb:8.1f} MB, pending wants {pending:9,d}{extra}")


if __name__ == "__main__":
    main()
