"""Expiry latency: time from a message's signed ``expires_at`` to "erased" on every online member.

N real Peers (aiortc data channels, SQLite stores in a temp dir, a real signaling server on 127.0.0.1) in
one process. Senders take turns sending M messages with staggered expiries; every member (the sender
included) records when its ``MessageExpired`` event fires — the pump emits it only after the erasure batch
is committed to SQLite (secure_delete on). Reports p50/p99/max of (erased - expires_at), and the cost of
the SQLite erase itself with and without ``secure_delete``.

    .venv/bin/python -m bench.expiry --peers 4 --messages 50
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from peer.core.invite import Invite
from peer.core.room import MessageExpired, Room
from peer.node import Peer, RoomHandle, now_ms
from signaling.app import start_server
from signaling.config import SignalingConfig


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def collect(room: RoomHandle, out: list[tuple[str, str, int]], done: asyncio.Event, want: int) -> None:
    async for ev in room.events():
        if isinstance(ev, MessageExpired):
            out.append((room.peer_id, ev.id, now_ms()))
            if len(out) >= want:
                done.set()


async def run(n_peers: int, n_messages: int, ttl_ms: int, spread_ms: int) -> None:
    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    with tempfile.TemporaryDirectory() as tmp:
        peers = [Peer(home=Path(tmp) / f"p{i}") for i in range(n_peers)]
        try:
            invite = Invite.new(f"http://127.0.0.1:{port}").url()
            t0 = time.perf_counter()
            rooms = [await p.join(invite) for p in peers]
            for r in rooms:
                await r.wait_for(lambda r=r: len(r.online_members()) == n_peers - 1, 30)
            print(f"{n_peers} peers linked in {time.perf_counter() - t0:.2f} s")
            erased: list[tuple[str, str, int]] = []
            done = asyncio.Event()
            want = n_peers * n_messages
            tasks = [asyncio.create_task(collect(r, erased, done, want)) for r in rooms]
            expires: dict[str, int] = {}
            for k in range(n_messages):
                room = rooms[k % n_peers]
                at = now_ms() + ttl_ms + k * spread_ms // n_messages  # staggered expiries
                msg_id = _send_expiring_at(room.core, f"bench {k}", at)
                expires[msg_id] = at
                room._pump([])
            for r in rooms:
                await r.wait_for(lambda r=r: len(r.messages()) >= len(expires), 30)
            await asyncio.wait_for(done.wait(), ttl_ms / 1000 + spread_ms / 1000 + 30)
            for t in tasks:
                t.cancel()
            lat = [float(at - expires[mid]) for _, mid, at in erased if mid in expires]
            print(
                f"erase latency (expires_at -> erased & committed), {len(lat)} erasures on {n_peers} members: "
                f"p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms"
            )
            last: dict[str, int] = {}
            for _, mid, at in erased:
                if mid in expires:
                    last[mid] = max(last.get(mid, 0), at - expires[mid])
            allv = [float(v) for v in last.values()]
            print(
                f"erased on ALL members, per message: p50 {statistics.median(allv):.1f} ms, "
                f"p99 {pct(allv, 99):.1f} ms, max {max(allv):.1f} ms"
            )
        finally:
            for p in peers:
                await p.close()
            await runner.cleanup()
    sqlite_cost()


def _send_expiring_at(room: Room, text: str, expires_at: int) -> str:
    """Send a message expiring at ``expires_at`` (ms). The API's TTL is whole seconds, so the message is
    stamped up to 1 s in the past (``sent_at = expires_at - ttl``)."""
    ttl_s = max(1, -(-(expires_at - now_ms()) // 1000))
    return room.send_text(text, expires_at - ttl_s * 1000, ttl_s=ttl_s).id


def sqlite_cost(rows: int = 2000) -> None:
    """Per-row erase cost of envelope+key rows, secure_delete on vs off, and VACUUM after."""
    with tempfile.TemporaryDirectory() as tmp:
        for secure in ("ON", "OFF"):
            db = sqlite3.connect(Path(tmp) / f"s{secure}.db", isolation_level=None)
            db.execute(f"PRAGMA secure_delete = {secure}")
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("CREATE TABLE e (k INTEGER PRIMARY KEY, data BLOB, key BLOB)")
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO e VALUES (?, randomblob(600), randomblob(32))", [(i,) for i in range(rows)]
            )
            db.execute("COMMIT")
            t = time.perf_counter()
            for i in range(0, rows, 10):  # erase in batches of 10 (one pump's worth)
                db.execute("BEGIN")
                db.executemany("DELETE FROM e WHERE k = ?", [(j,) for j in range(i, i + 10)])
                db.execute("COMMIT")
            per = (time.perf_counter() - t) / rows * 1e6
            t = time.perf_counter()
            db.execute("VACUUM")
            vac = (time.perf_counter() - t) * 1e3
            print(
                f"sqlite erase, secure_delete={secure}: {per:.1f} us/row (batches of 10); VACUUM {vac:.1f} ms"
            )
            db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--ttl-ms", type=int, default=2000, help="shortest lifetime")
    ap.add_argument("--spread-ms", type=int, default=2500, help="expiries spread over this window")
    args = ap.parse_args()
    asyncio.run(run(args.peers, args.messages, args.ttl_ms, args.spread_ms))


if __name__ == "__main__":
    main()
