"""Attachment transfer: throughput and chat latency during a transfer, Python <-> Python on loopback.

    python -m bench.transfer --size-mb 50 --pings 200 --interval-ms 20

Two processes (alice here, bob a child: ``python -m bench.transfer --child ...``) and the signaling
server (a third) on loopback. Chat latency is the round trip of a real ephemesh message: alice sends
``ping i``, bob answers ``pong i`` when it shows it; measured first with no transfer, then in the same
run while bob downloads a ``--size-mb`` file from alice (alice keeps pinging every ``--interval-ms``).
Throughput is the file's size over bob's fetch time (every chunk verified, stored encrypted); the CPU
seconds both processes spent meanwhile give MB per CPU-second (what one free core carries, whatever
the machine's load, which is recorded too). Writes ``bench/results/transfer.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import sctp_probe
from bench.common import PY, ROOT, Pinger, spawn_server, summary_ms, write_result
from peer.net import fileschannel


def _make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        block = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(2048))  # 64 KiB
        left = size
        n = 0
        while left > 0:
            piece = hashlib.sha256(n.to_bytes(8, "big")).digest() + block[32:]
            f.write(piece[: min(left, len(piece))])
            left -= len(piece)
            n += 1


def _no_pacing() -> None:
    import peer.net.fileschannel as fc

    fc.PACING = False


def _no_tuning() -> None:
    import peer.net.sctp_tuning as st

    st.ENABLED = False


async def _child(invite: str, home: str, probe: bool) -> None:
    ticker = asyncio.ensure_future(sctp_probe.lag_ticker()) if probe else None
    try:
        await _child_run(invite, home)
    finally:
        if ticker is not None:
            ticker.cancel()


async def _child_run(invite: str, home: str) -> None:
    from peer.node import MessageReceived, Peer

    async with Peer(home=home, control=False) as bob:
        room = await bob.join(invite)
        tasks: set[asyncio.Task[None]] = set()

        async def fetch(msg_id: str) -> None:
            att = room.attachment(msg_id)
            t0, c0 = time.perf_counter(), time.process_time()
            await att.fetch(timeout=600)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            idle_cpu = (idle[1] - idle[0]) / max(idle[2], 1)
            await room.send(f"done {dt:.6f} {att.size} {cpu:.6f} {idle_cpu:.9f}")

        idle = [0.0, 0.0, 0]  # CPU at the first ping, at the fetch request, pings answered between

        print("READY", flush=True)
        async for ev in room.events():
            if not isinstance(ev, MessageReceived) or ev.message.sender == bob.peer_id:
                continue
            text = ev.message.text
            if text.startswith("ping "):
                if not tasks:
                    idle[0] = idle[0] or time.process_time()
                    idle[2] += 1
                await room.send("pong " + text[5:])
            elif text.startswith("fetch "):
                idle[1] = time.process_time()
                task = asyncio.ensure_future(fetch(text[6:]))
                tasks.add(task)
            elif text == "bye":
                return


async def _run(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    from peer.core.invite import Invite
    from peer.node import MessageReceived, Peer

    invite = Invite.new(url).url()
    child = await asyncio.create_subprocess_exec(
        *[PY, "-m", "bench.transfer", "--child", "--invite", invite, "--home", str(tmp / "bob")]
        + (["--no-pacing"] if args.no_pacing else [])
        + (["--no-tuning"] if args.no_tuning else [])
        + (["--no-dtls-direct"] if args.no_dtls_direct else [])
        + (["--without", args.without] if args.without else [])
        + (["--uvloop"] if args.uvloop else [])
        + (["--probe-out", str(tmp / "bob-probe.json")] if args.probe else [])
        + (["--outbound-limit", str(args.outbound_limit)] if args.outbound_limit is not None else []),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )
    ticker = asyncio.ensure_future(sctp_probe.lag_ticker()) if args.probe else None
    m0 = 0.0
    try:
        async with Peer(home=tmp / "alice", control=False) as alice:
            room = await alice.join(invite)
            await room.wait_for(lambda: len(room.online_members()) == 1, 60)
            done: asyncio.Future[tuple[float, int, float, float]] = asyncio.get_running_loop().create_future()

            async def listen() -> None:
                async for ev in room.events():
                    if isinstance(ev, MessageReceived) and ev.message.sender != alice.peer_id:
                        text = ev.message.text
                        if pinger.settle(text):
                            continue
                        if text.startswith("done ") and not done.done():
                            _, secs, size, cpu, ping_cpu = text.split()
                            done.set_result((float(secs), int(size), float(cpu), float(ping_cpu)))

            pinger = Pinger(room, 30)
            listener = asyncio.ensure_future(listen())
            ping = pinger.ping

            for _ in range(5):  # warm-up
                await ping()
            idle = []
            i0 = time.process_time()
            for _ in range(args.pings):
                idle.append(await ping())
                await asyncio.sleep(args.interval_ms / 1000)  # the pacing of the pings (not a sync)
            alice_ping_cpu = (time.process_time() - i0) / max(len(idle), 1)

            src = tmp / "file.bin"
            size = int(args.size_mb * 1000 * 1000)
            _make_file(src, size)
            t0 = time.perf_counter()
            msg = await room.send_file(src, ttl=3600)
            seal_s = time.perf_counter() - t0
            await room.send(f"fetch {msg.id}")
            c0 = time.process_time()
            m0 = time.monotonic()
            busy = []
            while not done.done():
                busy.append(await ping())
                await asyncio.sleep(args.interval_ms / 1000)
            fetch_s, got, bob_cpu, bob_ping_cpu = done.result()
            alice_cpu = time.process_time() - c0
            await room.send("bye")
            listener.cancel()
    finally:
        try:
            await asyncio.wait_for(child.wait(), 30)
        except TimeoutError:
            child.kill()
            await child.wait()
    probe: dict[str, Any] = {}
    if ticker is not None:
        ticker.cancel()
        probe = {"sender": _rebase(sctp_probe.report(), m0)}
        bob_probe = tmp / "bob-probe.json"
        if bob_probe.exists():
            probe["receiver"] = _rebase(json.loads(bob_probe.read_text()), m0)
        probe["slow_seconds"] = _slow_seconds(probe)
    return {
        **({"probe": probe} if probe else {}),
        "size_bytes": got,
        "seal_s": round(seal_s, 3),
        "fetch_s": round(fetch_s, 3),
        "throughput_MBps": round(got / fetch_s / 1e6, 2),
        # CPU seconds each process spent meanwhile: MB per CPU-second is what one free core would carry
        "receiver_cpu_s": round(bob_cpu, 3),
        "sender_cpu_s": round(alice_cpu, 3),
        "MB_per_cpu_s": round(got / 1e6 / max(bob_cpu, alice_cpu, 1e-9), 2),
        # the same less what the pings of the transfer's time cost at their idle rate (a longer run, on
        # a loaded machine, answers more pings): the transfer's own CPU, comparable across loads
        "receiver_transfer_cpu_s": round(bob_cpu - bob_ping_cpu * len(busy), 3),
        "sender_transfer_cpu_s": round(alice_cpu - alice_ping_cpu * len(busy), 3),
        "cpu_per_ping_ms": [round(bob_ping_cpu * 1000, 3), round(alice_ping_cpu * 1000, 3)],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "chat_rtt_idle": summary_ms(idle),
        "chat_rtt_during_transfer": summary_ms(busy),
        "params": {
            "size_mb": args.size_mb,
            "pings": args.pings,
            "interval_ms": args.interval_ms,
            "pacing": not args.no_pacing,
            "sctp_tuning": not args.no_tuning,
            "dtls_direct": not args.no_tuning and not args.no_dtls_direct,
            "without": args.without,
            "uvloop": args.uvloop,
            "outbound_limit": fileschannel.OUTBOUND_LIMIT,
        },
    }


def _slow_seconds(probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Each second of the fetch whose receive rate was under half the run's median, with what both
    processes and the host did meanwhile: ``host`` near 1.0 with both processes' CPU share down together
    is the machine's other load; both processes idle with the host idle is a stall of the transfer
    itself (then look at ``events`` for a T3 expiry, a retransmission, a requeue or a slow commit)."""
    rx, tx = probe.get("receiver", {}).get("timeline", []), probe.get("sender", {}).get("timeline", [])
    rx = [r for r in rx if r[0] >= 0]
    tx = [r for r in tx if r[0] >= 0]
    if len(rx) < 8 or len(tx) < 8:
        return []
    rows = []
    for i in range(0, len(rx) - 4, 4):  # samples every 0.25 s: one row a second
        a, b = rx[i], rx[i + 4]
        sa = min(tx, key=lambda r: abs(r[0] - a[0]))
        sb = min(tx, key=lambda r: abs(r[0] - b[0]))
        dt = max(b[0] - a[0], 1e-6)
        rows.append(
            {
                "t": a[0],
                "rx_packets_per_s": round((b[2] - a[2]) / dt),
                "receiver_cpu": round((b[1] - a[1]) / dt, 2),
                "sender_cpu": round((sb[1] - sa[1]) / max(sb[0] - sa[0], 1e-6), 2),
                "host_busy": round((b[4] - a[4]) / max(b[5] - a[5], 1), 2),
                "receiver_in_commits": round((b[6] - a[6]) / dt, 2),
                "sender_in_commits": round((sb[6] - sa[6]) / max(sb[0] - sa[0], 1e-6), 2),
            }
        )
    rates = sorted(r["rx_packets_per_s"] for r in rows)
    median = rates[len(rates) // 2]
    return [r for r in rows[:-1] if r["rx_packets_per_s"] < median / 2]


def _rebase(report: dict[str, Any], t0: float) -> dict[str, Any]:
    """Times relative to ``t0`` (the fetch request), only what falls after it."""
    report["events"] = [(round(t - t0, 3), k, i) for t, k, i in report["events"] if t >= t0 - 1]
    report["timeline"] = [(round(t - t0, 3), *rest) for t, *rest in report["timeline"] if t >= t0 - 1]
    report["gaps"] = {
        k: [(round(s - t0, 3), d) for s, d in v if s >= t0 - 1] for k, v in report["gaps"].items()
    }
    return report


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=50.0)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-pacing", action="store_true", help="send file frames as fast as aiortc takes them")
    ap.add_argument(
        "--no-tuning", action="store_true", help="leave aiortc as it is (peer/net/sctp_tuning.py not applied)"
    )
    ap.add_argument(
        "--no-dtls-direct",
        action="store_true",
        help="without sctp_tuning's patch 7 (DTLS records straight to the socket)",
    )
    ap.add_argument(
        "--without",
        default="",
        help="sctp_tuning switches to turn off, comma-separated (DTLS_DIRECT,ONE_CHUNK,PLAIN_SACK)",
    )
    ap.add_argument(
        "--outbound-limit", type=int, default=None, help="files channel pacing threshold (chunks)"
    )
    ap.add_argument("--uvloop", action="store_true", help="run both peers on uvloop (if installed)")
    ap.add_argument(
        "--probe",
        action="store_true",
        help="record SCTP timer expiries, retransmissions, loop lag (bench/sctp_probe.py)",
    )
    ap.add_argument("--probe-out", help=argparse.SUPPRESS)
    ap.add_argument("--name", default="transfer", help="result file name")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--invite", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.no_pacing:
        _no_pacing()
    if args.no_tuning:
        _no_tuning()
    if args.no_dtls_direct:
        import peer.net.sctp_tuning as st

        st.DTLS_DIRECT = False
    for name in filter(None, args.without.split(",")):
        import peer.net.sctp_tuning as st

        if not isinstance(getattr(st, name, None), bool):
            ap.error(f"--without: no switch {name} in peer/net/sctp_tuning.py")
        setattr(st, name, False)
    if args.outbound_limit is not None:
        fileschannel.OUTBOUND_LIMIT = args.outbound_limit
    if args.probe or args.probe_out:
        sctp_probe.install()
    run: Any = asyncio.run
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        run = uvloop.run
    if args.child:
        run(_child(args.invite, args.home, bool(args.probe_out)))
        if args.probe_out:
            Path(args.probe_out).write_text(json.dumps(sctp_probe.report()))
        return None
    with spawn_server([PY, "-m", "bench.sigserver"]) as sig, tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any] = run(_run(args, f"http://127.0.0.1:{sig.port}", Path(tmp)))
    path = write_result(args.name, result, args.out)
    print(path.read_text())
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None or "--child" in sys.argv else 1)
