"""Cost of the equivocation check (peer/core/sync_check.py): digest time cold and after one change, and
what finding one split key among N costs on the wire.

    .venv/bin/python scripts/measure_equivocation_check.py [N ...]     # default: 10000 100000
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peer.core import wire
from peer.core.sync import EntryVoided, SyncEngine
from peer.core.sync_check import Check
from peer.testing import dummy_validate, make_envelope, sim_id

ROOM, A, B, M = sim_id("room"), sim_id("a"), sim_id("b"), sim_id("m")
NOW, HOUR = 1_700_000_000_000, 3_600_000


def fill(e: SyncEngine, n: int, split_at: int | None, tag: bytes) -> None:
    e.connect(M, NOW)
    e.receive(M, wire.encode_hello(ROOM, {}), NOW)
    datas = [
        make_envelope(M, q, q, NOW, NOW + HOUR, (tag if q == split_at else b"") + b"x" * 300)
        for q in range(1, n + 1)
    ]
    for f in wire.encode_envelopes(datas):
        e.receive(M, f, NOW)


def measure(n: int) -> None:
    a, b = SyncEngine(A, ROOM, dummy_validate), SyncEngine(B, ROOM, dummy_validate)
    fill(a, n, n // 2, b"version A ")
    fill(b, n, n // 2, b"version B ")
    check = Check(a.config, a.log)  # a second cache over a's log: the engine's own stays cold
    t = time.perf_counter()
    check.digest(M, wire.MAX_INT)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    check.digest(M, wire.MAX_INT)
    cached = time.perf_counter() - t
    extra = make_envelope(M, n + 1, n + 1, NOW, NOW + HOUR, b"x" * 300)
    a.receive(M, wire.encode_envelopes([extra])[0], NOW)
    b.receive(M, wire.encode_envelopes([extra])[0], NOW)
    t = time.perf_counter()
    check.digest(M, wire.MAX_INT)
    incremental = time.perf_counter() - t
    # find the split: a and b link and exchange until quiet
    a.data_to_send()
    b.data_to_send()
    a.connect(B, NOW)
    b.connect(A, NOW)
    frames = sizes = 0
    voided = []
    t = time.perf_counter()
    for _ in range(1_000):
        out = [(a, b, f) for n_, f in a.data_to_send() if n_ == B] + [
            (b, a, f) for n_, f in b.data_to_send() if n_ == A
        ]
        if not out:
            break
        for src, dst, f in out:
            if f[0] in (wire.FrameType.DIGESTS, wire.FrameType.HASH_WANT, wire.FrameType.HASHES):
                frames += 1
                sizes += len(f)
            voided += [ev for ev in dst.receive(src.self_id, f, NOW) if isinstance(ev, EntryVoided)]
    found = time.perf_counter() - t
    print(
        f"N={n}: digest cold {cold * 1e3:.1f} ms, cached {cached * 1e6:.0f} us, after one new entry "
        f"{incremental * 1e3:.2f} ms; split found: {len(voided)} voided, {frames} check frames "
        f"({sizes / 1024:.1f} KiB), {found * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["10000", "100000"]:
        measure(int(arg))
