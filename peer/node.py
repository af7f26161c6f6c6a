"""The asyncio peer: pumps the sans-IO room core to and from the network and the store.

```python
async with Peer(home="~/.ephemesh-bot") as peer:
    room = await peer.join(invite_url)
    await room.send("hello", ttl=3600)
    async for event in room.events():
        if isinstance(event, MessageReceived):
            print(event.message.sender, event.message.text)
```

Each room has a :class:`peer.core.room.Room` (all protocol logic, no I/O), a :class:`RoomMesh` (WebRTC
links) and a share of one signaling connection per server. After every call into the core, the pump
persists what the core asks to persist, *then* transmits what it returns (so a chain key is on disk
before anything sealed with it leaves), re-arms the one timer the core wants, and hands events to
subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from peer import keeper_files
from peer.attachments import Attachment, AttachmentEvent, RoomFiles
from peer.core.errors import ProtocolError
from peer.core.events import (
    AdmissionChanged,
    Delivered,
    MemberJoined,
    MemberLeft,
    MemberOnline,
    Message,
    MessageErased,
    MessageExpired,
    MessageReceived,
    MessageSeen,
    MessageUpdated,
    ProfileChanged,
    RolesChanged,
    RoomEvent,
    TimerChanged,
    Typing,
)
from peer.core.files import FileLimits
from peer.core.invite import Invite
from peer.core.log import DEFAULT_SKEW_MS
from peer.core.room import PersistBatch, Room
from peer.core.signal import ReplayCache, open_signal, seal_signal
from peer.features import FeaturesMixin
from peer.home import STORE_FILE, HomeInUse, HomeLock, load_or_create_identity, resolve_home
from peer.net.bootstrap import RoomServers
from peer.net.linkstate import Link, LinkChanged, LinkInfo, Reason
from peer.net.mesh import RoomMesh
from peer.net.reach import without_server_stun
from peer.net.rtc import RtcTransport, quiet_aiortc_teardown
from peer.net.signaling import (
    Disconnected,
    PeerJoined,
    PeerLeft,
    ServerError,
    SignalingClient,
    SignalingError,
    SignalReceived,
)
from peer.store.blobs import BLOBS_FILE, BlobStore
from peer.store.sqlite import Store, StoreConflict, apply_batch, apply_batches, snapshot

log = logging.getLogger(__name__)

__all__ = [
    "Attachment",
    "DeliveryTimeout",
    "HomeInUse",
    "Link",
    "LinkChanged",
    "LinkInfo",
    "Message",
    "Peer",
    "PeerError",
    "Reason",
    "RoomHandle",
]


def now_ms() -> int:
    return int(time.time() * 1000)


class PeerError(Exception):
    """A failure worth one line to a user: server unreachable, timed out, not a member..."""


class DeliveryTimeout(TimeoutError):
    """:meth:`RoomHandle.wait_delivered` ran out of time; ``delivered`` is who has the message so far."""

    def __init__(self, message_id: str, delivered: set[str], waiting_for: set[str]) -> None:
        super().__init__(
            f"{message_id[:12]}… not delivered to {len(waiting_for)} member(s) in time"
            f" (delivered to {len(delivered)})"
        )
        self.message_id = message_id
        self.delivered = delivered
        self.waiting_for = waiting_for


class RoomHandle(FeaturesMixin):
    """One joined room, as seen by an application."""

    def __init__(self, peer: Peer, invite: Invite, core: Room, keeper: bool) -> None:
        self._peer = peer
        self.invite = invite
        self.core = core
        self.keeper = keeper
        self.room_id = invite.room_id
        self.mesh: RoomMesh | None = None
        self._subscribers: list[asyncio.Queue[RoomEvent | LinkChanged | AttachmentEvent | None]] = []
        self.files = RoomFiles(self, peer.blobs, peer.file_limits, auto_fetch=peer.auto_fetch)
        keeper_files.attach(self)  # a keeper holds attachments (peer/keeper_files.py)
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._replay = ReplayCache()
        self._closed = False
        self._outgoing: dict[str, asyncio.Queue[bytes | None]] = {}
        self.bootstraps = RoomServers(invite.servers)
        self.lan = False
        self.ice_from: str | None = None  # the server whose ICE servers (STUN/TURN) the mesh uses
        self.ice: Any = None
        self._server_first: dict[str, asyncio.Future[None]] = {}
        self.signals_relayed = 0  # our payloads sent through linked members
        self.signals_received_relayed = 0  # payloads for us that arrived through linked members
        self._reach_seen: tuple[int, frozenset[str]] | None = None
        self._announced: list[str] | None = None  # the server URLs we announce now (reach gossip)

    # -- bootstraps (peer/net/bootstrap.py) ------------------------------------------------------

    def servers_in_use(self) -> list[str]:
        """Signaling servers we are in this room on right now, in list order (what members announce)."""
        joined = {u for u, c in self._peer._signaling.items() if not c.closed and self.room_id in c.rooms}
        return [u for u in self.bootstraps.servers if u in joined]

    def add_servers(self, urls: list[str]) -> list[str]:
        """Use more signaling servers for this room (bounded); returns those that were new."""
        return self._peer.add_room_servers(self, urls)

    def expect_server(self, url: str) -> asyncio.Future[None]:
        """A future for the outcome of our first attempt to be in the room on ``url``."""
        fut = self._server_first.get(url)
        if fut is None:
            fut = self._server_first[url] = asyncio.get_running_loop().create_future()
        return fut

    def server_outcome(self, url: str, error: BaseException | None) -> None:
        fut = self.expect_server(url)
        if fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
            fut.exception()  # retrieved: a join that already succeeded elsewhere does not wait for it

    @property
    def server_present(self) -> set[str]:
        """Peers some signaling server of the room lists now (empty while every server is down)."""
        return self.bootstraps.present()

    def announce_servers(self) -> None:
        """Announce the servers we are in the room on (reach gossip) when that set changed."""
        urls = self.servers_in_use()
        if urls == self._announced or self.closed:
            return
        self._announced = urls
        hints = []
        for url in urls:
            try:  # a URL the reach codec cannot carry is not announced
                self.core.enable_reach([("server", url)], now_ms())
            except ValueError:
                continue
            hints.append(("server", url))
        with contextlib.suppress(ValueError):
            self.core.enable_reach(hints, now_ms())
        self._pump([])

    # -- application API -----------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self._peer.peer_id

    @property
    def closed(self) -> bool:
        return self._closed

    def messages(self) -> list[Message]:
        """The room's history in the one order every member shows."""
        return self.core.messages()

    def online_members(self) -> list[str]:
        """Members we have an authenticated, synced link with right now."""
        return sorted(self.core.online())

    def links(self) -> dict[str, LinkInfo]:
        """Our link to every peer the server lists: connecting / direct / relayed / unreachable (+ reason).

        Local knowledge (see :mod:`peer.net.linkstate`); a ``LinkChanged`` event marks every change.
        """
        return self.mesh.link_infos() if self.mesh is not None else {}

    def link(self, peer: str) -> LinkInfo | None:
        """Our link to ``peer``, or None when the server does not list it (offline)."""
        return self.mesh.link_info(peer) if self.mesh is not None else None

    def link_changed(self, info: LinkInfo) -> None:
        """Mesh callback: publish a ``LinkChanged`` event and wake waiters."""
        for q in self._subscribers:
            q.put_nowait(LinkChanged(info))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def send(
        self,
        text: str,
        *,
        ttl: float | None = None,
        reply_to: str | None = None,
        mentions: list[str] | None = None,
    ) -> Message:
        """Send a text; ``mentions`` (member ids) default to the ``@name``s in it. A text that does not
        fit one envelope raises :class:`peer.core.content.ContentTooLong` (nothing is sent or cut)."""
        ttl_s = int(ttl) if ttl is not None else None
        wanted = self.mentions_in(text) if mentions is None else mentions
        msg = self.core.send_text(text, now_ms(), ttl_s=ttl_s, reply_to=reply_to, mentions=wanted)
        self._commit([MessageReceived(msg)])
        return msg

    async def send_once(self, text: str, nonce: str, *, ttl: float | None = None) -> tuple[str, bool]:
        """Send unless a message was already sent under ``nonce`` (a caller-chosen idempotency key);
        ``(message id, sent now?)``. The key is committed with the message, so whoever owns the home
        after a crash or a change of owner still knows it (the last ``NONCES_KEPT`` keys per room)."""
        known = self._peer.sent_by_nonce(self.room_id, nonce)
        if known is not None:
            return known, False
        ttl_s = int(ttl) if ttl is not None else None
        msg = self.core.send_text(text, now_ms(), ttl_s=ttl_s, mentions=self.mentions_in(text))
        self._peer.note_nonce(self.room_id, nonce, msg.id)
        self._commit([MessageReceived(msg)])
        return msg.id, True

    async def unsend(self, message_id: str) -> bool:
        """Delete one of our own messages for everyone (a signed TOMBSTONE); False if not ours/held."""
        events = self.core.unsend(message_id, now_ms())
        self._commit(list(events))
        return bool(events)

    async def set_name(self, name: str) -> None:
        """Publish our display name in this room."""
        self._commit(self.core.set_profile(name, now_ms()))

    def display_name(self, peer: str) -> str | None:
        return self.core.display_name(peer)

    def label(self, peer: str) -> str:
        """How to show a member: its display name, or the start of its peer id."""
        return self.core.display_name(peer) or peer[:8]

    async def edit(self, message_id: str, text: str) -> Message:
        """Edit one of our own messages for everyone."""
        msg = self.core.edit(message_id, text, now_ms())
        self._commit([MessageUpdated(msg)])
        return msg

    async def react(self, message_id: str, emoji: str, *, on: bool = True) -> Message:
        """Add (or remove) our reaction to a message."""
        msg = self.core.react(message_id, emoji, now_ms(), on=on)
        self._commit([MessageUpdated(msg)])
        return msg

    async def set_typing(self, typing: bool) -> None:
        self.core.set_typing(typing, now_ms())
        self._commit([])

    def typing_members(self) -> list[str]:
        return self.core.typing_members(now_ms())

    async def mark_seen(self, message_ids: list[str]) -> None:
        """Tell senders we have shown their messages (read receipts)."""
        self.core.mark_seen(message_ids, now_ms())
        self._commit([])

    def seen_by(self, message_id: str) -> set[str]:
        return self.core.seen_by(message_id)

    async def set_timer(self, ttl_s: int) -> None:
        """Set the room's default message lifetime for everyone (0 = messages do not expire)."""
        self._commit(self.core.set_timer(ttl_s, now_ms()))

    async def remove_member(self, peer: str) -> None:
        """Remove a member (admins only; ``PermissionError`` otherwise); every sender rotates its chain so
        it reads nothing new. An admin can :meth:`readmit` it."""
        self._commit(self.core.remove_member(peer, now_ms()))

    async def leave(self) -> None:
        """Leave the room (anyone may); only an admin can readmit us."""
        self._commit(self.core.leave(now_ms()))

    async def set_admin(self, peer: str, admin: bool = True) -> None:
        """Appoint (``admin=True``) or demote an admin; admins only, in a room whose invite names an owner."""
        self._commit(self.core.set_admin(peer, admin, now_ms()))

    async def readmit(self, peer: str) -> None:
        """Let a removed member back in (admins only)."""
        self._commit(self.core.readmit(peer, now_ms()))

    async def set_announce(self, on: bool) -> None:
        """Announcement mode (admins only): while on, only admins' messages are shown to anyone."""
        self._commit(self.core.set_announce(on, now_ms()))

    # -- closed rooms with admin approval (issue 13 item 8) -----------------------------------------

    async def close_admission(self) -> None:
        """Close the room (admins only, a room whose invite names an owner; ``PermissionError``
        otherwise): from now on only the current members and those an admin admits (:meth:`admit`)
        are members; anyone else holding the invite only *asks to join* (:meth:`join_requests`)."""
        self._commit(self.core.close_admission(now_ms()))

    async def open_admission(self) -> None:
        """Reopen a closed room (admins only): anyone with the invite joins; pending requests are admitted."""
        self._commit(self.core.open_admission(now_ms()))

    async def admit(self, peer: str) -> None:
        """Admit ``peer`` (a join request, or a peer id ahead of its join) into a closed room (admins only)."""
        self._commit(self.core.admit(peer, now_ms()))

    def join_requests(self) -> list[str]:
        """Closed room: peer ids that asked to join and wait for an admin (at most 256)."""
        return list(self.core.join_requests())

    @property
    def admission_closed(self) -> bool:
        """Admission is closed: admins admit new members by name."""
        return self.core.membership.closed

    @property
    def owner(self) -> str | None:
        """The room's owner (from the invite); None for a room whose invite names none (legacy)."""
        return self.core.membership.owner

    def admins(self) -> list[str]:
        """Current admins, the owner included (every member, in a legacy room)."""
        return list(self.core.admins())

    def is_admin(self, peer: str) -> bool:
        return self.core.is_admin(peer)

    def removed_members(self) -> list[str]:
        """Removed (or departed) members; an admin can readmit them."""
        return sorted(self.core.membership.removed)

    @property
    def announce(self) -> bool:
        return self.core.membership.announce

    def members(self) -> list[str]:
        """Current members (peer ids), online or not."""
        return self.core.members()

    def others(self) -> list[str]:
        """Current members other than us."""
        return [m for m in self.core.members() if m != self.peer_id]

    def erased_on(self, message_id: str) -> set[str]:
        """Members whose signed receipt says they erased our message (see ``MessageErased`` events)."""
        return self.core.erased_on(message_id)

    def delivered_to(self, message_id: str) -> set[str]:
        """Members known to hold our message ``message_id`` (acked it, or said so in a HELLO)."""
        return self.core.delivered_to(message_id)

    # The waits share one rule: they return when their condition holds and raise ``TimeoutError`` (a
    # subclass carrying what is known so far, for ``wait_delivered``) when it does not within ``timeout``.

    async def wait_delivered(self, message_id: str, timeout: float, *, everyone: bool = False) -> set[str]:
        """Wait until our message ``message_id`` is delivered; return the members that have it.

        Delivered means: at least one other member has it and so does every member online now
        (``everyone=True``: every current member, online or not). Raises :class:`DeliveryTimeout`.
        """

        def missing() -> set[str] | None:
            acked = self.core.delivered_to(message_id)
            wanted = set(self.others()) if everyone else self.core.online()
            if acked and wanted <= acked:
                return None
            return (wanted - acked) or set(self.others())

        try:
            await self.wait_for(lambda: missing() is None, timeout)
        except TimeoutError:
            raise DeliveryTimeout(
                message_id, self.core.delivered_to(message_id), missing() or set()
            ) from None
        return self.core.delivered_to(message_id)

    async def wait_connected(self, timeout: float) -> set[str]:
        """Wait until we are linked with every peer the server lists and have caught up with them;
        return who is online. Raises ``TimeoutError``."""

        def done() -> bool:
            present = set(self.mesh.present) if self.mesh else set()
            return present <= self.core.online() and self.core.sync.caught_up()

        await self.wait_for(done, timeout)
        return self.core.online()

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        """Wait until ``predicate()`` is true, re-checked after every change of room state; raises
        ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._wait_change(timeout)

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    # -- attachments (peer/attachments.py) ----------------------------------------------------------

    async def send_file(
        self,
        path: str | os.PathLike[str],
        *,
        ttl: float | None = None,
        name: str | None = None,
        mime: str | None = None,
        thumb: bytes | None = None,
        thumb_mime: str | None = None,
        duration_ms: int | None = None,
    ) -> Message:
        """Send a file: sealed in chunks with a fresh key (ciphertext in the home's blob store), announced
        by a ``"file"`` message that rides order, expiry and unsend; members fetch it from whoever holds
        it. Raises :class:`peer.core.files.FileLimitError` over a limit (file size, room quota)."""
        return await self.files.send_file(
            path, ttl=ttl, name=name, mime=mime, thumb=thumb, thumb_mime=thumb_mime, duration_ms=duration_ms
        )

    def attachment(self, message_id: str) -> Attachment:
        """The attachment of a file message (``KeyError`` if there is none): ``await .save(path)``."""
        return self.files.attachment(message_id)

    def attachments(self) -> list[Attachment]:
        return self.files.attachments()

    def publish(self, events: list[AttachmentEvent]) -> None:
        for ev in events:
            for q in self._subscribers:
                q.put_nowait(ev)

    async def events(
        self, *, history: bool = False
    ) -> AsyncIterator[RoomEvent | LinkChanged | AttachmentEvent]:
        """Room events as they happen (and ``LinkChanged``); ``history=True`` first replays the stored
        messages.

        Our own messages, edits and reactions are events too (whichever process asked for them through
        the home's control socket), so every view of the room shows the same thing."""
        queue: asyncio.Queue[RoomEvent | LinkChanged | AttachmentEvent | None] = asyncio.Queue()
        if history:
            for m in self.core.messages():
                queue.put_nowait(MessageReceived(m))
        self._subscribers.append(queue)
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(queue)

    # -- signaling through the mesh (see peer/core/room/relay.py) ---------------------------------

    def reach_hints(self) -> list[str]:
        """Signaling server URLs learned from members' signed announcements (persisted, newest first):
        what a restarting member can try when its invite's server is down."""
        return self.core.reach_hints()

    async def send_signal(self, to: str, payload: str) -> None:
        """Send a sealed payload through the server when connected, and through linked members when the
        server is down or does not list ``to``; ``ConnectionError`` if neither path exists."""
        via_server = False
        try:
            await self._peer._send_signal(self, to, payload)
            via_server = True
        except (ConnectionError, SignalingError, OSError) as exc:
            log.debug("signal to %s not sent via the server: %s", to[:8], type(exc).__name__)
        if via_server and to in self.server_present:
            return
        if self.core.relay_signal(to, payload, now_ms()):
            self.signals_relayed += 1
            self._pump([])
        elif not via_server:
            raise ConnectionError("no signaling path: server down and no linked member to relay")

    def wake(self) -> None:
        """Wake every waiter (:meth:`wait_for`) to re-check its condition."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _relay_pump(self) -> None:
        """After a transmit: hand relayed payloads to the mesh; dial members that gossip says are up."""
        mesh = self.mesh
        if mesh is None:
            return
        for sender, payload in self.core.take_relayed():
            self.signals_received_relayed += 1
            self._peer.spawn(mesh.handle_signal(sender, payload))
        seen = (self.core.reach_changes, frozenset(self.core.online()))
        if seen == self._reach_seen:
            return  # nothing new to dial: no announcement changed and no link came or went
        self._reach_seen = seen
        self._peer.add_room_servers(self, self.core.reach_hints())  # learned servers (bounded list)
        for peer in self.core.reachable(now_ms()):
            if peer not in mesh.present:
                mesh.peer_joined(peer)

    def set_reach_hints(self, hints: list[tuple[str, str]]) -> None:
        """What we announce to linked members as ways to reach us (``("server", url)``, ...); replaces
        the default (our invite's server). ``ValueError`` for a hint the REACH codec cannot carry."""
        self.core.enable_reach(hints, now_ms())
        self._pump([])

    # -- network side ----------------------------------------------------------------------------

    def seal(self, to: str, kind: str, body: dict[str, Any]) -> str:
        return seal_signal(self._peer.identity, self.invite, to, kind, body, now_ms())

    def open(self, sender: str, payload: str) -> tuple[str, dict[str, Any]]:
        opened = open_signal(self.invite, self.peer_id, sender, payload, now_ms(), self._replay)
        self.core.learn_bundle(opened.sender_bundle)
        body = opened.body if isinstance(opened.body, dict) else {"value": opened.body}
        return opened.kind, body

    def link_up(self, peer: str, link: RtcTransport) -> None:
        old = self._readers.pop(peer, None)
        if old is not None:
            old.cancel()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._outgoing[peer] = queue
        self._readers[peer] = asyncio.create_task(self._read(peer, link, queue), name=f"read-{peer[:8]}")
        self.files.link_up(peer, link)

    def link_down(self, peer: str) -> None:
        pass  # the reader notices the end of the link and tells the core

    async def _read(self, peer: str, link: RtcTransport, queue: asyncio.Queue[bytes | None]) -> None:
        """Own one link: a writer task sends its frames in order; this task feeds what arrives to the core."""
        writer = asyncio.create_task(self._write(peer, link, queue), name=f"write-{peer[:8]}")
        try:
            self.core.link_up(peer, now_ms())
            self._pump([])
            async for frame in link:
                events = self.core.receive(peer, frame, now_ms())
                self._pump(events)
        except ConnectionError:
            pass
        finally:
            writer.cancel()
            if self._outgoing.get(peer) is queue:
                del self._outgoing[peer]
            if not self._closed:
                with contextlib.suppress(Exception):
                    self._pump(self.core.link_down(peer, now_ms()))

    async def _write(self, peer: str, link: RtcTransport, queue: asyncio.Queue[bytes | None]) -> None:
        """Send one link's frames in order. A slow link only delays itself, never the room."""
        while (data := await queue.get()) is not None:
            try:
                await link.send(data)
            except ValueError as exc:  # a frame over the peer's limit: drop it, keep the link
                log.warning("frame to %s dropped: %s", peer[:8], exc)
            except ConnectionError:
                return

    def _pump(self, events: list[RoomEvent]) -> None:
        """Publish events now; schedule the peer's flush (group commit, then transmit) for this loop turn.

        Events go out before the commit: what they show is re-fetched from other members if we crash
        before it is on disk. What we *send* (acks, our own envelopes) waits for the commit.
        """
        self.files.on_events(events)
        keeper_files.on_pump(self)
        for ev in events:
            if isinstance(ev, MemberOnline) and ev.online and self.mesh is not None:
                self.mesh.link_ready(ev.peer)  # handshake done: the link is direct or relayed now
            elif isinstance(ev, MemberJoined) and self.mesh is not None:
                self.mesh.forgive(ev.peer)  # e.g. readmitted: its refused links no longer count
            for q in self._subscribers:
                q.put_nowait(ev)
        self._peer.schedule_flush(self)

    def _commit(self, events: list[RoomEvent]) -> None:
        """For the application's mutators: publish, then commit and transmit NOW, so a mutator returns
        only after what it did is on disk (and raises if it could not be stored)."""
        self._pump(events)
        self._peer.flush()

    def _transmit(self) -> None:
        """After the flush committed: transmit, drop dead links, re-arm the timer, publish events."""
        mesh = self.mesh
        for neighbour, data in self.core.data_to_send():
            queue = self._outgoing.get(neighbour)
            if queue is not None:
                queue.put_nowait(data)
        for dead in self.core.take_dead_links():
            if mesh is not None:
                if dead in self.core.membership.removed:
                    mesh.peer_left(dead)  # do not redial a removed member
                mesh.drop_link(dead)
        self._relay_pump()
        self._arm_timer()
        # wake every waiter: set this generation's event and start a new one
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.core.next_timer()
        if when is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (when - now_ms()) / 1000)
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        events = self.core.handle_timer(now_ms())
        self._pump(events)

    async def drain(self, timeout: float = 2.0) -> bool:
        """Wait (at most ``timeout``) until every linked member holds every entry of ours, including
        sender keys sealed to members we learned of late; True if so. ``close`` calls it first, so a
        short-lived ``ephemesh send`` does not leave with a chain key nobody else can hand on."""
        if self._closed or not self.core.online():
            return self.core.flushed()
        try:
            await self.wait_for(self.core.flushed, timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if not self._closed:
            await self.drain()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._readers.values():
            task.cancel()
        for task in self._readers.values():
            with contextlib.suppress(BaseException):
                await task
        await self.files.close()
        if self.mesh is not None:
            await self.mesh.close()
        for q in self._subscribers:
            q.put_nowait(None)


#: a signaling connection that lived this long resets the reconnect backoff
STABLE_S = 30.0
MAX_BACKOFF_S = 30.0
NONCE_STATE = "control/sent"
NONCES_KEPT = 256


class Peer:
    """A member of any number of rooms, with one identity and one store per home directory.

    A Peer owns its home: it takes the home's lock when created (:class:`HomeInUse` if another process
    or Peer has it) and, once started (``async with``, :meth:`start` or the first :meth:`join`), serves
    the home's control socket so other commands can work through it (see :mod:`peer.control`).
    ``control=False`` skips the socket (the lock is always taken).
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        store_path: str | None = None,
        connect_timeout: float = 20.0,
        reconnect_initial: float = 0.5,
        replaced_backoff: float = 30.0,
        name: str | None = None,
        control: bool = True,
        file_limits: FileLimits | None = None,
        auto_fetch: int = 0,
        serve: str | None = None,
        lan_host: str | None = None,
        announced_servers: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        self.name = name
        #: ``HOST:PORT`` of a signaling endpoint to run in this process (``keep --serve``)
        self._serve = serve
        self._serve_runner: Any = None
        self._lan_host = lan_host
        self._lan: Any = None  # peer.net.lan.LanDiscovery, started by the first room joined with lan=True
        #: our own signaling endpoints (``--serve``, the LAN endpoint): every room we join uses them too
        self.endpoint_urls: list[str] = []
        #: server URLs members announced for a room (peer exchange); see ``_announced_servers``
        self.announced_servers = announced_servers
        self._reconnect_initial = reconnect_initial
        self._replaced_backoff = replaced_backoff
        self.home: Path = resolve_home(home)
        self._lock = HomeLock.acquire(self.home)  # raises HomeInUse: never two writers of one home
        try:
            self.identity = load_or_create_identity(self.home)
            self.peer_id = self.identity.peer_id
            self.store = Store(store_path if store_path is not None else self.home / STORE_FILE)
            self.blobs = BlobStore(":memory:" if store_path == ":memory:" else self.home / BLOBS_FILE)
        except BaseException:
            self._lock.release()
            raise
        self._control_wanted = control
        self._control: Any = None
        self._joining: dict[str, asyncio.Future[RoomHandle]] = {}
        self._nonces: dict[str, dict[str, str]] = {}  # room -> idempotency key -> message id
        self._extra_states: dict[str, dict[str, bytes]] = {}  # committed with the room's next batch
        self.store.purge_expired(now_ms(), DEFAULT_SKEW_MS)  # nothing expired while we were down survives
        self.blobs.purge_expired(now_ms())  # nor any attachment of it
        self.file_limits = file_limits or FileLimits()
        self.auto_fetch = auto_fetch  # fetch others' attachments up to this size as they arrive
        self.rooms: dict[str, RoomHandle] = {}
        self._signaling: dict[str, SignalingClient] = {}
        self._signaling_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_timeout = connect_timeout
        self._stopped = asyncio.Event()
        self._dirty: set[RoomHandle] = set()
        self._store_closed = False
        self._broken = False
        self._flush_handle: asyncio.Handle | None = None

    async def __aenter__(self) -> Peer:
        try:
            await self.start()
        except BaseException:
            await self.close()  # the home's lock and store: a failed start holds neither
            raise
        return self

    async def start(self) -> None:
        """Serve the home's control socket and, with ``serve``, the signaling endpoint (idempotent)."""
        if self._serve is not None and self._serve_runner is None and not self._store_closed:
            await self._start_endpoint(self._serve)
        if self._control is not None or not self._control_wanted or self._store_closed:
            return
        from peer.control import Controller, ControlServer

        server = ControlServer(Controller(self), self.home)
        self._control = server
        await server.start()

    async def _start_endpoint(self, address: str) -> None:
        """Run the signaling app (same code, limits and hardening as ``ephemesh serve``) in this process;
        its URL joins :attr:`endpoint_urls`, so every room we are in is reachable through it."""
        from signaling.app import start_server
        from signaling.config import SignalingConfig, default_web_root, metrics_address, public_urls

        try:
            host, port = metrics_address(address)  # HOST:PORT, [v6]:PORT
        except ValueError:
            raise PeerError(f"--serve wants HOST:PORT, not {address!r}") from None
        config = SignalingConfig(host=host, port=port, web_root=default_web_root(), test_pages=False)
        try:
            self._serve_runner, bound = await start_server(config)
        except OSError as exc:
            raise PeerError(f"cannot serve signaling on {address}: {exc.strerror or exc}") from exc
        url = public_urls(config, bound)[0]
        self.endpoint_urls.append(url)
        log.info("signaling endpoint on %s", url)

    @property
    def serve_url(self) -> str | None:
        """The URL of our ``serve`` endpoint once started (put it in invites: ``room invite --server``)."""
        return self.endpoint_urls[0] if self._serve_runner is not None and self.endpoint_urls else None

    async def _lan_join(self, handle: RoomHandle) -> None:
        """Start LAN discovery (once per process), use our LAN endpoint for the room, announce it."""
        from peer.net.lan import LanDiscovery

        if self._lan is None:
            lan: LanDiscovery | None = None
            try:
                lan = LanDiscovery(self._lan_found, host=self._lan_host, on_lost=self._lan_lost)
                await lan.start()
            except OSError as exc:
                if lan is not None:
                    await lan.close()
                raise PeerError(f"LAN discovery: {exc.strerror or exc}") from exc
            self._lan = lan
        if handle.room_id in self.rooms and handle.mesh is not None and handle._server_first:
            self.add_room_servers(handle, [self._lan.url])  # a room joined before: connect there now
        else:
            handle.bootstraps.add([self._lan.url])  # a room being joined: its loops start next
        await self._lan.add_room(handle.invite)

    @property
    def lan_url(self) -> str | None:
        """Our LAN endpoint (a browser on this network can load the web client from it)."""
        return self._lan.url if self._lan is not None else None

    def _lan_found(self, room_id: str, url: str) -> None:
        handle = self.rooms.get(room_id)
        if handle is not None and not handle.closed:
            log.info("room %s: a member's LAN endpoint found", room_id[:8])
            self.add_room_servers(handle, [url])

    def _lan_lost(self, room_id: str, url: str) -> None:
        handle = self.rooms.get(room_id)
        if handle is None or handle.closed or url in self.endpoint_urls:
            return
        for peer in handle.bootstraps.remove(url):
            if handle.mesh is not None:
                handle.mesh.peer_left(peer)
        self._release_servers()

    def _quiet(self) -> None:
        quiet_aiortc_teardown(asyncio.get_running_loop())

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception())

    # -- rooms -------------------------------------------------------------------------------------

    async def join(self, invite: str | Invite, *, keeper: bool = False, lan: bool = False) -> RoomHandle:
        """Join (or resume) a room and connect to its members through the invite's servers (and, with
        ``lan``, the members found on the local network by DNS-SD, see :mod:`peer.net.lan`)."""
        inv = invite if isinstance(invite, Invite) else Invite.parse(invite)
        if self._store_closed:
            raise PeerError("this peer is closed")
        self._quiet()
        await self.start()
        joining = self._joining.get(inv.room_id)
        if joining is not None:  # a join of this room is under way: its outcome is ours
            return await asyncio.shield(joining)
        if inv.room_id in self.rooms:
            known = self.rooms[inv.room_id]
            if lan and not known.lan:  # opted in to LAN discovery now
                known.lan = True
                await self._lan_join(known)
            return known
        future: asyncio.Future[RoomHandle] = asyncio.get_running_loop().create_future()
        self._joining[inv.room_id] = future
        try:
            handle = await self._join(inv, keeper, lan)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(handle)
        finally:
            del self._joining[inv.room_id]
        return handle

    async def _join(self, inv: Invite, keeper: bool, lan: bool = False) -> RoomHandle:
        """Join on every server of the room (invite's, our endpoints', announced, LAN-found; bounded, see
        :mod:`peer.net.bootstrap`); return once one of them has us in the room (or at once, for a room
        found on the LAN only). ``PeerError`` when none can be reached and LAN discovery is off."""
        now = now_ms()
        if not inv.servers and not lan:
            raise PeerError("this invite lists no signaling server: join it with --lan (LAN discovery)")
        self.store.add_room(inv.room_id, inv.url(), now)
        core = Room(self.identity, inv, now, keeper=keeper, snapshot=snapshot(self.store, inv.room_id))
        handle = RoomHandle(self, inv, core, keeper)
        handle.lan = lan
        handle.bootstraps.add(self.endpoint_urls)
        handle.bootstraps.add(self._announced_servers(inv.room_id))
        handle.mesh = RoomMesh(
            self.peer_id,
            handle.seal,
            handle.open,
            handle.send_signal,
            handle.link_up,
            handle.link_down,
            ice=None,
            connect_timeout=self._connect_timeout,
            on_link_state=handle.link_changed,
        )
        self.rooms[inv.room_id] = handle
        try:
            if lan:
                await self._lan_join(handle)
            first = [handle.expect_server(url) for url in handle.bootstraps.servers]
            for url in handle.bootstraps.servers:
                self._ensure_server(url, handle)
            error: BaseException | None = None
            pending = set(first)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(not f.cancelled() and f.exception() is None for f in done):
                    break
                error = error or next((f.exception() for f in done if not f.cancelled()), None)
            else:
                if not lan:
                    url = inv.servers[0] if inv.servers else "?"
                    if isinstance(error, SignalingError) and error.code not in ("connect-failed", "timeout"):
                        raise PeerError(f"signaling server {url}: cannot join the room ({error.code})")
                    raise PeerError(f"cannot reach any signaling server of this room ({url}: {error})")
        except BaseException:
            del self.rooms[inv.room_id]  # nothing of it was sent: the next join starts afresh
            await handle.close()
            self._release_servers()
            raise
        if self.name and not keeper and core.display_name(self.peer_id) != self.name:
            core.set_profile(self.name, now_ms())
        handle._commit([])  # joined: our ADD (and name) are on disk when join returns
        return handle

    def _announced_servers(self, room_id: str) -> list[str]:
        """Server URLs other members announced for ``room_id`` (peer exchange; wired at merge time to the
        gossip of reachability: :meth:`learned_servers`, stored) and those of the ``announced_servers``
        hook. Bounded by the room's server list either way."""
        hooked = list(self.announced_servers(room_id)) if self.announced_servers is not None else []
        return self.learned_servers(room_id) + hooked

    def add_room_servers(self, handle: RoomHandle, urls: list[str]) -> list[str]:
        """Use more servers for ``handle``'s room (LAN discovery, announcements); returns the new ones."""
        new = handle.bootstraps.add(urls)
        for url in new:
            self._ensure_server(url, handle)
        return new

    def _ensure_server(self, url: str, handle: RoomHandle) -> None:
        """Run ``url``'s connection loop; if it is connected already, join ``handle``'s room on it now."""
        task = self._signaling_tasks.get(url)
        if task is None or task.done():
            self._signaling_tasks[url] = asyncio.create_task(self._server_loop(url), name=f"sig-{url}")
            return
        client = self._signaling.get(url)
        if client is not None and not client.closed:
            self.spawn(self._join_on(url, client, handle))

    def _release_servers(self) -> None:
        """Stop the loops of servers no room uses any more."""
        used = {u for h in self.rooms.values() for u in h.bootstraps.servers}
        for url in [u for u in self._signaling_tasks if u not in used]:
            self.spawn(self._stop_server(url, self._signaling_tasks.pop(url)))

    async def _stop_server(self, url: str, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        client = self._signaling.pop(url, None) if url not in self._signaling_tasks else None
        if client is not None:  # (a loop started again for ``url`` meanwhile owns what is there now)
            await client.close()

    async def _join_on(self, url: str, client: SignalingClient, handle: RoomHandle) -> None:
        mesh = handle.mesh
        if mesh is None or handle.closed:
            return
        try:
            present = await client.join(handle.room_id)
        except (SignalingError, ConnectionError) as exc:
            log.warning("joining room %s on %s failed: %s", handle.room_id[:8], url, exc)
            handle.server_outcome(url, exc)
            return
        if handle.ice_from is None or url == handle.bootstraps.servers[0]:
            handle.ice_from, handle.ice = url, client.ice
            mesh.set_ice(client.ice)  # fresh TURN credentials too
        _new, gone = handle.bootstraps.listing(url, present)
        mesh.set_present(present)
        for peer in gone:
            mesh.peer_left(peer)
        handle.server_outcome(url, None)
        handle.announce_servers()

    async def _server_loop(self, url: str) -> None:
        """Connect to ``url``, join every room that lists it, dispatch its events; when the connection
        drops or cannot be made, reconnect with backoff and rejoin.

        Existing WebRTC links do not need the server and stay up meanwhile. Backoff: a connection that
        lived ``STABLE_S`` resets it; quick drops keep doubling it (a server that welcomes and closes
        cannot make us hammer it). Replaced because the same identity connected elsewhere: wait
        ``replaced_backoff`` before trying again, and say so once, not at every round.
        """
        loop = asyncio.get_running_loop()
        delay = 0.0
        said_elsewhere = False
        while not self._stopped.is_set():
            try:
                client = await SignalingClient.connect(url, self.identity.public_key, self.identity.sign)
            except (SignalingError, OSError, TimeoutError) as exc:
                err = exc if isinstance(exc, SignalingError) else SignalingError("connect-failed", str(exc))
                for handle in self._rooms_on(url):
                    handle.server_outcome(url, err)
                delay = self._reconnect_initial if delay == 0.0 else min(delay * 2, MAX_BACKOFF_S)
                log.info("signaling server %s unreachable (%s); next try in %.1fs", url, err.code, delay)
                await asyncio.sleep(delay * (0.75 + random.random() / 2))  # a backoff timer
                continue
            self._signaling[url] = client
            up_since = loop.time()
            try:
                for handle in self._rooms_on(url):
                    await self._join_on(url, client, handle)
                gone = await self._dispatch(url, client)
            finally:  # its tasks and HTTP session: never one leaked per reconnect, nor when we are stopped
                await client.close()
                if self._signaling.get(url) is client:
                    del self._signaling[url]
            for handle in self._rooms_on(url):  # what it listed is unknown now; others may still list it
                _new, left = handle.bootstraps.listing(url, [])
                for peer in left:
                    if handle.mesh is not None:
                        handle.mesh.peer_left(peer)
                if handle.ice_from == url:
                    self._reselect_ice(handle, url)
                handle._reach_seen = None  # dial again whom reach gossip says is up (peer/core/room/relay.py)
                handle.announce_servers()
                handle._pump([])
                handle.wake()
            if self._stopped.is_set():
                return
            if loop.time() - up_since >= STABLE_S:
                delay, said_elsewhere = 0.0, False
            if gone is not None and gone.replaced:
                if not said_elsewhere:
                    log.warning(
                        "this identity is connected elsewhere (another process or device uses it);"
                        " trying again every %.0fs",
                        self._replaced_backoff,
                    )
                    said_elsewhere = True
                delay = max(delay, self._replaced_backoff)
            else:
                if delay == 0.0:
                    log.warning("signaling connection to %s lost; reconnecting", url)
                delay = self._reconnect_initial if delay == 0.0 else min(delay * 2, MAX_BACKOFF_S)
            await asyncio.sleep(max(delay, 0.01) * (0.75 + random.random() / 2))  # a backoff timer

    def _reselect_ice(self, handle: RoomHandle, dead: str) -> None:
        """The server our ICE servers came from (``dead``) is gone: take another connected server's,
        else drop the STUN URLs on its host (its embedded STUN is likely gone with it; TURN stays)."""
        for url in handle.bootstraps.servers:
            client = self._signaling.get(url)
            if client is not None and not client.closed and handle.room_id in client.rooms:
                handle.ice_from, handle.ice = url, client.ice
                break
        else:
            handle.ice_from, handle.ice = None, without_server_stun(handle.ice, dead)
        if handle.mesh is not None:
            handle.mesh.set_ice(handle.ice)

    def _rooms_on(self, url: str) -> list[RoomHandle]:
        return [h for h in self.rooms.values() if url in h.bootstraps.servers and not h.closed]

    async def _dispatch(self, url: str, client: SignalingClient) -> Disconnected | None:
        async for ev in client.events():
            if isinstance(ev, PeerJoined | PeerLeft | SignalReceived):
                handle = self.rooms.get(ev.room)
                if handle is None or handle.mesh is None:
                    continue
                if isinstance(ev, PeerJoined):
                    if handle.bootstraps.joined(url, ev.peer) or ev.peer not in handle.mesh.present:
                        handle.mesh.peer_joined(ev.peer)
                elif isinstance(ev, PeerLeft):
                    if handle.bootstraps.left(url, ev.peer):
                        handle.mesh.peer_left(ev.peer)
                else:
                    self.spawn(handle.mesh.handle_signal(ev.sender, ev.payload))
            elif isinstance(ev, ServerError):
                log.info("signaling server error: %s", ev.code)
            elif isinstance(ev, Disconnected):
                return ev
        return None

    async def _send_signal(self, handle: RoomHandle, to: str, payload: str) -> None:
        """Through one connected server of the room, preferring those that list ``to``."""
        connected = [u for u, c in self._signaling.items() if not c.closed and handle.room_id in c.rooms]
        for url in handle.bootstraps.route(to, connected):
            client = self._signaling.get(url)
            if client is None:
                continue
            try:
                await client.signal(handle.room_id, to, payload)
                return
            except SignalingError:
                continue
        raise ConnectionError("no signaling server connected")

    def learned_servers(self, room_id: str) -> list[str]:
        """Signaling server URLs members of ``room_id`` announced (stored; empty if none), newest first;
        readable before joining, e.g. when the invite's server is down."""
        from peer.core.room.relay import SERVERS_STATE

        raw = self.store.get_state(room_id, SERVERS_STATE)
        urls = json.loads(raw) if raw else []
        return [u for u in urls if isinstance(u, str)]

    def sent_by_nonce(self, room_id: str, nonce: str) -> str | None:
        return self._room_nonces(room_id).get(nonce)

    def note_nonce(self, room_id: str, nonce: str, message_id: str) -> None:
        nonces = self._room_nonces(room_id)
        nonces[nonce] = message_id
        while len(nonces) > NONCES_KEPT:
            del nonces[next(iter(nonces))]
        self._extra_states.setdefault(room_id, {})[NONCE_STATE] = json.dumps(list(nonces.items())).encode()

    def _room_nonces(self, room_id: str) -> dict[str, str]:
        nonces = self._nonces.get(room_id)
        if nonces is None:
            raw = self.store.get_state(room_id, NONCE_STATE)
            nonces = {str(k): str(v) for k, v in json.loads(raw)} if raw else {}
            self._nonces[room_id] = nonces
        return nonces

    def _take_persist(self, handle: RoomHandle) -> PersistBatch:
        batch = handle.core.take_persist()
        extra = self._extra_states.pop(handle.room_id, None)
        if extra:
            batch.states.update(extra)
        return batch

    def persist(self, handle: RoomHandle) -> None:
        apply_batch(self.store, handle.room_id, self._take_persist(handle), own=self.peer_id)

    def schedule_flush(self, handle: RoomHandle) -> None:
        self._dirty.add(handle)
        if self._flush_handle is None and not self._store_closed and not self._broken:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def flush(self) -> None:
        """Commit now what is pending (normally committed at the end of this event-loop turn)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._broken:
            raise PeerError("this peer stopped: its store refused a write")
        if not self._store_closed:
            self._flush()

    def _flush(self) -> None:
        """Group commit: persist every room that changed during this loop turn in one transaction, THEN
        transmit what depends on it (a chain key is on disk before anything sealed with it leaves)."""
        self._flush_handle = None
        dirty, self._dirty = list(self._dirty), set()
        try:
            conflicts = apply_batches(
                self.store, [(h.room_id, self._take_persist(h)) for h in dirty], own=self.peer_id
            )
        except StoreConflict as exc:
            # Our own (sender, seq) already stored with other content: a second writer of this home.
            # Nothing of this commit was stored and nothing depending on it leaves; stop for good.
            log.error("%s", exc)
            self._broken = True
            self._stopped.set()
            raise PeerError(str(exc)) from exc
        for room_id, sender, seq in conflicts:
            log.warning("room %s: a second envelope for %s:%d was refused", room_id[:8], sender[:8], seq)
        for handle in dirty:
            if not handle.closed:
                handle._transmit()

    async def run_forever(self) -> None:
        await self._stopped.wait()

    async def close(self) -> None:
        """Close links, signaling and the store, then give up the home; safe to call more than once."""
        if self._store_closed:
            return
        try:
            await self._close()
        finally:
            self._store_closed = True
            with contextlib.suppress(Exception):
                self.store.close()
            with contextlib.suppress(Exception):
                self.blobs.close()
            self._lock.release()

    async def _close(self) -> None:
        self._stopped.set()
        if self._control is not None:  # first: a send a client got accepted is committed and answered
            await self._control.close()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        with contextlib.suppress(PeerError):
            self._flush()  # commit what is pending before anything closes
        for handle in list(self.rooms.values()):
            await handle.close()
            if not self._broken:
                self.persist(handle)
        # stop the loops first (one may be reconnecting), then close every client they left
        for task in list(self._signaling_tasks.values()) + list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for client in list(self._signaling.values()):
            await client.close()
        if self._lan is not None:
            await self._lan.close()
        if self._serve_runner is not None:
            await self._serve_runner.cleanup()


__all__ += [
    "AdmissionChanged",
    "Delivered",
    "MemberJoined",
    "MemberLeft",
    "MemberOnline",
    "MessageErased",
    "MessageExpired",
    "MessageReceived",
    "MessageSeen",
    "MessageUpdated",
    "ProfileChanged",
    "ProtocolError",
    "RolesChanged",
    "RoomEvent",
    "TimerChanged",
    "Typing",
]
