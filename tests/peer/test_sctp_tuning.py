"""peer/net/sctp_tuning.py on real aiortc connections (two peers in this process, real UDP on the host's
addresses): it is applied for the pinned aiortc/aioice (an upgrade fails here first), a receiver
acknowledges every second packet instead of every packet, a lone packet is still acknowledged
promptly, and a lost chunk is still retransmitted by the (lazily restarted) T3 timer."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aioice
import aiortc
import pytest
from aiortc.rtcsctptransport import RTCSctpTransport

from peer.net import sctp_tuning
from peer.net.rtc import RtcTransport, rtc_pair
from tests.waiting import poll

WAIT = 20.0


def _packets(t: RtcTransport) -> tuple[int, int]:
    """DTLS records (one SCTP packet each) sent and received by ``t``'s connection."""
    dtls: Any = t._pc.sctp.transport  # type: ignore[union-attr]
    return dtls._RTCDtlsTransport__tx_packets, dtls._RTCDtlsTransport__rx_packets


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RtcTransport, RtcTransport]]:
    sctp_tuning.apply()
    a, b = await rtc_pair("a" * 8, "b" * 8)
    assert a.files is not None
    assert b.files is not None
    assert await a.files.wait_open()
    assert await b.files.wait_open()
    yield a, b
    await a.close(0.5)
    await b.close(0.5)
    sctp_tuning.apply()


def test_applied_for_the_pinned_aiortc_and_aioice() -> None:
    """Fails on an aiortc or aioice upgrade: the patches reach into private code, re-check them."""
    assert aiortc.__version__ == sctp_tuning.AIORTC_VERSION
    assert aioice.__version__ == sctp_tuning.AIOICE_VERSION
    assert sctp_tuning.apply()
    assert sctp_tuning.applied()
    assert sctp_tuning._pyopenssl_has_what_patch_7_uses()  # a pyOpenSSL upgrade that drops them fails here
    assert "dtls_recv" in sctp_tuning._originals


async def _bulk(a: RtcTransport, b: RtcTransport, frames: int) -> tuple[int, int]:
    """Send ``frames`` 16 KiB frames a -> b on the files channel; returns (data packets b received,
    packets b sent back) over the transfer. Checks every frame arrived intact and in order."""
    assert a.files is not None
    assert b.files is not None
    rx0, tx0 = _packets(b)[1], _packets(b)[0]
    got: list[bytes] = []

    async def receive() -> None:
        assert b.files is not None
        async for frame in b.files:
            got.append(frame)
            if len(got) == frames:
                return

    task = asyncio.ensure_future(receive())
    sent = [hashlib.sha256(i.to_bytes(4, "big")).digest() * 512 for i in range(frames)]
    for frame in sent:
        await a.files.send(frame)
    async with asyncio.timeout(WAIT):
        await task
    assert got == sent
    sctp: Any = a._pc.sctp
    await poll(lambda: not sctp._sent_queue, WAIT)  # everything acknowledged (no event for it)
    return _packets(b)[1] - rx0, _packets(b)[0] - tx0


async def test_a_receiver_acknowledges_every_second_packet(pair: tuple[RtcTransport, RtcTransport]) -> None:
    a, b = pair
    data, acks = await _bulk(a, b, 100)
    assert data >= 100 * 14  # 16 KiB frames: 15 SCTP packets each
    assert acks <= 0.6 * data, f"{acks} SACKs for {data} packets"
    # the same connection without the tuning: one SACK per packet (what the tuning removes)
    sctp_tuning.revert()
    data, acks = await _bulk(a, b, 100)
    assert acks >= 0.9 * data, f"untuned: {acks} SACKs for {data} packets"


async def test_a_lone_packet_is_acknowledged_within_the_delay(
    pair: tuple[RtcTransport, RtcTransport],
) -> None:
    a, _b = pair
    loop = asyncio.get_running_loop()
    sctp: Any = a._pc.sctp
    for _ in range(3):
        t0 = loop.time()
        await a.send(b"one small message")
        await poll(lambda: not sctp._sent_queue, 2.0)
        # acknowledged by the delayed-SACK timer, long before any retransmission (RTO >= 1 s)
        assert loop.time() - t0 < sctp_tuning.SACK_DELAY_S + 0.5


async def test_a_lost_chunk_is_retransmitted_by_the_t3_timer(
    pair: tuple[RtcTransport, RtcTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drop the first transmission of the last chunk of a message: nothing after it reports the gap, so
    only T3 (restarted lazily by the tuning) can bring it back."""
    a, b = pair
    assert a.files is not None
    assert b.files is not None
    original = RTCSctpTransport._send_chunk
    dropped: list[int] = []
    target = a._pc.sctp

    async def lossy(self: Any, chunk: Any) -> None:
        if (
            self is target
            and not dropped
            and getattr(chunk, "user_data", b"")[:4] == b"LOSE"
            and chunk._sent_count == 1
        ):
            dropped.append(chunk.tsn)
            return  # lost on the way
        await original(self, chunk)

    monkeypatch.setattr(RTCSctpTransport, "_send_chunk", lossy)
    await a.files.send(b"warm-up")  # an RTT sample, so RTO is the 1 s minimum
    it = b.files.__aiter__()
    async with asyncio.timeout(WAIT):
        assert await it.__anext__() == b"warm-up"
    await asyncio.sleep(0)
    await a.files.send(b"LOSE this one")
    async with asyncio.timeout(WAIT):
        assert await it.__anext__() == b"LOSE this one"
    assert dropped


async def test_dtls_records_bypass_aioice_send_layers(
    pair: tuple[RtcTransport, RtcTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patch 7: after the handshake a record goes from OpenSSL straight to the nominated pair's socket
    (aioice's ``send_data`` is not called for DATA), every frame still arrives intact and is counted;
    reverted, every record goes through aioice again."""
    from aioice.ice import StunProtocol

    a, b = pair
    calls: list[int] = []
    send_data = StunProtocol.send_data

    async def counting(self: Any, data: bytes, addr: tuple[str, int]) -> None:
        calls.append(len(data))
        await send_data(self, data, addr)

    monkeypatch.setattr(StunProtocol, "send_data", counting)
    data, _ = await _bulk(a, b, 50)
    assert data >= 50 * 14
    assert len(calls) < 10, f"{len(calls)} records went through aioice's send_data"
    sctp_tuning.revert()
    data, _ = await _bulk(a, b, 50)
    assert len(calls) >= data, "untuned: every record goes through aioice"


def _chunks(messages: int, seed: int) -> list[Any]:
    """DATA chunks of ``messages`` ordered messages on stream 1 (1-4 fragments each), TSNs across the
    2^32 wrap, in a shuffled arrival order with duplicates."""
    import random

    from aiortc.rtcsctptransport import SCTP_DATA_FIRST_FRAG, SCTP_DATA_LAST_FRAG, DataChunk

    rng = random.Random(seed)
    tsn = 2**32 - 7
    chunks = []
    for seq in range(messages):
        frags = rng.randint(1, 4)
        for f in range(frags):
            c = DataChunk()
            c.flags = (SCTP_DATA_FIRST_FRAG if f == 0 else 0) | (SCTP_DATA_LAST_FRAG if f == frags - 1 else 0)
            c.tsn, c.stream_id, c.stream_seq, c.protocol = tsn % 2**32, 1, seq, 53
            c.user_data = f"{seq}.{f}".encode()
            chunks.append(c)
            tsn += 1
    arrival = list(chunks)
    for i in range(0, len(arrival) - 3, 3):  # local reordering, as on a real path
        if rng.random() < 0.4:
            arrival[i], arrival[i + 2] = arrival[i + 2], arrival[i]
    return arrival + rng.sample(chunks, 5)  # and a few duplicates at the end


@pytest.mark.parametrize("seed", range(20))
def test_in_order_fast_paths_deliver_what_aiortc_delivers(seed: int) -> None:
    """The fast paths (one for the cumulative TSN, one for reassembly) against aiortc's own code on
    reordered chunks with duplicates and the TSN wrap: the same messages, acks and gap reports."""
    from aiortc.rtcsctptransport import InboundStream, RTCSctpTransport

    assert sctp_tuning.apply()
    originals = sctp_tuning._originals
    arrival = _chunks(60, seed)

    def run(tuned: bool) -> tuple[list[tuple[int, int, bytes]], list[tuple[int | None, list[int]]]]:
        sctp: Any = object.__new__(RTCSctpTransport)
        sctp._last_received_tsn = (2**32 - 8) % 2**32
        sctp._sack_misordered, sctp._sack_duplicates = set(), []
        stream = InboundStream()
        out: list[tuple[int, int, bytes]] = []
        acks: list[tuple[int | None, list[int]]] = []
        for c in arrival:
            dup = sctp._mark_received(c.tsn) if tuned else originals["mark"](sctp, c.tsn)
            acks.append((sctp._last_received_tsn, sorted(sctp._sack_misordered)))
            if dup:
                continue
            if tuned:
                stream.add_chunk(c)
                out += list(stream.pop_messages())
            else:
                originals["add"](stream, c)
                out += list(originals["pop"](stream))
        return out, acks

    tuned, untuned = run(True), run(False)
    assert tuned == untuned
    assert len(tuned[0]) == 60  # every message, once, in order
    assert [int(m[2].split(b".")[0]) for m in tuned[0]] == list(range(60))


def _packets_to_parse(tag: int) -> list[bytes]:
    """SCTP packets as they arrive: one DATA chunk (sizes that need 0-3 bytes of padding), one SACK chunk
    (with gaps and duplicates), bundles, and damaged ones (bad CRC, wrong tag, truncated, INIT)."""
    from aiortc.rtcsctptransport import DataChunk, InitChunk, SackChunk, serialize_packet

    packets = []
    for size in (0, 1, 2, 3, 4, 1172, 1171):
        c = DataChunk(flags=3)
        c.tsn, c.stream_id, c.stream_seq, c.protocol, c.user_data = (
            7 + size,
            1,
            size,
            53,
            bytes(i % 251 for i in range(size)),
        )
        packets.append(serialize_packet(5000, 5000, tag, c))
    s = SackChunk()
    s.cumulative_tsn, s.advertised_rwnd, s.gaps, s.duplicates = 9, 100_000, [(2, 3), (5, 9)], [4, 5]
    packets.append(serialize_packet(5000, 5000, tag, s))
    packets.append(serialize_packet(5000, 5000, tag, SackChunk()))
    one = packets[5]
    bundle = one + one[12:]  # two DATA chunks in one packet (a browser bundles)
    from google_crc32c import value as crc32c

    bundle = bundle[:8] + crc32c(bundle[:8] + b"\x00" * 4 + bundle[12:]).to_bytes(4, "little") + bundle[12:]
    packets.append(bundle)
    packets.append(one[:8] + bytes(4) + one[12:])  # bad checksum
    packets.append(serialize_packet(5000, 5000, tag + 1, DataChunk(flags=3)))  # wrong verification tag
    packets.append(one[:40])  # truncated: the chunk says more than the packet holds
    packets.append(serialize_packet(5000, 5000, 0, InitChunk()))
    return packets


async def test_one_chunk_packets_parse_as_aiortc_parses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch 8 against aiortc's ``_handle_data``: the same chunks handed on (type and every field), the
    same packets dropped, the same SACK decisions; and the one-chunk packets skip ``parse_packet``."""
    from aiortc import rtcsctptransport

    assert sctp_tuning.apply()
    original = sctp_tuning._originals["handle_data"]
    tag = 0x1234_5678
    parsed: list[int] = []
    parse_packet = rtcsctptransport.parse_packet

    def counting(data: bytes) -> Any:
        parsed.append(len(data))
        return parse_packet(data)

    monkeypatch.setattr(rtcsctptransport, "parse_packet", counting)

    async def run(handle: Any) -> list[Any]:
        seen: list[Any] = []
        sctp: Any = object.__new__(RTCSctpTransport)
        sctp._local_verification_tag = tag
        sctp._sack_needed = False
        sctp._RTCSctpTransport__log_debug = lambda *args: None

        async def receive_chunk(chunk: Any) -> None:
            seen.append((type(chunk).__name__, sorted(vars(chunk).items())))
            sctp._sack_needed = True

        async def send_sack() -> None:
            seen.append("SACK")
            sctp._sack_needed = False

        sctp._receive_chunk, sctp._send_sack = receive_chunk, send_sack
        for packet in _packets_to_parse(tag):
            seen.append("packet")
            await handle(sctp, packet)
        return seen

    expected = await run(original)
    parsed.clear()
    assert await run(RTCSctpTransport._handle_data) == expected
    # aiortc's parser only for the bundle, the truncated packet and the INIT (a bad checksum or tag on a
    # one-chunk packet is dropped by the fast path, as aiortc drops it)
    assert len(parsed) == 3, f"parse_packet ran for {len(parsed)} packets"
    assert expected.count("SACK") == 11  # handed on: 9 one-chunk packets, the bundle, the INIT


@pytest.mark.parametrize("rwnd", [1 << 20, 5, 0, -1200])
async def test_a_plain_sack_is_the_bytes_aiortc_sends(rwnd: int) -> None:
    """The directly built SACK (no gap, no duplicate) against aiortc's ``_send_sack`` on the same state:
    the same packet, and afterwards the same ``_sack_needed``/duplicates state (a window below zero is
    advertised as 0, as aiortc does)."""
    from aiortc.rtcsctptransport import parse_packet

    assert sctp_tuning.apply()
    out: list[bytes] = []

    class Dtls:
        async def _send_data(self, data: bytes) -> None:
            out.append(data)

    def state() -> Any:
        sctp: Any = object.__new__(RTCSctpTransport)
        sctp._local_port, sctp._remote_port, sctp._remote_verification_tag = 5000, 5001, 0xDEADBEEF
        sctp._RTCSctpTransport__transport = Dtls()
        sctp._RTCSctpTransport__log_debug = lambda *args: None
        sctp._last_received_tsn, sctp._advertised_rwnd = 2**32 - 3, rwnd
        sctp._sack_misordered, sctp._sack_duplicates, sctp._sack_needed = set(), [], True
        return sctp

    a, b = state(), state()
    await sctp_tuning._originals["sack"](a)  # aiortc's
    await sctp_tuning._send_plain_sack(b)
    assert out[0] == out[1]
    assert len(out[1]) == 28
    chunk: Any = parse_packet(out[1])[3][0]
    assert chunk.advertised_rwnd == max(0, rwnd)
    assert (a._sack_needed, a._sack_duplicates) == (b._sack_needed, b._sack_duplicates) == (False, [])


async def test_the_files_pacer_is_woken_when_sctp_drains(
    pair: tuple[RtcTransport, RtcTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patch 9: the files channel's pacer waits for sctp_tuning's event, not a poll. With the pacer's
    safety bound pushed to a minute, a bulk transfer that makes the pacer wait still completes in
    seconds: every wait ended by the event after a transmission."""
    from peer.net import fileschannel

    a, b = pair
    monkeypatch.setattr(fileschannel, "WAKE_BOUND_S", 60.0)
    waits: list[asyncio.Future[None]] = []
    outbound_waiter = sctp_tuning.outbound_waiter

    def counting(sctp: Any, limit: int) -> asyncio.Future[None] | None:
        fut = outbound_waiter(sctp, limit)
        assert fut is not None
        waits.append(fut)
        return fut

    monkeypatch.setattr(sctp_tuning, "outbound_waiter", counting)
    await _bulk(a, b, 200)  # its own 20 s timeouts: a wait left to the one-minute bound fails it
    assert waits, "the pacer never waited for SCTP"
    assert all(w.done() for w in waits)
