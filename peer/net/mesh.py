"""The mesh of one room: which neighbours we should be linked to, keeping those links up, and what we
know about each link (:mod:`peer.net.linkstate`).

Rules:
- We want a link to every peer the signaling server lists in the room (full mesh; a partial mesh
  caps this set later), at most ``MAX_PRESENT`` of them. The lower id offers; the higher id answers.
- Every failure backs off per neighbour, on both sides (``RedialPolicy``: exponential with jitter,
  capped, reset only by a link that stayed up ``stable_s``). A failure is: an offer that got no working
  path (``no-route``) or no answer in time (``timed-out``), a link that closed before the room handshake
  finished (``handshake-refused``), or a link that dropped early.
  - The offerer waits out the backoff before its next offer.
  - From the second consecutive failure on, the answerer drops an offer that arrives before
    ``accept_factor`` × the nominal backoff has passed since its last failure with that neighbour: a
    hostile offerer gets a few set-ups a minute at most, and a peer that restarts after one dropped link
    is answered at once.
  - The answerer sends a ``hello`` (an empty sealed signal, ``kind="hello"``) when it has no link, to
    nudge an offerer that may not know it is here (restart, race); hellos follow the same backoff. The
    offerer dials at once on a ``hello`` only if it has no failure with that neighbour; otherwise the
    hello is ignored until the backoff has passed.
  - A hello from a neighbour we hold a link to, once that link has been ready (or open without the room
    handshake finishing) for ``HELLO_STALE_S``, drops our link: the neighbour says it has none (it
    restarted, or its end died); the redial follows.
- At most ``max_dials`` connections are in set-up at once (offers and answers together), so a server
  announcing 1,200 fake peers costs ``max_dials`` RTCPeerConnections at a time, not 1,200.
- ``peer-left`` stops dialling; the neighbour's failure count is kept (bounded), so leaving and rejoining
  does not reset it. Signaling payloads are sealed and opened by hooks owned by the room.
- Link state changes are reported to ``on_link_state`` (and readable with :meth:`link_info`); the room
  says when the handshake is done (:meth:`link_ready`), which is when a link becomes direct/relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from peer.core.errors import ProtocolError
from peer.net.linkstate import Link, LinkInfo, Reason, RedialPolicy, path_state
from peer.net.rtc import Busy, IceConfig, NoRoute, OpenFn, RtcConnector, RtcTransport, SealFn

log = logging.getLogger(__name__)

LinkUp = Callable[[str, RtcTransport], None]
LinkDown = Callable[[str], None]
LinkStateFn = Callable[[LinkInfo], None]

MAX_PRESENT = 1024
MAX_REMEMBERED = 4096  # neighbours whose failure count we keep after they left
HELLO_RATE = 5.0  # hellos per second for the whole room (the server allows 50 frames/s)...
HELLO_BURST = 10  # ...after a burst of this many; a hello without a token is skipped, not queued
#: a hello (sent only by a peer with no link to us) from a peer we hold a link to that has been ready this
#: long (or open this long without becoming ready) means that peer restarted or lost its end: our link is
#: dead. Younger links may simply have crossed a late hello.
HELLO_STALE_S = 1.0


@dataclass
class _Neighbour:
    failures: int = 0
    not_before: float = 0.0  # loop time before which we do not dial (offerer)
    failed_at: float = 0.0  # loop time of the last failure
    ready_at: float | None = None  # loop time the current link became ready
    up_at: float | None = None  # loop time the current link's channel opened
    info: LinkInfo | None = None
    wake: asyncio.Event | None = None


def reason_of(exc: BaseException) -> Reason:
    if isinstance(exc, NoRoute):
        return Reason.NO_ROUTE
    return Reason.TIMED_OUT


class RoomMesh:
    def __init__(
        self,
        local_id: str,
        seal: SealFn,
        open_: OpenFn,
        send_signal: Callable[[str, str], Awaitable[None]],
        on_link_up: LinkUp,
        on_link_down: LinkDown,
        ice: IceConfig = None,
        connect_timeout: float = 20.0,
        policy: RedialPolicy | None = None,
        on_link_state: LinkStateFn | None = None,
        max_dials: int = 8,
        turn: IceConfig = None,
    ) -> None:
        self.local_id = local_id
        self._on_up = on_link_up
        self._on_down = on_link_down
        self._on_state = on_link_state
        self._open = open_
        self.policy = policy or RedialPolicy()
        self._timeout = connect_timeout
        self._connector = RtcConnector(
            local_id,
            seal,
            self._open_and_note,
            send_signal,
            self._link_ready,
            ice if ice is not None else turn,
            connect_timeout,
            on_failure=self._answer_failed,
            max_pending=max_dials,
        )
        self._seal = seal
        self._send_signal = send_signal
        self._dial_slots = asyncio.Semaphore(max_dials)
        self.present: set[str] = set()
        self.links: dict[str, RtcTransport] = {}
        self._nb: OrderedDict[str, _Neighbour] = OrderedDict()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._dialing: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.offers_sent = 0
        self.hellos_sent = 0
        self._hello_tokens = float(HELLO_BURST)
        self._hello_at = 0.0

    @property
    def connector(self) -> RtcConnector:
        return self._connector

    def set_ice(self, ice: IceConfig) -> None:
        """New ICE servers (e.g. fresh TURN credentials after a reconnect) for the next connections."""
        self._connector.ice = ice

    # -- link state -------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _neighbour(self, peer: str) -> _Neighbour:
        nb = self._nb.get(peer)
        if nb is None:
            nb = self._nb[peer] = _Neighbour()
            while len(self._nb) > MAX_REMEMBERED:
                oldest = next(iter(self._nb))
                if oldest in self.present:
                    self._nb.move_to_end(oldest)
                    if all(p in self.present for p in self._nb):
                        break
                    continue
                del self._nb[oldest]
        return nb

    def link_info(self, peer: str) -> LinkInfo | None:
        """Our link to ``peer`` as we see it; None for peers the server does not list (offline)."""
        nb = self._nb.get(peer)
        if nb is None or peer not in self.present or nb.info is None:
            return None
        info = replace(nb.info, failures=nb.failures)
        if info.state == Link.UNREACHABLE:
            return replace(info, retry_in_s=max(0.0, nb.not_before - self._now()))
        return info

    def link_infos(self) -> dict[str, LinkInfo]:
        return {p: i for p in sorted(self.present) if (i := self.link_info(p)) is not None}

    def _set(
        self, peer: str, state: Link, reason: Reason | None = None, path: tuple[str, str] | None = None
    ) -> None:
        nb = self._neighbour(peer)
        info = LinkInfo(peer, state, reason, path, nb.failures)
        old = nb.info
        nb.info = info
        if old is not None and (old.state, old.reason, old.path) == (state, reason, path):
            return
        if self._on_state is not None:
            self._on_state(info)

    def _fail(self, peer: str, reason: Reason) -> None:
        """Record a failed attempt with ``peer``: backoff and ``unreachable``."""
        nb = self._neighbour(peer)
        nb.failures += 1
        nb.ready_at = None
        nb.failed_at = self._now()
        nb.not_before = nb.failed_at + self.policy.delay(nb.failures)
        log.info("link to %s: %s; next attempt in %.1fs", peer[:8], reason, nb.not_before - self._now())
        if peer in self.present:
            self._set(peer, Link.UNREACHABLE, reason)

    def link_ready(self, peer: str) -> None:
        """The room's handshake with ``peer`` is done: the link is usable (direct or relayed)."""
        link = self.links.get(peer)
        if link is None or link.closed:
            return
        nb = self._neighbour(peer)
        nb.ready_at = self._now()
        path = link.path
        self._set(peer, path_state(path), None, path)

    # -- signaling input ------------------------------------------------------------------------

    def set_present(self, peers: list[str]) -> None:
        for p in peers:
            self.peer_joined(p)

    def peer_joined(self, peer: str) -> None:
        if peer == self.local_id or self._closed:
            return
        if peer not in self.present and len(self.present) >= MAX_PRESENT:
            log.warning("ignoring peer %s: %d peers listed already", peer[:8], MAX_PRESENT)
            return
        self.present.add(peer)
        nb = self._neighbour(peer)
        if (nb.info is None or nb.info.state != Link.UNREACHABLE) and peer not in self.links:
            self._set(peer, Link.CONNECTING)
        self._ensure_dialer(peer)

    def forgive(self, peer: str) -> None:
        """Forget past failures with ``peer`` (e.g. a removed member was readmitted: the refusals that
        backed it off no longer hold) and dial it now if it is present."""
        nb = self._nb.get(peer)
        if nb is None or nb.failures == 0:
            return
        nb.failures, nb.not_before, nb.failed_at = 0, 0.0, 0.0
        if peer in self.present:
            self._kick(peer)

    def peer_left(self, peer: str) -> None:
        self.present.discard(peer)
        nb = self._nb.get(peer)
        if nb is not None:
            nb.info = None
        task = self._dialers.pop(peer, None)
        if task is not None:
            task.cancel()

    async def handle_signal(self, sender: str, payload: str) -> None:
        """A signaling payload from ``sender``; bad ones are dropped with a logged protocol error."""
        try:
            await self._connector.handle_signal(sender, payload)
        except ProtocolError as exc:
            log.info("dropped signaling payload from %s: %s", sender[:8], exc.code)

    def _open_and_note(self, sender: str, payload: str) -> tuple[str, dict[str, Any]]:
        kind, body = self._open(sender, payload)
        now = self._now()
        if kind == "hello" and self._stale_link(sender, now):
            # it says it has no link to us, yet we hold one that has been up a while: it restarted (or
            # lost the link without our noticing). Ours is dead; drop it, and the redial follows.
            log.info("link to %s: it says it has none (restarted?); dropping ours", sender[:8])
            self.drop_link(sender)
        elif kind == "hello" and sender > self.local_id and sender not in self._dialing:
            # the higher id asks us to offer now: only if we have no failure with it (else: backoff)
            nb = self._neighbour(sender)
            if sender not in self.present and len(self.present) < MAX_PRESENT:
                self.present.add(sender)
            if sender in self.present and (nb.failures == 0 or now >= nb.not_before):
                nb.not_before = min(nb.not_before, now)
                self._kick(sender)
            elif sender in self.present:  # in backoff: dial when it ends (a hello may be all we hear of
                self._ensure_dialer(sender)  # it, e.g. through the mesh with no server listing it)
        elif kind == "offer" and sender < self.local_id:
            nb = self._neighbour(sender)
            accept_at = nb.failed_at + self.policy.nominal(nb.failures) * self.policy.accept_factor
            if nb.failures >= 2 and now < accept_at:  # one failure (a restart, a blip) never blocks
                self._connector.offers_dropped += 1
                raise ProtocolError("backoff", "offer before the backoff after a failure")
            if sender in self.present:
                self._set(sender, Link.CONNECTING)
        return kind, body

    def _stale_link(self, peer: str, now: float) -> bool:
        """We hold a link to ``peer`` that became ready at least ``HELLO_STALE_S`` ago, or that opened
        that long ago and never became ready (the peer's end died before the room handshake finished:
        without this, its hellos were ignored until ICE consent ended our end, ~30 s)."""
        link = self.links.get(peer)
        nb = self._nb.get(peer)
        if link is None or link.closed or nb is None:
            return False
        since = nb.ready_at if nb.ready_at is not None else nb.up_at
        return since is not None and now - since >= HELLO_STALE_S

    def _answer_failed(self, peer: str, exc: BaseException) -> None:
        if not self._closed:
            self._fail(peer, reason_of(exc))

    # -- dialing ----------------------------------------------------------------------------------------

    def _ensure_dialer(self, peer: str) -> None:
        if peer in self._dialers and not self._dialers[peer].done():
            return
        if peer in self.links and not self.links[peer].closed:
            return
        self._dialers[peer] = asyncio.create_task(self._dial_loop(peer), name=f"dial-{peer[:8]}")

    def _kick(self, peer: str) -> None:
        """Start (or wake) the dialer of ``peer`` now."""
        task = self._dialers.get(peer)
        nb = self._neighbour(peer)
        if task is not None and not task.done() and nb.wake is not None:
            nb.wake.set()
            return
        self._ensure_dialer(peer)

    async def _wait_until(self, peer: str, when: float) -> None:
        nb = self._neighbour(peer)
        nb.wake = asyncio.Event()
        delay = when - self._now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(nb.wake.wait(), delay)
        nb.wake = None

    async def _dial_loop(self, peer: str) -> None:
        hellos = 0
        while not self._closed and peer in self.present:
            if peer in self.links and not self.links[peer].closed:
                return
            nb = self._neighbour(peer)
            if self.local_id < peer:
                await self._wait_until(peer, nb.not_before)
                if peer not in self.present or (peer in self.links and not self.links[peer].closed):
                    return
                async with self._dial_slots:
                    self._set(peer, Link.CONNECTING)
                    self._dialing.add(peer)
                    try:
                        self.offers_sent += 1
                        await self._connector.connect(peer)
                        return  # _link_ready took over
                    except asyncio.CancelledError:
                        raise
                    except Busy:
                        nb.not_before = self._now() + self.policy.base_s
                    except (NoRoute, TimeoutError) as exc:
                        self._fail(peer, reason_of(exc))
                    except Exception as exc:  # signaling down, bad SDP...: a failure like any other
                        log.info("dial to %s failed: %s", peer[:8], type(exc).__name__)
                        self._fail(peer, Reason.TIMED_OUT)
                    finally:
                        self._dialing.discard(peer)
            else:
                # We answer; nudge the offerer in case it does not know we are here (restart, race).
                try:
                    hellos += 1
                    if self._take_hello_token():
                        self.hellos_sent += 1
                        await self._send_signal(peer, self._seal(peer, "hello", {}))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.info("hello to %s failed: %s", peer[:8], type(exc).__name__)
                # no offer within the connect timeout: unreachable (timed out) until one arrives
                await self._wait_until(peer, self._now() + self._timeout)
                if peer in self.present and peer not in self.links and peer not in self._connector._pending:
                    info = self._neighbour(peer).info
                    if info is None or info.state == Link.CONNECTING:
                        self._set(peer, Link.UNREACHABLE, Reason.TIMED_OUT)
                await self._wait_until(peer, self._now() + self.policy.delay(hellos))

    def _take_hello_token(self) -> bool:
        now = self._now()
        self._hello_tokens = min(float(HELLO_BURST), self._hello_tokens + (now - self._hello_at) * HELLO_RATE)
        self._hello_at = now
        if self._hello_tokens < 1.0:
            return False
        self._hello_tokens -= 1.0
        return True

    def _link_ready(self, link: RtcTransport) -> None:
        peer = link.remote_id
        old = self.links.get(peer)
        self.links[peer] = link
        self._neighbour(peer).up_at = self._now()
        if old is not None and old is not link and not old.closed:
            self._spawn(old.close())
        dialer = self._dialers.pop(peer, None)
        if dialer is not None and dialer is not asyncio.current_task():
            dialer.cancel()
        self._on_up(peer, link)
        self._spawn(self._watch(peer, link))

    async def _watch(self, peer: str, link: RtcTransport) -> None:
        await link.wait_closed()
        if self.links.get(peer) is link:
            del self.links[peer]
            self._on_down(peer)
            nb = self._neighbour(peer)
            if self._closed:
                return
            if nb.ready_at is None:
                self._fail(peer, Reason.HANDSHAKE_REFUSED)
            elif self._now() - nb.ready_at < self.policy.stable_s:
                self._fail(peer, Reason.TIMED_OUT)
            else:  # a link that served well: start over, after the base delay
                nb.failures = 0
                nb.ready_at = None
                nb.not_before = self._now() + self.policy.delay(1)
                if peer in self.present:
                    self._set(peer, Link.CONNECTING)
            if peer in self.present:
                self._ensure_dialer(peer)

    def drop_link(self, peer: str) -> None:
        """Close the link to ``peer`` (handshake failed, heartbeats timed out); the mesh will redial it."""
        link = self.links.get(peer)
        if link is not None:
            self._spawn(link.close())

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._dialers.values()) + list(self._watchers):
            task.cancel()
        for task in list(self._dialers.values()) + list(self._watchers):
            with contextlib.suppress(BaseException):
                await task
        self._dialers.clear()
        await self._connector.close()
        links = list(self.links.values())
        self.links.clear()
        for link in links:
            await link.close()
