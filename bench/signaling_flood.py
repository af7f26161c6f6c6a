"""Server RSS under "readers that never read" (issue 13, item 10): 10 non-readers, 30 senders each
within the default rate limit (3 bursts of 96 signals of 60 kB, spread over the 10). Loopback only.

Run: ``.venv/bin/python -m bench.signaling_flood`` (starts ``signaling.app.run`` in a child process on
a free port and prints its RSS before, at the peak and after the flood).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys

import aiohttp
import nacl.signing

from signaling.protocol import auth_message, b64u_decode, b64u_encode, peer_id_from_public_key

ROOM = "0" * 31 + "1"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _peer(session: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await session.ws_connect(url, max_msg_size=0)
    challenge = json.loads((await ws.receive()).data)
    key = nacl.signing.SigningKey.generate()
    pub = bytes(key.verify_key)
    sig = key.sign(auth_message(b64u_decode(challenge["nonce"]))).signature
    await ws.send_str(json.dumps({"type": "auth", "pubkey": b64u_encode(pub), "sig": b64u_encode(sig)}))
    await ws.receive()
    await ws.send_str(json.dumps({"type": "join", "room": ROOM}))
    await ws.receive()
    return ws, peer_id_from_public_key(pub)


async def _flood(port: int, pid: int) -> None:
    url = f"http://127.0.0.1:{port}/ws"
    async with aiohttp.ClientSession() as session:
        stuck = [await _peer(session, url) for _ in range(10)]
        senders = [await _peer(session, url) for _ in range(30)]
        payload = "p" * 60_000
        base = peak = _rss_mb(pid)
        for _round in range(3):
            for ws, _ in senders:
                for i in range(96):
                    frame = {"type": "signal", "room": ROOM, "to": stuck[i % 10][1], "payload": payload}
                    with contextlib.suppress(aiohttp.ClientError):
                        if not ws.closed:
                            await ws.send_str(json.dumps(frame))
                peak = max(peak, _rss_mb(pid))
            for _ in range(42):  # the token buckets refill (a benchmark's pacing, not synchronisation)
                await asyncio.sleep(0.05)
                peak = max(peak, _rss_mb(pid))
        print(f"server RSS before {base:.0f} MB, peak {peak:.0f} MB, after {_rss_mb(pid):.0f} MB")
        for ws, _ in stuck + senders:
            await ws.close()


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from signaling.app import run; run(port={port})"
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    try:
        assert child.stderr is not None
        while b"Running on" not in child.stderr.readline():
            pass
        asyncio.run(_flood(port, child.pid))
    finally:
        child.terminate()
        child.wait(10)


if __name__ == "__main__":
    main()
