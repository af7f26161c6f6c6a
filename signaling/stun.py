"""A STUN Binding responder on UDP (RFC 8489 section 6.3.1 / RFC 5780's basic service, nothing more).

It tells a peer the address and port its packets come from (its server-reflexive address), which is all
two peers behind ordinary ("cone") NATs need to punch a direct path to each other. It is not TURN: it
relays nothing. coturn remains the production answer for TURN (and can answer STUN too).

Rules:
- The codec is aioice's (``aioice.stun``); nothing here packs or parses STUN attributes by hand.
- Only Binding *requests* with the RFC 5389 magic cookie and no more than ``MAX_DATAGRAM`` bytes get an
  answer: a Binding success response with XOR-MAPPED-ADDRESS (the source address of the request) and
  FINGERPRINT, the same transaction id, and nothing else (no SOFTWARE, no other attribute). Everything
  else (other methods or classes, bad lengths or fingerprints, garbage) is dropped and counted, never
  answered: the responder cannot be made to send more than it receives, nor to anyone but the sender.
- A global token bucket (``rate_per_s``, ``burst``) bounds the answers per second; a request beyond it is
  dropped and counted. There is no per-source state, so a flood cannot grow memory.
- Nothing is logged per datagram (the counters are in ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aioice import stun

log = logging.getLogger("ephemesh.signaling.stun")

MAGIC_COOKIE = 0x2112A442
MAX_DATAGRAM = 548  # RFC 8489: a request fits in the minimum IPv4 MTU; larger ones are not ours


@dataclass
class StunStats:
    answered: int = 0
    dropped_bad: int = 0
    dropped_rate: int = 0


class StunResponder(asyncio.DatagramProtocol):
    def __init__(
        self, rate_per_s: float = 500.0, burst: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stats = StunStats()
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def _take_token(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        response = self.answer(data, (str(addr[0]), int(addr[1])))
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def answer(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        """The response to send back to ``addr`` for datagram ``data``, or None to drop it."""
        if not 20 <= len(data) <= MAX_DATAGRAM or struct.unpack_from("!I", data, 4)[0] != MAGIC_COOKIE:
            self.stats.dropped_bad += 1
            return None
        try:
            request = stun.parse_message(data)
        except Exception:  # remote input: any parse failure is a drop
            self.stats.dropped_bad += 1
            return None
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            self.stats.dropped_bad += 1
            return None
        if not self._take_token():
            self.stats.dropped_rate += 1
            return None
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_fingerprint()
        self.stats.answered += 1
        return bytes(response)


async def start_stun(sock: socket.socket) -> tuple[asyncio.DatagramTransport, StunResponder]:
    """Answer STUN on the bound UDP socket ``sock`` (see :func:`bind_udp`)."""
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(StunResponder, sock=sock)


def bind_udp(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` (``port`` 0 = any), for a STUN port chosen before HTTP starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host or "0.0.0.0", port))  # noqa: S104
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
