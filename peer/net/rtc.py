"""aiortc adapter: one RTCPeerConnection and one data channel per neighbour.

Rules (field notes, measured here):
- ``RTCConfiguration(iceServers=[...])`` always, with exactly the STUN/TURN servers the signaling server
  handed out in ``welcome`` (possibly none): passed ``None``, aiortc reaches for a public STUN server.
- aiortc does not trickle: every local candidate is in the SDP once ``setLocalDescription`` returns, so
  an offer or answer is one signaling message. Candidates trickled by a browser (``kind="candidate"``)
  are added with ``addIceCandidate``.
- The peer with the lower id offers, so two peers never offer to each other at once (no glare).
- ICE consent notices a vanished peer only after ~35 s; the sync layer's heartbeats detect it sooner and
  close the link, and the mesh reconnects with backoff while the neighbour is still in the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from peer.net import sctp_tuning
from peer.net.channelqueue import ChannelQueue
from peer.net.fileschannel import FILES_LABEL, FilesLink
from peer.net.transport import TransportClosed

log = logging.getLogger(__name__)

CHANNEL_LABEL = "ephemesh"
# aiortc assumes 64 KiB when the remote advertises nothing; frames are chunked/batched below this.
DEFAULT_MAX_MESSAGE = 65536
HIGH_WATER = 1 << 20  # pause senders above 1 MiB queued in aiortc's per-connection FIFO
LOW_WATER = 256 << 10


async def close_pc(pc: RTCPeerConnection, timeout: float = 5.0) -> None:
    """``pc.close()``, bounded: aiortc's close can wait forever on a connection still checking ICE."""
    try:
        await asyncio.wait_for(pc.close(), timeout)
    except TimeoutError:
        log.info("peer connection close timed out after %.0fs", timeout)
    except Exception as exc:
        log.info("peer connection close failed: %s", type(exc).__name__)


def quiet_aiortc_teardown(loop: asyncio.AbstractEventLoop) -> None:
    """Keep aiortc's known teardown race out of the logs (aiortc issue #1040, open upstream).

    When a connection closes, SCTP tasks may still try to send through the closed DTLS transport and
    die with ``ConnectionError('Cannot send encrypted data, not connected')``; nobody awaits them, so
    asyncio reports "Task exception was never retrieved". Those are logged at debug level; every other
    exception goes to the handler that was there before.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_ephemesh_quiet", False):
        return

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        future = context.get("future")
        coro = getattr(future, "get_coro", lambda: None)() if future is not None else None
        owner = str(getattr(coro, "__qualname__", "")).split(".")[-2:-1]
        if isinstance(exc, ConnectionError) and owner in (["RTCSctpTransport"], ["RTCDtlsTransport"]):
            log.debug("aiortc teardown: %s", exc)
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler._ephemesh_quiet = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


MAX_ICE_SERVERS = 8
MAX_ICE_URLS = 8
MAX_ICE_FIELD = 512

IceConfig = dict[str, Any] | list[dict[str, Any]] | None
"""``welcome.ice_servers`` (a list of RTCIceServer-shaped dicts), or the legacy ``welcome.turn`` object."""


def _turn_rank(url: str) -> int:
    # aioice uses the first TURN URL only: prefer UDP, then TCP; turns: works with transport=tcp only
    if url.startswith("turns:"):
        return 2 if "transport=tcp" in url or "transport=" not in url else 9
    return 1 if "transport=tcp" in url else 0


def ice_servers(ice: IceConfig) -> list[RTCIceServer]:
    """The servers aiortc can use, from the signaling server's (remote, bounded, validated) config.

    STUN entries come first and TURN URLs are ordered UDP, TCP, TLS, because aiortc takes the first STUN
    and the first TURN URL only. Malformed entries and URLs are dropped (aiortc would raise on them).
    """
    from aiortc.rtcicetransport import parse_stun_turn_uri

    entries = [ice] if isinstance(ice, dict) else list(ice or [])
    stun: list[RTCIceServer] = []
    turn: list[tuple[int, str, str, str]] = []
    for entry in entries[:MAX_ICE_SERVERS]:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list):
            continue
        username, credential = entry.get("username"), entry.get("credential")
        for url in urls[:MAX_ICE_URLS]:
            if not isinstance(url, str) or len(url) > MAX_ICE_FIELD:
                continue
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError:
                continue
            if url.startswith("turn") and parsed.get("transport") not in (
                ("tcp",) if parsed["scheme"] == "turns" else ("udp", "tcp")
            ):
                continue
            if url.startswith("stun"):
                stun.append(RTCIceServer(urls=url))
            elif (
                isinstance(username, str)
                and isinstance(credential, str)
                and len(username) <= MAX_ICE_FIELD
                and len(credential) <= MAX_ICE_FIELD
                and _turn_rank(url) < 9
            ):
                turn.append((_turn_rank(url), url, username, credential))
    turn.sort(key=lambda t: t[0])
    return stun[:1] + [RTCIceServer(urls=url, username=u, credential=c) for _, url, u, c in turn]


def rtc_configuration(ice: IceConfig, *, relay_only: bool | None = None) -> RTCConfiguration:
    """The ICE configuration for a new connection: STUN and TURN from the signaling server, if any.

    With ``iceTransportPolicy="all"`` (the default) aioice gathers host, server-reflexive (STUN) and relay
    (TURN) candidates and pairs them all; the highest-priority pair that answers wins, so two cone NATs
    connect directly and a relay is used only when nothing else works.

    Relay-only (``iceTransportPolicy="relay"``: gather and use TURN relay candidates only, so no peer ever
    learns this host's addresses) applies when ``relay_only`` is true, or, when it is ``None``, when the
    legacy ``turn`` object says ``"policy": "relay"`` or the environment sets ``EPHEMESH_ICE_POLICY=relay``.
    It needs a TURN server: without one it is ignored (nothing could connect).
    """
    import os

    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    if relay_only is None:
        relay_only = os.environ.get("EPHEMESH_ICE_POLICY") == "relay" or bool(
            isinstance(ice, dict) and ice.get("policy") == "relay"
        )
    servers = ice_servers(ice)
    if relay_only and any(not str(s.urls).startswith("stun") for s in servers):
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    return RTCConfiguration(iceServers=servers)


def selected_path(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """``(local, remote)`` candidate types of the ICE pair carrying ``pc``'s data, or None if unknown.

    aiortc exposes no selected pair; aioice keeps it in ``Connection._nominated`` (component 1). This
    reads it defensively; ``tests/peer/test_mesh_aiortc.py`` checks it still works with the pinned versions.
    """
    sctp = pc.sctp
    dtls = getattr(sctp, "transport", None)
    ice = getattr(dtls, "transport", None)
    conn = getattr(ice, "_connection", None)
    nominated = getattr(conn, "_nominated", None)
    pair = nominated.get(1) if isinstance(nominated, dict) else None
    if pair is None:
        return None
    try:
        return (str(pair.local_candidate.type), str(pair.remote_candidate.type))
    except AttributeError:
        return None


class RtcTransport(ChannelQueue):
    """A :class:`peer.net.transport.Transport` over one aiortc data channel."""

    def __init__(self, local_id: str, remote_id: str, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        super().__init__(channel, LOW_WATER)
        self._local_id = local_id
        self._remote_id = remote_id
        self._pc = pc
        #: the attachment transfer channel on the same connection (peer/net/fileschannel.py), once known
        self.files: FilesLink | None = None
        self.files_attached = asyncio.Event()

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.mark_closed()

    @property
    def peer_id(self) -> str:
        return self._local_id

    @property
    def remote_id(self) -> str:
        return self._remote_id

    @property
    def path(self) -> tuple[str, str] | None:
        """``(local, remote)`` ICE candidate types of the selected pair (``host``/``srflx``/``prflx``/``relay``)."""
        return selected_path(self._pc)

    @property
    def max_message_size(self) -> int:
        sctp = self._pc.sctp
        remote = getattr(sctp, "_remote_max_message_size", None) if sctp is not None else None
        if isinstance(remote, int) and remote > 0:
            return min(remote, 262144)
        return DEFAULT_MAX_MESSAGE

    def _on_closed(self) -> None:
        if self.files is not None:
            self.files.mark_closed()
        self.files_attached.set()

    def attach_files(self, channel: RTCDataChannel) -> None:
        """The ``ephemesh-files`` channel of this connection (created by the offerer with the chat one)."""
        if self.files is None and not self.closed:
            self.files = FilesLink(channel, self._outbound_chunks)
            self.files_attached.set()

    def _outbound_chunks(self) -> int:
        """SCTP chunks of every channel waiting for the wire (aiortc internals, read defensively)."""
        queue = getattr(self._pc.sctp, "_outbound_queue", None) if self._pc.sctp is not None else None
        return len(queue) if queue is not None else 0

    async def send(self, data: bytes) -> None:
        if self.closed or self._channel.readyState != "open":
            raise TransportClosed("transport closed")
        if len(data) > self.max_message_size:
            raise ValueError(f"frame of {len(data)} bytes exceeds the channel limit {self.max_message_size}")
        if self._channel.bufferedAmount > HIGH_WATER:
            self._low.clear()
            waiter = asyncio.ensure_future(self._low.wait())
            closer = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closer.cancel()
            if self.closed:
                raise TransportClosed("transport closed")
        self._channel.send(data)

    async def close(self, linger: float = 1.0) -> None:
        """Close gracefully: frames already sent are delivered first (up to ``linger`` seconds)."""
        if not self._closed.is_set() and self._channel.readyState == "open":
            await self._drain(linger)
        self.mark_closed()
        with contextlib.suppress(Exception):
            self._channel.close()
        await close_pc(self._pc)

    async def _drain(self, linger: float) -> None:
        # aiortc has no flush: wait until the channel's queue and SCTP's unacknowledged data are empty.
        sctp = self._pc.sctp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + linger
        while loop.time() < deadline and not self._closed.is_set():
            pending = self._channel.bufferedAmount
            if sctp is not None:
                pending += len(getattr(sctp, "_outbound_queue", ())) + len(getattr(sctp, "_sent_queue", ()))
            if pending == 0:
                return
            await asyncio.sleep(0.01)


async def rtc_pair(a_id: str, b_id: str) -> tuple[RtcTransport, RtcTransport]:
    """Two connected transports in this process, offer and answer handed over directly (tests, benches)."""
    sctp_tuning.apply()
    pc_a = RTCPeerConnection(rtc_configuration([]))
    pc_b = RTCPeerConnection(rtc_configuration([]))
    ch_a = pc_a.createDataChannel(CHANNEL_LABEL, ordered=True)
    t_a = RtcTransport(a_id, b_id, pc_a, ch_a)
    t_a.attach_files(pc_a.createDataChannel(FILES_LABEL, ordered=True))
    files_b: list[RTCDataChannel] = []
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()
    got: asyncio.Future[RtcTransport] = loop.create_future()

    def on_open() -> None:
        if not opened.done():
            opened.set_result(None)

    def on_channel(ch: RTCDataChannel) -> None:
        if ch.label == FILES_LABEL:
            if got.done():
                got.result().attach_files(ch)
            else:
                files_b.append(ch)
        elif not got.done():
            t = RtcTransport(b_id, a_id, pc_b, ch)
            for f in files_b:
                t.attach_files(f)
            got.set_result(t)

    ch_a.on("open", on_open)
    pc_b.on("datachannel", on_channel)
    await pc_a.setLocalDescription(await pc_a.createOffer())
    await pc_b.setRemoteDescription(pc_a.localDescription)
    await pc_b.setLocalDescription(await pc_b.createAnswer())
    await pc_a.setRemoteDescription(pc_b.localDescription)
    async with asyncio.timeout(20):
        t_b = await got
        await opened
    return t_a, t_b


SealFn = Callable[[str, str, dict[str, Any]], str]
"""seal(to_peer, kind, body) -> opaque payload string for the signaling server."""
OpenFn = Callable[[str, str], tuple[str, dict[str, Any]]]
"""open(from_peer, payload) -> (kind, body); raises ProtocolError on anything unacceptable."""
SendSignalFn = Callable[[str, str], Awaitable[None]]
"""send_signal(to_peer, payload)."""


@dataclass
class _Pending:
    pc: RTCPeerConnection
    offerer: bool
    holdoff: asyncio.Task[None] | None = None
    transport: RtcTransport | None = None
    files: RTCDataChannel | None = None
    channel_ready: asyncio.Future[RtcTransport] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


#: how long a connection tries direct paths only before the remote's relay candidates join the checks
RELAY_HOLDOFF_S = 1.5


def hold_back_relays(sdp: str) -> tuple[str, list[str], bool]:
    """Split the remote's relay candidates (and ``end-of-candidates``) off an SDP.

    Returns the SDP without them, the ``candidate:...`` values held back, and whether the SDP said
    end-of-candidates. Nothing changes when the SDP has no relay candidate. Why: aioice nominates
    aggressively (the controlling side keeps the first pair that answers), and a relay pair usually
    answers before a hole-punched one, so two cone NATs would end up relayed. Held back for
    :data:`RELAY_HOLDOFF_S`, relays are only a fallback, as they should be.
    """
    lines = sdp.split("\r\n")
    relays = [ln[2:] for ln in lines if ln.startswith("a=candidate:") and " typ relay" in ln]
    if not relays:
        return sdp, [], False
    eoc = "a=end-of-candidates" in lines
    kept = [ln for ln in lines if ln[2:] not in relays and ln != "a=end-of-candidates"]
    return "\r\n".join(kept), relays, eoc


def _sdp_mid(sdp: str) -> str | None:
    for ln in sdp.split("\r\n"):
        if ln.startswith("a=mid:"):
            return ln[len("a=mid:") :]
    return None


async def set_remote(
    pc: RTCPeerConnection, sdp: str, kind: str, holdoff: float = RELAY_HOLDOFF_S
) -> asyncio.Task[None] | None:
    """``setRemoteDescription`` with the remote's relay candidates added ``holdoff`` seconds later.

    Returns the task that adds them (and end-of-candidates), or None when there was nothing to hold back.
    """
    stripped, relays, eoc = hold_back_relays(sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=stripped, type=kind))
    if not relays:
        return None
    mid = _sdp_mid(sdp)

    async def later() -> None:
        await asyncio.sleep(holdoff)  # a timer, not synchronisation: the fallback's deadline
        if pc.connectionState in ("closed", "failed"):
            return
        for text in relays:
            cand = candidate_from_sdp(text[len("candidate:") :])
            cand.sdpMid = mid
            cand.sdpMLineIndex = 0
            await pc.addIceCandidate(cand)
        if eoc:
            await pc.addIceCandidate(None)

    return asyncio.create_task(later(), name="relay-holdoff")


class NoRoute(ConnectionError):
    """ICE checked every candidate pair and none worked (or DTLS failed on the one that did)."""


class Busy(ConnectionError):
    """Too many connections are being set up already (``max_pending``)."""


class RtcConnector:
    """Turns signaling messages into open :class:`RtcTransport` links.

    ``connect(peer)`` (called by the side with the lower id) sends an offer; ``handle_signal`` answers
    offers and completes connections. Each finished link is handed to ``on_link``. Failed or timed-out
    attempts are closed and reported: by raising from ``connect`` (:class:`NoRoute`, ``TimeoutError``),
    and for answered offers through ``on_failure(peer, exc)`` (the caller owns retry policy).

    At most ``max_pending`` connections are being set up at once (offers we made plus offers we
    answered): an offer beyond that is dropped and ``connect`` raises :class:`Busy`, so a flood of
    announced or offering peers cannot make us hold more than that many RTCPeerConnections in set-up.
    """

    def __init__(
        self,
        local_id: str,
        seal: SealFn,
        open_: OpenFn,
        send_signal: SendSignalFn,
        on_link: Callable[[RtcTransport], None],
        ice: IceConfig = None,
        connect_timeout: float = 20.0,
        on_failure: Callable[[str, BaseException], None] | None = None,
        max_pending: int = 8,
    ) -> None:
        self.local_id = local_id
        self._seal = seal
        self._open = open_
        self._send_signal = send_signal
        self._on_link = on_link
        self._on_failure = on_failure
        self.ice = ice
        self._timeout = connect_timeout
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.max_pending = max_pending
        self.max_pending_seen = 0
        self.offers_answered = 0
        self.offers_dropped = 0
        self.relay_holdoff = RELAY_HOLDOFF_S
        sctp_tuning.apply()  # aiortc's per-packet costs (delayed SACK...): before any connection exists

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def _own(self, task: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    def _new_pc(self, remote: str, offerer: bool) -> _Pending:
        old = self._pending.pop(remote, None)
        if old is not None:
            if old.holdoff is not None:
                old.holdoff.cancel()
            task = asyncio.ensure_future(close_pc(old.pc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        pc = RTCPeerConnection(rtc_configuration(self.ice))
        pending = _Pending(pc=pc, offerer=offerer)
        self._pending[remote] = pending
        self.max_pending_seen = max(self.max_pending_seen, len(self._pending))

        @pc.on("datachannel")
        def _on_channel(channel: RTCDataChannel) -> None:
            if channel.label == FILES_LABEL:
                if pending.transport is not None:
                    pending.transport.attach_files(channel)
                else:
                    pending.files = channel
            elif channel.label == CHANNEL_LABEL and not pending.channel_ready.done():
                # wrap at once: frames the offerer sends right after "open" must not be lost
                transport = RtcTransport(self.local_id, remote, pc, channel)
                pending.transport = transport
                if pending.files is not None:
                    transport.attach_files(pending.files)
                pending.channel_ready.set_result(transport)

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState == "failed" and not pending.channel_ready.done():
                pending.channel_ready.set_exception(NoRoute("ICE failed"))

        return pending

    async def connect(self, remote: str) -> RtcTransport:
        """Offer a connection to ``remote`` and wait until its data channel is open."""
        if remote not in self._pending and len(self._pending) >= self.max_pending:
            raise Busy("too many connections in set-up")
        pending = self._new_pc(remote, offerer=True)
        pc = pending.pc
        channel = pc.createDataChannel(CHANNEL_LABEL, ordered=True)
        transport = RtcTransport(self.local_id, remote, pc, channel)
        transport.attach_files(pc.createDataChannel(FILES_LABEL, ordered=True))

        @channel.on("open")
        def _on_open() -> None:
            if not pending.channel_ready.done():
                pending.channel_ready.set_result(transport)

        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        local = pc.localDescription
        payload = self._seal(remote, "offer", {"sdp": local.sdp, "type": local.type})
        await self._send_signal(remote, payload)
        return await self._finish(remote, pending)

    async def _finish(self, remote: str, pending: _Pending) -> RtcTransport:
        try:
            link = await asyncio.wait_for(asyncio.shield(pending.channel_ready), self._timeout)
        except BaseException:
            if self._pending.get(remote) is pending:
                del self._pending[remote]
            if pending.holdoff is not None:
                pending.holdoff.cancel()
            await close_pc(pending.pc)
            raise
        if self._pending.get(remote) is pending:
            del self._pending[remote]
        self._on_link(link)
        return link

    def _answered_done(self, remote: str, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.info("incoming connection failed: %s", type(exc).__name__)
            if self._on_failure is not None:
                self._on_failure(remote, exc)

    async def handle_signal(self, sender: str, payload: str) -> None:
        """Process one signaling payload from ``sender``. Raises ProtocolError on bad payloads.

        An answered offer completes in the background; the link is handed to ``on_link``.
        """
        kind, body = self._open(sender, payload)
        if kind == "offer":
            if sender < self.local_id:
                if sender not in self._pending and len(self._pending) >= self.max_pending:
                    self.offers_dropped += 1
                    log.info("dropped an offer: %d connections in set-up already", len(self._pending))
                    return None
                self.offers_answered += 1
                pending = self._new_pc(sender, offerer=False)
                pc = pending.pc
                pending.holdoff = self._own(
                    await set_remote(pc, str(body["sdp"]), "offer", self.relay_holdoff)
                )
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
                local = pc.localDescription
                await self._send_signal(
                    sender, self._seal(sender, "answer", {"sdp": local.sdp, "type": "answer"})
                )
                # Finish in the background: a browser may still trickle candidates to this connection.
                task = asyncio.ensure_future(self._finish(sender, pending))
                self._tasks.add(task)
                task.add_done_callback(lambda t: self._answered_done(sender, t))
                return None
            log.info("ignoring an offer from a peer with a higher id than ours (we are the offerer)")
            return None
        pending_or_none = self._pending.get(sender)
        if pending_or_none is None:
            return None
        if kind == "answer" and pending_or_none.offerer:
            pending_or_none.holdoff = self._own(
                await set_remote(pending_or_none.pc, str(body["sdp"]), "answer", self.relay_holdoff)
            )
        elif kind == "candidate":
            cand = body.get("candidate")
            if cand:
                text = str(cand)
                if text.startswith("candidate:"):
                    text = text[len("candidate:") :]
                ice = candidate_from_sdp(text)
                ice.sdpMid = body.get("sdpMid")
                ice.sdpMLineIndex = body.get("sdpMLineIndex")
                await pending_or_none.pc.addIceCandidate(ice)
        return None

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        pendings = list(self._pending.values())
        self._pending.clear()
        for p in pendings:
            await close_pc(p.pc)
        if tasks:  # each one closes its own connection (bounded), so this ends
            await asyncio.gather(*tasks, return_exceptions=True)
