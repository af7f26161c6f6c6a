"""WAN-shaped latency: peers near each other, the server far away; mesh vs relay.

``python -m bench.wan [--peers 4] [--messages 100] [--peer-delay-ms 2] [--server-delay-ms 40]``

Layout (root only; skipped with a note otherwise): one network namespace per peer and one for the
servers, each joined by a veth pair to a bridge in a hub namespace, addresses 10.77.0.0/24 that exist
only inside these namespaces. ``tc netem`` on both ends of each veth gives a one-way delay of
``--peer-delay-ms`` between two peers and ``--server-delay-ms`` between a peer and the server. Every peer
is its own process (``ip netns exec``); the signaling server and the WebSocket relay run in the server
namespace. Messages (200 B) are sent on a fixed schedule (one every ``--interval`` s, senders in
turn); a sample is send until the last other member has it, timed with the machine-wide monotonic
clock. All namespaces are deleted at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, spawn_server, summary_ms, write_result
from peer.core.invite import Invite

PREFIX = "ephb-wan"
NET = "10.77.0"
SERVER_IP = f"{NET}.2"


def sh(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(f"{' '.join(cmd[-8:])}: {r.stderr.strip()}")


def netem_available() -> str | None:
    """None when ``tc netem`` works in a scratch namespace; otherwise the reason it does not."""
    name = f"{PREFIX}-probe"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    try:
        sh("ip", "netns", "add", name)
        sh(*ns(name), "ip", "link", "add", "vprobe0", "type", "veth", "peer", "name", "vprobe1")
        sh(*ns(name), "tc", "qdisc", "add", "dev", "vprobe0", "root", "netem", "delay", "1ms")
        return None
    except OSError as exc:
        return str(exc)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ns(name: str) -> list[str]:
    return ["ip", "netns", "exec", name]


def netns_names(peers: int) -> list[str]:
    return [f"{PREFIX}-hub", f"{PREFIX}-srv", *(f"{PREFIX}-p{i}" for i in range(peers))]


def cleanup(peers: int) -> None:
    for name in netns_names(peers):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def setup(peers: int, peer_delay_ms: float, server_delay_ms: float, shape: bool = True) -> None:
    """Build hub bridge + server ns + one ns per peer; half of each one-way delay on each veth end."""
    hub = f"{PREFIX}-hub"
    sh("ip", "netns", "add", hub)
    sh(*ns(hub), "ip", "link", "set", "lo", "up")
    sh(*ns(hub), "ip", "link", "add", "br0", "type", "bridge")
    sh(*ns(hub), "ip", "link", "set", "br0", "up")
    half_peer = peer_delay_ms / 2
    ends = [(f"{PREFIX}-srv", "hsrv", SERVER_IP, server_delay_ms - half_peer)]
    ends += [(f"{PREFIX}-p{i}", f"hp{i}", f"{NET}.{10 + i}", half_peer) for i in range(peers)]
    for name, hub_if, ip, delay in ends:
        sh("ip", "netns", "add", name)
        sh(*ns(name), "ip", "link", "set", "lo", "up")
        # create the pair inside the hub namespace, then move one end: the host is never touched
        sh(*ns(hub), "ip", "link", "add", hub_if, "type", "veth", "peer", "name", "eth0")
        sh(*ns(hub), "ip", "link", "set", "eth0", "netns", name)
        sh(*ns(hub), "ip", "link", "set", hub_if, "master", "br0")
        sh(*ns(hub), "ip", "link", "set", hub_if, "up")
        sh(*ns(name), "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        sh(*ns(name), "ip", "link", "set", "eth0", "up")
        # peer->x leaves through the ns end, x->peer through the hub end: delay both halves
        own = delay if name.endswith("srv") else half_peer
        if not shape:
            continue
        sh(*ns(name), "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{own}ms")
        sh(*ns(hub), "tc", "qdisc", "add", "dev", hub_if, "root", "netem", "delay", f"{delay}ms")


def read_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise TimeoutError(f"worker did not print {prefix}")
        text = proc.stdout.readline()
        if not text:
            raise RuntimeError(f"worker exited before {prefix}")
        if text.startswith(prefix):
            return text


def run_system(
    role: str,
    peers: int,
    messages: int,
    interval: float,
    server: str,
    home: Path,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    invite = Invite.new(server).url() if role == "ephemesh" else ""
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(peers):
            argv = [PY, "-m", "bench.wan_worker", "--role", role, "--index", str(i), "--n", str(peers)]
            argv += ["--messages", str(messages), "--interval", str(interval), "--server", server]
            argv += ["--invite", invite, "--home", str(home / f"{role}-{i}"), *(extra or [])]
            procs.append(
                subprocess.Popen(
                    [*ns(f"{PREFIX}-p{i}"), *argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    cwd=ROOT,
                )
            )
        t_form = time.monotonic()
        for p in procs:
            read_line(p, "READY", 120)
        formed_s = time.monotonic() - t_form
        t0 = time.monotonic() + 0.5
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"GO {t0!r}\n")
            p.stdin.flush()
        results = [json.loads(read_line(p, "RESULT", 60 + messages * interval)[7:]) for p in procs]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("EXIT\n")
            p.stdin.flush()
    finally:
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    sends: dict[int, float] = {}
    last: dict[int, float] = {}
    got: dict[int, int] = {}
    for r in results:
        sends.update({int(k): v for k, v in r["sends"].items()})
        for k, v in r["recvs"].items():
            last[int(k)] = max(last.get(int(k), 0.0), v)
            got[int(k)] = got.get(int(k), 0) + 1
    samples = [last[k] - sends[k] for k in sends if got.get(k) == peers - 1]
    return {**summary_ms(samples), "lost": len(sends) - len(samples), "ready_s": round(formed_s, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--peer-delay-ms", type=float, default=2.0)
    ap.add_argument("--server-delay-ms", type=float, default=40.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    res: dict[str, Any] = {
        "peers": args.peers,
        "peer_delay_ms": args.peer_delay_ms,
        "server_delay_ms": args.server_delay_ms,
        "layout": (
            f"one network namespace and one process per peer, servers in their own namespace; one-way "
            f"delay {args.peer_delay_ms} ms peer-peer, {args.server_delay_ms} ms peer-server (tc netem)"
        ),
    }
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        res["skipped"] = "needs root, ip and tc to build network namespaces"
        print(f"wan: skipped: {res['skipped']}")
        write_result("wan", res, args.out)
        return res
    cleanup(args.peers)
    why = netem_available()
    extra: list[str] = []
    if why is not None:
        res["netem"] = (
            f"unavailable ({why}); the same delays are emulated in the application instead: each "
            "data-channel frame is held {peer} ms at its sender, each relay frame {srv} ms on the way up "
            "and {srv} ms on the way down (bench/wan_worker.py DelayLine)"
        ).format(peer=args.peer_delay_ms, srv=args.server_delay_ms)
        res["shaped"] = "emulated"
        res["layout"] = res["layout"].replace("(tc netem)", "(emulated in the application: no sch_netem)")
        extra = [
            "--emulate-peer-ms",
            str(args.peer_delay_ms),
            "--emulate-server-ms",
            str(args.server_delay_ms),
        ]
        print(f"wan: tc netem unavailable ({why}); emulating the delays in the application")
    else:
        res["shaped"] = True
    try:
        setup(args.peers, args.peer_delay_ms, args.server_delay_ms, shape=why is None)
        srv = [*ns(f"{PREFIX}-srv")]
        with (
            tempfile.TemporaryDirectory(prefix="ephb-wan-") as tmp,
            spawn_server([PY, "-m", "bench.sigserver", "--host", SERVER_IP], prefix=srv) as sig,
            spawn_server([PY, "-m", "bench.relay_server", "--host", SERVER_IP], prefix=srv) as relay,
        ):
            home = Path(tmp)
            for role, server in (
                ("ephemesh", f"http://{SERVER_IP}:{sig.port}"),
                ("relay", f"http://{SERVER_IP}:{relay.port}"),
            ):
                r = run_system(role, args.peers, args.messages, args.interval, server, home, extra)
                res["ephemesh" if role == "ephemesh" else "ws-relay"] = r
                print(
                    f"wan {role:8s} n={args.peers}: p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  lost {r['lost']}"
                )
    except (OSError, TimeoutError, RuntimeError) as exc:
        res["skipped"] = f"network namespaces unavailable: {exc}"
        print(f"wan: skipped: {res['skipped']}")
    finally:
        cleanup(args.peers)
    write_result("wan", res, args.out)
    return res


if __name__ == "__main__":
    main()
