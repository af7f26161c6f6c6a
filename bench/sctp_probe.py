"""An opt-in probe for transfer stalls (``bench/transfer.py --probe``): what SCTP and the file engine did
when, in one process. Installed before :mod:`peer.net.sctp_tuning` applies (it captures aiortc's methods
when it applies, so wrapping later would miss what it wraps), it counts and timestamps:

- T3 retransmission-timer expiries (with the RTO, outstanding chunks, gap-acknowledged chunks, cwnd);
- fast retransmits (a SACK that made aiortc enter fast recovery) and every DATA chunk sent again;
- SACKs sent and received with gap reports or duplicate TSNs;
- the file engine's requests re-queued (request timeout, NONE/BUSY) and its retry timer;
- event-loop lag (a 10 ms ticker that records every tick later than :data:`LAG_S`), which catches a
  process blocked on I/O (an fsync) rather than on SCTP;
- gaps in delivery: the longest pauses between DATA chunks received, and between new DATA chunks sent;
- the host's UDP ``RcvbufErrors`` (kernel drops: every socket on the machine) at start and end.

:func:`report` returns it as JSON-able data; times are ``loop.time()`` seconds (one clock for both
processes on Linux: CLOCK_MONOTONIC).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LAG_S = 0.1
GAP_S = 0.3
SAMPLE_S = 0.25
SLOW_S = 0.05
MAX_EVENTS = 2000

_events: list[tuple[float, str, dict[str, Any]]] = []
_counts: dict[str, int] = {}
_gaps: dict[str, list[tuple[float, float]]] = {"rx": [], "tx": []}
_last: dict[str, float] = {}
_n = {"rx": 0, "tx": 0}
_blocked = [0.0]  # seconds spent in store and blob commits (the event loop blocked on SQLite)
# time, CPU s, DATA chunks received, sent, host busy and all jiffies, seconds blocked in commits
_timeline: list[tuple[float, float, int, int, int, int, float]] = []
_snmp0: dict[str, int] = {}
_installed = False


def _now() -> float:
    return time.monotonic()


def _event(kind: str, **info: Any) -> None:
    _counts[kind] = _counts.get(kind, 0) + 1
    if len(_events) < MAX_EVENTS:
        _events.append((_now(), kind, info))


def _tick(kind: str) -> None:
    _n[kind] += 1
    now = _now()
    last = _last.get(kind)
    _last[kind] = now
    if last is not None and now - last > GAP_S:
        _gaps[kind].append((round(last, 3), round(now - last, 3)))


def udp_snmp() -> dict[str, int]:
    try:
        text = Path("/proc/net/snmp").read_text()
        lines = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    except OSError:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)}


def install() -> None:
    """Wrap aiortc and the file engine (idempotent). Call before any connection exists."""
    global _installed
    if _installed:
        return
    _installed = True
    from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport, SackChunk

    from peer.core.files_transfer import Transfers
    from peer.net import sctp_tuning

    assert not sctp_tuning.applied(), "install the probe before sctp_tuning applies"
    _snmp0.update(udp_snmp())

    t3_expired = RTCSctpTransport._t3_expired

    def _t3(self: Any) -> None:
        q = self._sent_queue
        _event(
            "t3_expired",
            rto=self._rto,
            outstanding=len(q),
            gap_acked=sum(1 for c in q if c._acked),
            cwnd=self._cwnd,
            flight=self._flight_size,
            first_tsn=q[0].tsn if q else None,
            first_sent=q[0]._sent_count if q else None,
        )
        t3_expired(self)

    RTCSctpTransport._t3_expired = _t3  # type: ignore[method-assign]

    send_chunk = RTCSctpTransport._send_chunk

    async def _send_chunk(self: Any, chunk: Any) -> None:
        if isinstance(chunk, DataChunk):
            if chunk._sent_count > 1:
                _event("retransmit", tsn=chunk.tsn, n=chunk._sent_count, acked=chunk._acked)
            else:
                _tick("tx")
        elif isinstance(chunk, SackChunk):
            _counts["sack_sent"] = _counts.get("sack_sent", 0) + 1
            if chunk.gaps:
                _counts["sack_sent_gaps"] = _counts.get("sack_sent_gaps", 0) + 1
            if chunk.duplicates:
                _event("sack_sent_dups", n=len(chunk.duplicates), gaps=len(chunk.gaps))
        await send_chunk(self, chunk)

    RTCSctpTransport._send_chunk = _send_chunk  # type: ignore[method-assign]

    plain_sack = sctp_tuning._send_plain_sack  # a SACK with no gap or duplicate skips _send_chunk

    async def _send_plain_sack(sctp: Any) -> None:
        _counts["sack_sent"] = _counts.get("sack_sent", 0) + 1
        await plain_sack(sctp)

    sctp_tuning._send_plain_sack = _send_plain_sack

    receive_sack = RTCSctpTransport._receive_sack_chunk

    async def _receive_sack(self: Any, chunk: Any) -> None:
        before = self._fast_recovery_exit
        q = len(self._sent_queue)
        _counts["sent_queue_sum"] = _counts.get("sent_queue_sum", 0) + q
        _counts["sent_queue_max"] = max(_counts.get("sent_queue_max", 0), q)
        _counts["sack_rx"] = _counts.get("sack_rx", 0) + 1
        if chunk.gaps:
            _counts["sack_rx_gaps"] = _counts.get("sack_rx_gaps", 0) + 1
        if chunk.duplicates:
            _counts["sack_rx_dups"] = _counts.get("sack_rx_dups", 0) + len(chunk.duplicates)
        await receive_sack(self, chunk)
        if before is None and self._fast_recovery_exit is not None:
            _event("fast_recovery", cwnd=self._cwnd, outstanding=len(self._sent_queue))

    RTCSctpTransport._receive_sack_chunk = _receive_sack  # type: ignore[method-assign]

    receive_data = RTCSctpTransport._receive_data_chunk

    async def _receive_data(self: Any, chunk: Any) -> None:
        _tick("rx")
        await receive_data(self, chunk)

    RTCSctpTransport._receive_data_chunk = _receive_data  # type: ignore[method-assign]

    requeue = Transfers._requeue

    def _requeue(self: Any, key: tuple[str, int]) -> None:
        entry = self._inflight.get(key)
        _event("file_requeue", deadline=entry[2] if entry else None)
        requeue(self, key)

    Transfers._requeue = _requeue  # type: ignore[method-assign]

    handle_timer = Transfers.handle_timer

    def _handle_timer(self: Any, now: int) -> Any:
        retry = [d.file for d in self._downloads.values() if d.retry_at is not None and d.retry_at <= now]
        if retry:
            _event("file_retry", files=len(retry))
        return handle_timer(self, now)

    Transfers.handle_timer = _handle_timer  # type: ignore[method-assign]

    from peer.net import fileschannel
    from peer.net.transport import TransportClosed

    async def _files_send(self: Any, data: bytes) -> None:
        """FilesLink.send as it is, counting the pacer's waits and those that ended with an empty SCTP
        outbound queue (the wire may have gone idle meanwhile)."""
        if self.closed or self._channel.readyState != "open":
            raise TransportClosed("files channel closed")
        while fileschannel.PACING:
            if self._channel.bufferedAmount > 0:
                self._low.clear()
                await self._low.wait()
            elif self._outbound is not None and self._outbound() > fileschannel.OUTBOUND_LIMIT:
                await self._outbound_drained()
                _counts["pacer_polls"] = _counts.get("pacer_polls", 0) + 1
                if self._outbound() == 0:
                    _counts["pacer_woke_to_empty"] = _counts.get("pacer_woke_to_empty", 0) + 1
            else:
                break
            if self.closed:
                raise TransportClosed("files channel closed")
        self._channel.send(data)

    fileschannel.FilesLink.send = _files_send  # type: ignore[method-assign]

    from peer.store.blobs import BlobStore
    from peer.store.sqlite import Store

    tx = Store._tx

    @contextlib.contextmanager
    def _tx(self: Any) -> Iterator[Any]:
        t0, c0 = _now(), time.process_time()
        with tx(self) as db:
            yield db
        _slow("store_commit", _now() - t0, time.process_time() - c0)

    Store._tx = _tx  # type: ignore[method-assign]

    insert = BlobStore._insert

    def _insert(self: Any, rows: Any) -> None:
        t0, c0 = _now(), time.process_time()
        insert(self, rows)
        _slow("blob_commit", _now() - t0, time.process_time() - c0)

    BlobStore._insert = _insert  # type: ignore[method-assign]


def _slow(kind: str, secs: float, cpu: float) -> None:
    _blocked[0] += secs
    _counts[kind + "_ms"] = _counts.get(kind + "_ms", 0) + round(secs * 1000)
    _counts[kind + "_cpu_ms"] = _counts.get(kind + "_cpu_ms", 0) + round(cpu * 1000)
    _counts[kind + "s"] = _counts.get(kind + "s", 0) + 1
    if secs > SLOW_S:
        _event("slow_" + kind, ms=round(secs * 1000, 1))


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


async def lag_ticker() -> None:
    """Record event-loop lag and, every :data:`SAMPLE_S`, a timeline sample (own CPU, DATA chunks
    received and sent, the host's CPU): run as a task for as long as the measurement lasts."""
    period = 0.01
    next_sample = 0.0
    while True:
        t0 = _now()
        await asyncio.sleep(period)
        now = _now()
        late = now - t0 - period
        if late > LAG_S:
            _event("loop_lag", late=round(late, 3))
        if now >= next_sample:
            next_sample = now + SAMPLE_S
            _timeline.append((now, time.process_time(), _n["rx"], _n["tx"], *_host_cpu(), _blocked[0]))


def report(t0: float | None = None) -> dict[str, Any]:
    base = t0 or 0.0
    snmp = udp_snmp()
    return {
        "counts": dict(_counts),
        "events": [(round(t - base, 3), k, i) for t, k, i in _events],
        "gaps": {k: [(round(s - base, 3), d) for s, d in v] for k, v in _gaps.items()},
        "timeline": [(round(t - base, 3), round(c, 3), *rest) for t, c, *rest in _timeline],
        "udp_rcvbuf_errors": snmp.get("RcvbufErrors", 0) - _snmp0.get("RcvbufErrors", 0),
        "udp_in_errors": snmp.get("InErrors", 0) - _snmp0.get("InErrors", 0),
    }
