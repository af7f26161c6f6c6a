"""Per-packet costs of aiortc's data channels, cut without changing what goes on the wire in a way any
SCTP stack (usrsctp in browsers, dcsctp) would not accept. Applied explicitly by :func:`apply` (the
RTC adapter calls it before it makes a connection), for the pinned versions only.

A 50 MB transfer is ~42,000 DATA packets each way of 1,189 bytes (aiortc keeps SCTP packets within the
minimum IPv6 path MTU, as it should); both processes were CPU-bound at ~250 µs per packet, most of it in
aiortc and aioice. What this changes (profiles and figures: docs/benchmarks.md, issue 15):

1. **Delayed SACK (RFC 4960 / RFC 9260 §6.2).** aiortc acknowledges every packet that carries DATA:
   one SACK packet back per DATA packet, which doubles the packets both ends encrypt, decrypt and
   parse. The RFC says a receiver SHOULD acknowledge at least every second packet and within 200 ms
   of an unacknowledged DATA chunk, and at once when it sees a gap, a duplicate, or a filled gap;
   usrsctp and dcsctp (Chromium) do exactly that (every 2nd packet, 200 ms). We do the same, with
   :data:`SACK_DELAY_S` for the timer. A FORWARD TSN and anything outside ESTABLISHED is acknowledged
   at once, as before. A SACK with no gap and no duplicate to report (nearly all of them) is built
   directly: the same 28 bytes aiortc's generic chunk serialization makes (:data:`PLAIN_SACK`).
2. **The T3 retransmission timer, restarted lazily.** aiortc cancels and re-creates its T3 timer
   handle on every SACK that acknowledges new data. We keep the deadline and let an earlier timer
   re-arm itself for it when it fires: the timer expires at the same moment as before.
3. **No empty DTLS write after each received record.** aiortc tries to flush OpenSSL's output after
   every received datagram; with nothing to send that is a failed read and an exception per packet.
   We skip it when OpenSSL's memory BIO is empty (``BIO_get_mem_data``).
4. **DTLS before STUN (RFC 7983 demultiplexing), datagrams read in batches.** aioice parses every
   received datagram as STUN first and hands it on when that raises; a datagram whose first byte is
   20-63 is DTLS, so it is handed on at once. And asyncio reads one datagram per readiness of the
   socket: a busy receiver went round the whole event loop (epoll, waking the DTLS task) per packet.
   After one, we read up to :data:`DRAIN` more that are already waiting.
5. **Fast paths for the common in-order chunk.** A DATA chunk that is the next TSN, with no gap or
   duplicate outstanding, only moves the cumulative TSN (aiortc sorts and filters its gap sets for
   every chunk); a chunk appended after every chunk held for reassembly that is not the last fragment
   of a message completes nothing, so reassembly is not scanned for it (aiortc scans from the start:
   quadratic in a message's fragments).
6. **A UDP receive buffer that holds a congestion window.** aioice asks for 256 KiB (``SO_RCVBUF``):
   about 110 full packets, while aiortc's window grows to the 1 MiB the peer advertises. When the
   receiving process is busy for a moment (a store commit, the event loop's other work) the kernel
   drops what does not fit, and each drop costs fast retransmissions (aiortc re-sends a lost chunk on
   every third SACK that reports it, so one drop often costs several) and a halved window. We ask for
   :data:`UDP_RECEIVE_BUFFER` (the kernel caps it at ``net.core.rmem_max``; it is a bound on what the
   kernel may queue for the socket, not memory taken up front).

7. **DTLS records straight between OpenSSL and the socket.** Once the handshake is done, a record is
   written and read with OpenSSL's own calls (``SSL_write``/``BIO_read``, ``BIO_write``/``SSL_read``) into
   one reused buffer instead of through pyOpenSSL's per-call wrappers, and goes to the nominated pair's
   UDP socket directly instead of through aioice's three coroutine layers (``Connection.send``,
   ``sendto``, ``StunProtocol.send_data``); a received datagram aioice already queued is taken without a
   coroutine chain. Any result that is not plain success goes through pyOpenSSL's error mapping and
   aiortc's handling, and a TURN-relayed pair (whose protocol wraps data) keeps aioice's path: the same
   bytes on the wire, the same exceptions and counters. :data:`DTLS_DIRECT` off measures what it buys.

8. **One-chunk packets parsed directly.** Nearly every packet of a transfer is one DATA chunk or one
   SACK chunk; for those the length, CRC32c and verification tag are checked as aiortc checks them and
   the one chunk is built as aiortc builds it, without ``parse_packet``'s general loop and the scan for an
   INIT. Bundles, damaged packets and every other chunk type take aiortc's path.

9. **An event when SCTP's outbound queue drains.** aiortc has none, so the files channel's pacer
   polled every millisecond and mostly woke to an empty queue (the wire idle meanwhile); after each
   ``_transmit`` a waiter registered by :func:`outbound_waiter` is woken once the queue is at or below its
   limit (the pacer keeps a timer as a bound, and polls when the tuning is not applied).

Versions: every patch reaches into private code. :func:`apply` patches only ``aiortc 1.16.0`` with
``aioice 0.13.0``; on anything else it logs a warning and leaves aiortc alone (the transfer still
works, only slower), and ``tests/peer/test_sctp_tuning.py`` fails so an upgrade is noticed.
"""

from __future__ import annotations

import asyncio
import logging
import struct as _struct
from collections.abc import Callable, Coroutine, Iterator
from struct import unpack_from as _unpack_from
from typing import Any

log = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"
SACK_DELAY_S = 0.05  # RFC 9260 §6.2: at most 200 ms (usrsctp and dcsctp use 200 ms)
SACK_EVERY = 2  # packets with DATA per SACK: the RFC's "at least every second packet"
UDP_RECEIVE_BUFFER = 2 << 20  # bytes: room for aiortc's 1 MiB receive window, with the kernel's overhead
DRAIN = 16  # datagrams read at once when the socket has more waiting (0: one per event-loop round)
MAX_DATAGRAM = 65536
DTLS_DIRECT = True  # patch 7 (bench/sctp_loop.py --no-dtls-direct measures what it buys)
PLAIN_SACK = True  # a SACK with nothing but the cumulative TSN and window is built directly
OUTBOUND_EVENT = True  # patch 9: the files channel's pacer is woken instead of polling
ONE_CHUNK = True  # patch 8 (bench/sctp_loop.py --no-one-chunk)
ENABLED = True  # bench/transfer.py --no-tuning turns it off to measure what it buys

_applied = False
_originals: dict[str, Any] = {}


def applied() -> bool:
    """Whether the patches are in (false on other aiortc/aioice versions than the pinned ones)."""
    return _applied


def versions_match() -> bool:
    import aioice
    import aiortc

    return aiortc.__version__ == AIORTC_VERSION and aioice.__version__ == AIOICE_VERSION


def apply() -> bool:
    """Patch aiortc/aioice (idempotent). Returns :func:`applied`."""
    global _applied
    if _applied:
        return True
    if not ENABLED:
        return False
    if not versions_match():
        import aioice
        import aiortc

        log.warning(
            "aiortc %s / aioice %s: SCTP tuning is for aiortc %s / aioice %s only, not applied"
            " (transfers work, at about half the speed)",
            aiortc.__version__,
            aioice.__version__,
            AIORTC_VERSION,
            AIOICE_VERSION,
        )
        return False
    _patch_sack()
    _patch_t3()
    _patch_dtls_write()
    _patch_stun_demux()
    _patch_in_order()
    _patch_receive_buffer()
    if DTLS_DIRECT and _pyopenssl_has_what_patch_7_uses():
        _patch_dtls_records()
    if ONE_CHUNK:
        _patch_one_chunk_packets()
    if OUTBOUND_EVENT:
        _patch_outbound_event()
    _applied = True
    return True


def revert() -> None:
    """Undo :func:`apply` (tests compare both behaviours)."""
    global _applied
    for key, original in _originals.items():
        cls, name = _targets()[key]
        setattr(cls, name, original)
    _originals.clear()
    import aioice.turn

    aioice.turn.UDP_SOCKET_BUFFER_SIZE = _default_buffer.pop() if _default_buffer else 262144
    _applied = False


def _targets() -> dict[str, tuple[type, str]]:
    from aioice.ice import StunProtocol
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcsctptransport import InboundStream, RTCSctpTransport

    return {
        "sack": (RTCSctpTransport, "_send_sack"),
        "fwd": (RTCSctpTransport, "_receive_forward_tsn_chunk"),
        "t3_start": (RTCSctpTransport, "_t3_start"),
        "t3_restart": (RTCSctpTransport, "_t3_restart"),
        "dtls_write": (RTCDtlsTransport, "_write_ssl"),
        "stun_rx": (StunProtocol, "datagram_received"),
        "dtls_send": (RTCDtlsTransport, "_send_data"),
        "handle_data": (RTCSctpTransport, "_handle_data"),
        "transmit": (RTCSctpTransport, "_transmit"),
        "dtls_recv": (RTCDtlsTransport, "_recv_next"),
        "mark": (RTCSctpTransport, "_mark_received"),
        "add": (InboundStream, "add_chunk"),
        "pop": (InboundStream, "pop_messages"),
    }


def _replace(key: str, new: Callable[..., Any]) -> Any:
    cls, name = _targets()[key]
    original = getattr(cls, name)
    _originals[key] = original
    setattr(cls, name, new)
    return original


# --- 1. delayed SACK ------------------------------------------------------------------------------------


def _patch_sack() -> None:
    from aiortc.rtcsctptransport import RTCSctpTransport

    established = RTCSctpTransport.State.ESTABLISHED
    send_sack: Callable[[Any], Coroutine[Any, Any, None]] = (
        _originals.get("sack") or RTCSctpTransport._send_sack
    )
    receive_forward_tsn = RTCSctpTransport._receive_forward_tsn_chunk

    def _done(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # a SACK that could not go out (the connection closed): nothing to do

    # One timer per association, never cancelled: a SACK sent meanwhile clears the deadline, and a timer
    # that fires before the current deadline re-arms itself for it (creating and cancelling a timer
    # for every second packet was its own cost).
    def _on_timer(sctp: Any) -> None:
        d = sctp.__dict__
        due = d.get("_eph_sack_due")
        if due is None or sctp._association_state != established:
            d["_eph_sack_timer"] = None
        elif sctp._loop.time() < due - 0.001:
            d["_eph_sack_timer"] = sctp._loop.call_at(due, _on_timer, sctp)
        else:
            d["_eph_sack_timer"] = None
            if sctp._sack_needed:
                asyncio.ensure_future(_send_now(sctp)).add_done_callback(_done)

    async def _send_now(sctp: Any) -> None:
        d = sctp.__dict__
        d["_eph_sack_due"] = None
        d["_eph_sack_packets"] = 0
        d["_eph_sack_gaps"] = bool(sctp._sack_misordered)
        d["_eph_sack_now"] = False
        if PLAIN_SACK and not sctp._sack_misordered and not sctp._sack_duplicates:
            await _send_plain_sack(sctp)
        else:
            await send_sack(sctp)

    async def _send_sack(self: Any) -> None:
        """Called by aiortc once per received packet that needs acknowledging (``_handle_data``)."""
        d = self.__dict__
        if (
            self._association_state == established
            and not d.get("_eph_sack_now")
            and not self._sack_misordered  # a gap: at once (§6.7)
            and not self._sack_duplicates  # a duplicate: at once (§6.2)
            and not d.get("_eph_sack_gaps")  # the last SACK reported gaps: this one may fill them
        ):
            packets = d.get("_eph_sack_packets", 0) + 1
            if packets < SACK_EVERY:
                d["_eph_sack_packets"] = packets
                if d.get("_eph_sack_due") is None:
                    due = d["_eph_sack_due"] = self._loop.time() + SACK_DELAY_S
                    if d.get("_eph_sack_timer") is None:
                        d["_eph_sack_timer"] = self._loop.call_at(due, _on_timer, self)
                return
        await _send_now(self)

    async def _receive_forward_tsn_chunk(self: Any, chunk: Any) -> None:
        self.__dict__["_eph_sack_now"] = True
        await receive_forward_tsn(self, chunk)

    _replace("sack", _send_sack)
    _replace("fwd", _receive_forward_tsn_chunk)


_SACK_HEADER = _struct.Struct("!HHL")
_SACK_BODY = _struct.Struct("!BBHLLHH")
_CRC_LE = _struct.Struct("<L")


async def _send_plain_sack(sctp: Any) -> None:
    """aiortc's ``_send_sack`` when there is no gap and no duplicate to report: the same 28 bytes
    (common header, CRC32c, a SACK chunk with no gap blocks and no duplicate TSNs), without building a
    ``SackChunk`` and serializing it through the generic path."""
    header = _SACK_HEADER.pack(sctp._local_port, sctp._remote_port, sctp._remote_verification_tag)
    body = _SACK_BODY.pack(3, 0, 16, sctp._last_received_tsn, max(0, sctp._advertised_rwnd), 0, 0)
    crc = _crc32c()(header + b"\x00\x00\x00\x00" + body)
    await sctp._RTCSctpTransport__transport._send_data(header + _CRC_LE.pack(crc) + body)
    sctp._sack_duplicates.clear()
    sctp._sack_needed = False


# --- 2. lazy T3 restart ---------------------------------------------------------------------------------


def _patch_t3() -> None:
    from aiortc.rtcsctptransport import RTCSctpTransport

    t3_expired = RTCSctpTransport._t3_expired

    def _fire(sctp: Any) -> None:
        loop = sctp._loop
        when = sctp.__dict__.get("_eph_t3_when", 0.0)
        if loop.time() < when - 0.001:  # restarted since this timer was set: wait for the new deadline
            sctp._t3_handle = loop.call_at(when, _fire, sctp)
            return
        t3_expired(sctp)

    def _t3_start(self: Any) -> None:
        assert self._t3_handle is None
        when = self._loop.time() + self._rto
        self.__dict__["_eph_t3_when"] = when
        self._t3_handle = self._loop.call_at(when, _fire, self)

    def _t3_restart(self: Any) -> None:
        when = self._loop.time() + self._rto
        self.__dict__["_eph_t3_when"] = when
        handle = self._t3_handle
        if handle is not None and handle.when() <= when:
            return  # it fires first and re-arms itself for ``when``
        if handle is not None:
            handle.cancel()
        self._t3_handle = self._loop.call_at(when, _fire, self)

    _replace("t3_start", _t3_start)
    _replace("t3_restart", _t3_restart)


# --- 3. no empty DTLS write -----------------------------------------------------------------------------


def _patch_dtls_write() -> None:
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from OpenSSL.SSL import _ffi, _lib  # type: ignore[attr-defined]

    write_ssl = RTCDtlsTransport._write_ssl
    out = _ffi.new("char**")

    async def _write_ssl(self: Any) -> None:
        bio = getattr(self._ssl, "_from_ssl", None)
        if bio is not None and _lib.BIO_get_mem_data(bio, out) <= 0:
            return  # OpenSSL has nothing for the wire
        await write_ssl(self)

    _replace("dtls_write", _write_ssl)


# --- 4. DTLS before STUN --------------------------------------------------------------------------------


def _patch_stun_demux() -> None:
    from aioice.ice import StunProtocol

    datagram_received = StunProtocol.datagram_received

    def _dispatch(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data and 19 < data[0] < 64:  # RFC 7983: DTLS
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            datagram_received(self, data, addr)

    def _datagram_received(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
        _dispatch(self, data, addr)
        # asyncio reads one datagram per readiness of the socket, then goes round the event loop
        # (epoll, the DTLS task woken, suspended again): read what else is waiting now, a bounded batch
        transport = self.transport
        sock = getattr(transport, "_sock", None)  # asyncio's selector transport (uvloop has none)
        if not DRAIN or sock is None:
            return
        for _ in range(DRAIN):
            if transport.is_closing():
                return
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            _dispatch(self, data, addr)

    _replace("stun_rx", _datagram_received)


# --- 5. in-order fast paths ----------------------------------------------------------------------------


def _patch_in_order() -> None:
    from aiortc.rtcsctptransport import (
        SCTP_DATA_LAST_FRAG,
        SCTP_TSN_MODULO,
        InboundStream,
        RTCSctpTransport,
    )
    from aiortc.utils import uint32_gt

    mark_received = RTCSctpTransport._mark_received
    add_chunk = InboundStream.add_chunk
    pop_messages = InboundStream.pop_messages

    def _mark_received(self: Any, tsn: int) -> bool:
        last = self._last_received_tsn
        if (
            last is not None
            and tsn == (last + 1) % SCTP_TSN_MODULO
            and not self._sack_misordered
            and not self._sack_duplicates
        ):
            self._last_received_tsn = tsn  # what aiortc's sort-and-filter comes to in this case
            return False
        return bool(mark_received(self, tsn))

    def _add_chunk(self: Any, chunk: Any) -> None:
        tail = not self.reassembly or uint32_gt(chunk.tsn, self.reassembly[-1].tsn)
        add_chunk(self, chunk)
        # nothing was deliverable before (aiortc pops after every chunk); a new last chunk that ends
        # no message cannot complete one
        self.__dict__["_eph_nothing"] = tail and not chunk.flags & SCTP_DATA_LAST_FRAG

    def _pop_messages(self: Any) -> Iterator[tuple[int, int, bytes]]:
        if self.__dict__.pop("_eph_nothing", False):
            return iter(())
        return iter(pop_messages(self))

    _replace("mark", _mark_received)
    _replace("add", _add_chunk)
    _replace("pop", _pop_messages)


# --- 7. DTLS records straight between OpenSSL and the socket ----------------------------------------------


def _pyopenssl_has_what_patch_7_uses() -> bool:
    """Patch 7 calls pyOpenSSL's error mapping (private methods); another pyOpenSSL without them keeps
    aiortc's DTLS path (tests/peer/test_sctp_tuning.py checks they are there)."""
    from OpenSSL import SSL

    ok = all(hasattr(SSL.Connection, name) for name in ("_raise_ssl_error", "_handle_bio_errors"))
    if not ok:
        log.warning("pyOpenSSL without the methods sctp_tuning's DTLS patch uses: not applied")
    return ok


def _patch_dtls_records() -> None:
    """After the handshake, a record goes between OpenSSL and the UDP socket through raw calls instead of
    pyOpenSSL's wrappers and aioice's three coroutine layers: ``SSL_write``/``BIO_read`` then the nominated
    pair's ``sendto``; a datagram already queued by aioice is taken without suspending, then
    ``BIO_write``/``SSL_read``. Every result that is not plain success goes through pyOpenSSL's own error
    mapping, and anything unusual (a TURN-relayed pair, no nominated pair, SRTP) through aiortc's code:
    the same records, the same exceptions, the same counters."""
    import pylibsrtp
    from aioice.ice import StunProtocol
    from aiortc import clock
    from aiortc.rtcdtlstransport import RTCDtlsTransport, State
    from aiortc.rtp import is_rtcp
    from OpenSSL import SSL
    from OpenSSL.SSL import _ffi, _lib  # type: ignore[attr-defined]

    recv_next = RTCDtlsTransport._recv_next
    send_data = RTCDtlsTransport._send_data
    connected = State.CONNECTED
    buf = _ffi.new("char[]", 1500)  # one at a time: the bytes are copied out before any await
    out = _ffi.new("char**")
    ssl_write, ssl_read, bio_read, bio_write = _lib.SSL_write, _lib.SSL_read, _lib.BIO_read, _lib.BIO_write
    mem_data = _lib.BIO_get_mem_data
    from_buffer, ffi_buffer = _ffi.from_buffer, _ffi.buffer

    def _direct(dtls: Any) -> Any:
        """The nominated pair's UDP transport and address, when it is a plain host/srflx pair."""
        conn = getattr(dtls.transport, "_connection", None)
        pair = conn._nominated.get(1) if conn is not None else None
        if pair is None or type(pair.protocol) is not StunProtocol or pair.protocol.transport is None:
            return None
        return pair.protocol.transport, pair.remote_addr

    async def _flush(self: Any, conn: Any) -> None:
        """aiortc's ``_write_ssl`` (one record out of the BIO), with the direct send."""
        bio = conn._from_ssl
        if mem_data(bio, out) <= 0:
            return
        n = bio_read(bio, buf, 1500)
        if n <= 0:
            return  # aiortc: SSL.Error -> nothing to send
        data = ffi_buffer(buf, n)[:]
        direct = _direct(self)
        if direct is None:
            await self.transport._send(data)
        else:
            direct[0].sendto(data, direct[1])
        self._RTCDtlsTransport__tx_bytes += n
        self._RTCDtlsTransport__tx_packets += 1

    async def _send_data(self: Any, data: bytes) -> None:
        conn = self._ssl
        if self._state != connected or getattr(conn, "_from_ssl", None) is None:
            await send_data(self, data)
            return
        with from_buffer(data) as cdata:
            result = ssl_write(conn._ssl, cdata, len(data))
        if result <= 0:
            conn._raise_ssl_error(conn._ssl, result)  # raises what pyOpenSSL's send raises
        await _flush(self, conn)

    async def _recv_next(self: Any) -> None:
        conn = self._ssl
        ice: Any = getattr(self.transport, "_connection", None)
        if (
            not self._RTCDtlsTransport__handshake_done  # aiortc may still need its DTLS timeout
            or ice is None
            or not ice._nominated  # aiortc raises "not connected"
            or getattr(conn, "_into_ssl", None) is None
        ):
            await recv_next(self)
            return
        item = ice._queue.get_nowait() if ice._queue.qsize() else await ice._queue.get()
        if item is None:
            raise ConnectionError("Connection lost while receiving data")
        data = item[0]
        self._RTCDtlsTransport__rx_bytes += len(data)
        self._RTCDtlsTransport__rx_packets += 1
        if not 19 < data[0] < 64:
            await _not_dtls(self, data)
            return
        with from_buffer(data) as cdata:
            result = bio_write(conn._into_ssl, cdata, len(data))
        if result <= 0:
            conn._handle_bio_errors(conn._into_ssl, result)
        n = ssl_read(conn._ssl, buf, 1500)
        payload: bytes | None
        if n > 0:
            payload = ffi_buffer(buf, n)[:]
        else:
            try:
                conn._raise_ssl_error(conn._ssl, n)
                payload = b""
            except SSL.ZeroReturnError:
                payload = None
            except SSL.Error:
                payload = b""
        await _flush(self, conn)
        if payload is None:
            raise ConnectionError
        if payload and self._data_receiver:
            await self._data_receiver._handle_data(payload)

    async def _not_dtls(self: Any, data: bytes) -> None:
        """aiortc's branch for a datagram that is not DTLS: SRTP/SRTCP (we carry no media), else nothing."""
        if 127 < data[0] < 192 and self._rx_srtp:
            arrival_time_ms = clock.current_ms()
            try:
                if is_rtcp(data):
                    await self._handle_rtcp_data(self._rx_srtp.unprotect_rtcp(data))
                else:
                    await self._handle_rtp_data(
                        self._rx_srtp.unprotect(data), arrival_time_ms=arrival_time_ms
                    )
            except pylibsrtp.Error as exc:
                log.debug("SRTP unprotect failed: %s", exc)

    _replace("dtls_send", _send_data)
    _replace("dtls_recv", _recv_next)


# --- 8. one-chunk packets parsed directly ---------------------------------------------------------------


def _patch_one_chunk_packets() -> None:
    """Nearly every packet of a transfer is one DATA chunk (the sender's) or one SACK chunk (the
    receiver's). aiortc's ``parse_packet`` loops over chunks, slices each and looks up its class, and
    ``_handle_data`` scans the list for an INIT; for a packet that is exactly one DATA or SACK chunk we
    check what ``parse_packet`` checks (length, CRC32c, then the verification tag as ``_handle_data``
    does) and build the one chunk the same way. Every other packet goes to aiortc's code."""
    from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport, SackChunk

    handle_data = RTCSctpTransport._handle_data
    crc32c = _crc32c()
    zero = b"\x00\x00\x00\x00"
    classes = {DataChunk.type: (DataChunk, 16), SackChunk.type: (SackChunk, 16)}  # type, shortest chunk

    async def _handle_data(self: Any, data: bytes) -> None:
        n = len(data)
        kind = classes.get(data[12]) if n >= 28 else None
        if kind is not None:
            length = (data[14] << 8) | data[15]
            if kind[1] <= length and 12 + length <= n < 16 + length:  # one chunk, then < 4 bytes of padding
                if _unpack_from("<L", data, 8)[0] != crc32c(data[0:8] + zero + data[12:]):
                    return  # aiortc: parse_packet raises ValueError, the packet is dropped
                if _unpack_from("!L", data, 4)[0] != self._local_verification_tag:
                    return  # aiortc: "Bad verification tag", dropped
                await self._receive_chunk(kind[0](flags=data[13], body=data[16 : 12 + length]))
                if self._sack_needed:
                    await self._send_sack()
                return
        await handle_data(self, data)

    _replace("handle_data", _handle_data)


def _crc32c() -> Callable[[bytes], int]:
    from aiortc import rtcsctptransport

    return rtcsctptransport.crc32c  # type: ignore[attr-defined,no-any-return]


# --- 9. an event when SCTP's outbound queue drains --------------------------------------------------------


def _patch_outbound_event() -> None:
    """aiortc signals nothing when its outbound queue (chunks not yet on the wire) drains, so the files
    channel's pacer polled it every millisecond, and in 72% of the polls of a 50 MB transfer it woke to
    an empty queue: the wire had nothing to send meanwhile. After each ``_transmit`` (the only place
    chunks leave that queue for the wire) a waiter registered with :func:`outbound_waiter` is woken once
    the queue holds at most its limit."""
    from aiortc.rtcsctptransport import RTCSctpTransport

    transmit = RTCSctpTransport._transmit

    async def _transmit(self: Any) -> None:
        await transmit(self)
        waiter = self.__dict__.get("_eph_outbound_waiter")
        if waiter is not None and len(self._outbound_queue) <= waiter[0]:
            self.__dict__["_eph_outbound_waiter"] = None
            if not waiter[1].done():
                waiter[1].set_result(None)

    _replace("transmit", _transmit)


def outbound_waiter(sctp: Any, limit: int) -> asyncio.Future[None] | None:
    """A future done once ``sctp``'s outbound queue holds at most ``limit`` chunks (checked after each
    transmission), or None when the tuning is not applied (then poll)."""
    if not _applied or "transmit" not in _originals or sctp is None:
        return None
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    old = sctp.__dict__.get("_eph_outbound_waiter")
    if old is not None and not old[1].done():
        old[1].set_result(None)  # one waiter per association: the earlier one re-checks
    sctp.__dict__["_eph_outbound_waiter"] = (limit, fut)
    return fut


# --- 6. UDP receive buffer -----------------------------------------------------------------------------

_default_buffer: list[int] = []


def _patch_receive_buffer() -> None:
    import aioice.turn

    # aioice's host sockets (aioice/ice.py) and TURN sockets (aioice/turn.py) read this at bind time
    _default_buffer.append(aioice.turn.UDP_SOCKET_BUFFER_SIZE)
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = max(UDP_RECEIVE_BUFFER, aioice.turn.UDP_SOCKET_BUFFER_SIZE)


__all__ = [
    "AIOICE_VERSION",
    "AIORTC_VERSION",
    "SACK_DELAY_S",
    "applied",
    "apply",
    "outbound_waiter",
    "revert",
]
