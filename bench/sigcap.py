"""Signaling server capacity: ephemesh's server vs y-webrtc's ``bin/server.js``, one load generator.

``python -m bench.sigcap [--connections 10000] [--pairs 200] [--seconds 5] [--ywebrtc DIR]``

Layout: each server in its own process; this process is the only load generator (asyncio + aiohttp,
one core at most). When run as root with ``ip netns`` available, the whole test re-executes itself in a
fresh network namespace that has only ``lo``: y-webrtc's server binds every interface, and this keeps it
(and all load) on loopback.

- Held connections: open ``--connections`` WebSockets (ephemesh: each completes the signed challenge
  and is welcomed; y-webrtc: each subscribes to one topic), then check that all are still open. Memory
  per connection = growth of the server's RSS / connections.
- Relay: ``--pairs`` pairs; both ends of every pair send to the other in a closed loop (the next signal
  leaves when the previous one arrived) for ``--seconds``. Figures: signals delivered per second and
  p50/p99 send-to-arrival. y-webrtc echoes every publish to its sender as well; those echoes are not
  counted. ephemesh's server runs with its per-connection rate limit raised (default 50/s) so the test
  measures relaying, not abuse limits; its idle timeout is raised to 600 s for the long connect phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing

from bench.common import PY, cpu_seconds, raise_fd_limit, rss_bytes, spawn_server, summary_ms, write_result
from signaling.protocol import auth_message, b64u_decode, b64u_encode

NETNS = "ephb-sigcap"
YWEBRTC_DIR = Path("/tmp/ywebrtc")
CONNECT_CONCURRENCY = 100

Open = Callable[[aiohttp.ClientSession, int], Awaitable[aiohttp.ClientWebSocketResponse]]


# -- the two client protocols ----------------------------------------------------------------------


class Ephemesh:
    name = "ephemesh"

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/ws"
        self.peer_ids: dict[int, str] = {}

    async def open(self, session: aiohttp.ClientSession, i: int) -> aiohttp.ClientWebSocketResponse:
        key = nacl.signing.SigningKey.generate()
        ws = await session.ws_connect(self.url, autoping=True, max_msg_size=1 << 20)
        challenge = json.loads((await ws.receive(10)).data)
        sig = key.sign(auth_message(b64u_decode(challenge["nonce"]))).signature
        await ws.send_str(
            json.dumps(
                {"type": "auth", "pubkey": b64u_encode(bytes(key.verify_key)), "sig": b64u_encode(sig)}
            )
        )
        welcome = json.loads((await ws.receive(10)).data)
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"not welcomed: {welcome}")
        self.peer_ids[i] = welcome["peer"]
        return ws

    async def pair_up(
        self, a: aiohttp.ClientWebSocketResponse, b: aiohttp.ClientWebSocketResponse, k: int
    ) -> None:
        room = f"{k:032x}"
        for ws in (a, b):
            await ws.send_str(json.dumps({"type": "join", "room": room}))
            while json.loads((await ws.receive(10)).data).get("type") != "joined":
                pass
        # b's peer-joined notice reaches a; drained by the reader (ignored type)

    def signal(self, room_k: int, to: str, payload: str) -> str:
        return json.dumps({"type": "signal", "room": f"{room_k:032x}", "to": to, "payload": payload})

    @staticmethod
    def payload_of(frame: dict[str, Any], me: str) -> str | None:
        return frame.get("payload") if frame.get("type") == "signal" else None


class YWebrtc:
    name = "y-webrtc"

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.peer_ids: dict[int, str] = {}

    async def open(self, session: aiohttp.ClientSession, i: int) -> aiohttp.ClientWebSocketResponse:
        ws = await session.ws_connect(self.url, autoping=True, max_msg_size=1 << 20)
        self.peer_ids[i] = f"c{i}"
        await ws.send_str(json.dumps({"type": "subscribe", "topics": [f"held-{i}"]}))
        return ws

    async def pair_up(
        self, a: aiohttp.ClientWebSocketResponse, b: aiohttp.ClientWebSocketResponse, k: int
    ) -> None:
        for ws in (a, b):
            await ws.send_str(json.dumps({"type": "subscribe", "topics": [f"pair-{k}"]}))
        # no acknowledgement in this protocol: a ping/pong round trip orders the subscribe before use
        for ws in (a, b):
            await ws.send_str(json.dumps({"type": "ping"}))
            while json.loads((await ws.receive(10)).data).get("type") != "pong":
                pass

    def signal(self, room_k: int, to: str, payload: str) -> str:
        return json.dumps(
            {"type": "publish", "topic": f"pair-{room_k}", "data": {"to": to, "payload": payload}}
        )

    @staticmethod
    def payload_of(frame: dict[str, Any], me: str) -> str | None:
        if frame.get("type") != "publish":
            return None
        data = frame.get("data") or {}
        return data.get("payload") if data.get("to") == me else None  # skip the echo of our own publish


Proto = Ephemesh | YWebrtc


# -- the measurements ------------------------------------------------------------------------------


async def open_many(
    proto: Proto, session: aiohttp.ClientSession, count: int
) -> list[aiohttp.ClientWebSocketResponse]:
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    socks: list[aiohttp.ClientWebSocketResponse | None] = [None] * count

    async def one(i: int) -> None:
        async with sem:
            socks[i] = await proto.open(session, i)

    await asyncio.gather(*(one(i) for i in range(count)))
    return [s for s in socks if s is not None]


async def held(proto: Proto, server_pid: int, count: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        rss0 = rss_bytes(server_pid)
        t0 = time.perf_counter()
        socks = await open_many(proto, session, count)
        opened_s = time.perf_counter() - t0
        # every socket answers a round trip afterwards: the server still holds all of them
        probe = socks[:: max(1, len(socks) // 200)]
        for ws in probe:
            await ws.ping()
        rss1 = rss_bytes(server_pid)
        still_open = sum(1 for ws in socks if not ws.closed)
        for ws in socks:
            await ws.close()
    return {
        "requested": count,
        "held": still_open,
        "connect_s": round(opened_s, 2),
        "server_rss_before_mb": round(rss0 / 2**20, 1),
        "server_rss_after_mb": round(rss1 / 2**20, 1),
        "kb_per_connection": round((rss1 - rss0) / max(1, still_open) / 1024, 2),
    }


async def relay(
    proto: Proto, server_pid: int, pairs: int, seconds: float, payload_chars: int
) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        socks = await open_many(proto, session, 2 * pairs)
        for k in range(pairs):
            await proto.pair_up(socks[2 * k], socks[2 * k + 1], k)
        latencies: list[float] = []
        delivered = 0
        measuring = False
        stop = asyncio.Event()
        arrived = [asyncio.Event() for _ in socks]
        pad = "s" * payload_chars

        async def reader(i: int) -> None:
            nonlocal delivered
            me = proto.peer_ids[i]
            async for msg in socks[i]:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                p = proto.payload_of(json.loads(msg.data), me)
                if p is None:
                    continue
                if measuring:
                    latencies.append(time.perf_counter() - float(p.split("|", 1)[0]))
                    delivered += 1
                arrived[i ^ 1].set()  # the partner may send its next one

        async def sender(i: int) -> None:
            to = proto.peer_ids[i ^ 1]
            ws = socks[i]
            while not stop.is_set():
                arrived[i].clear()
                await ws.send_str(proto.signal(i // 2, to, f"{time.perf_counter()!r}|{pad}"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived[i].wait(), 5)

        readers = [asyncio.create_task(reader(i)) for i in range(len(socks))]
        senders = [asyncio.create_task(sender(i)) for i in range(len(socks))]
        warm = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.5, warm.set_result, None)  # let the loops reach steady state
        await warm
        measuring = True
        cpu_server0, cpu_gen0 = cpu_seconds(server_pid), time.process_time()
        t0 = time.perf_counter()
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(seconds, done.set_result, None)
        await done
        measuring = False
        elapsed = time.perf_counter() - t0
        n = delivered
        cpu_server = cpu_seconds(server_pid) - cpu_server0
        cpu_gen = time.process_time() - cpu_gen0
        stop.set()
        for t in senders:
            t.cancel()
        for ws in socks:
            await ws.close()
        for t in readers + senders:
            with contextlib.suppress(BaseException):
                await t
    return {
        "pairs": pairs,
        "payload_chars": payload_chars,
        "seconds": round(elapsed, 2),
        "signals_per_s": round(n / elapsed, 1),
        "server_cpu_share": round(cpu_server / elapsed, 2),
        "loadgen_cpu_share": round(cpu_gen / elapsed, 2),
        **{f"latency_{k}": v for k, v in summary_ms(latencies).items()},
    }


def ywebrtc_server(port_dir: Path) -> list[str]:
    return ["node", str(port_dir / "node_modules" / "y-webrtc" / "bin" / "server.js")]


@contextlib.contextmanager
def ywebrtc_proc(root: Path) -> Any:
    """Start y-webrtc's server on a free port (it takes ``PORT`` from the environment)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port)}
    proc = subprocess.Popen(
        ywebrtc_server(root), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Signaling server running on localhost: PORT"
        if "running" not in line:
            raise RuntimeError(f"y-webrtc server did not start: {line!r}")
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


async def run(
    connections: int, pairs: int, seconds: float, payload: int, ydir: Path | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with spawn_server([PY, "-m", "bench.sigserver", "--rate", "1000000"]) as sig:
        proto = Ephemesh(sig.port)
        out["ephemesh"] = {"relay": await relay(proto, sig.pid, pairs, seconds, payload)}
        out["ephemesh"]["held"] = await held(Ephemesh(sig.port), sig.pid, connections)
    print(f"sigcap ephemesh: {out['ephemesh']}")
    if (
        ydir is not None
        and (ydir / "node_modules" / "y-webrtc" / "bin" / "server.js").exists()
        and shutil.which("node")
    ):
        with ywebrtc_proc(ydir) as (proc, port):
            out["y-webrtc"] = {"relay": await relay(YWebrtc(port), proc.pid, pairs, seconds, payload)}
            out["y-webrtc"]["held"] = await held(YWebrtc(port), proc.pid, connections)
        print(f"sigcap y-webrtc: {out['y-webrtc']}")
    else:
        out["y-webrtc"] = None
        out["y_webrtc_note"] = f"y-webrtc not found under {ydir} (npm install y-webrtc there) or no node"
        print(out["y_webrtc_note"])
    return out


def in_fresh_netns(argv: list[str]) -> bool:
    """Re-run this module inside a lo-only netns (root only); True when that happened."""
    if os.environ.get("EPHB_IN_NETNS") or os.geteuid() != 0 or not shutil.which("ip"):
        return False
    if subprocess.run(["ip", "netns", "add", NETNS], capture_output=True).returncode != 0:
        return False
    try:
        subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
        env = {**os.environ, "EPHB_IN_NETNS": "1"}
        rc = subprocess.run(
            ["ip", "netns", "exec", NETNS, PY, "-m", "bench.sigcap", *argv], env=env
        ).returncode
        if rc != 0:
            raise SystemExit(rc)
        return True
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--payload", type=int, default=512, help="characters of opaque payload per signal")
    ap.add_argument("--ywebrtc", type=Path, default=YWEBRTC_DIR)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-netns", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_netns and in_fresh_netns(argv):
        return None
    raise_fd_limit()
    res = asyncio.run(run(args.connections, args.pairs, args.seconds, args.payload, args.ywebrtc))
    res["layout"] = "each server in its own process; one Python load-generator process; " + (
        "inside a fresh lo-only network namespace" if os.environ.get("EPHB_IN_NETNS") else "on 127.0.0.1"
    )
    write_result("sigcap", res, args.out)
    return res


if __name__ == "__main__":
    main()
