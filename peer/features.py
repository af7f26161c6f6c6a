"""Room API of issue 15 (mixed into :class:`peer.node.RoomHandle`): mentions, location, forward,
search, last seen. Each call goes to the sans-IO core and commits like the other mutators."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from peer.core.content import location as make_location
from peer.core.events import Message, MessageReceived
from peer.core.mentions import find_mentions

if TYPE_CHECKING:
    from peer.core.room import Room
    from peer.forwarding import ForwardProgress
    from peer.node import Peer


def _now_ms() -> int:
    return int(time.time() * 1000)


class FeaturesMixin:
    core: Room
    room_id: str
    _peer: Peer

    def _commit(self, events: list[Any]) -> None:  # pragma: no cover - RoomHandle's
        raise NotImplementedError

    def label(self, peer: str) -> str:  # pragma: no cover - RoomHandle's
        raise NotImplementedError

    def mentions_in(self, text: str) -> list[str]:
        """The members ``@name`` (or ``@<id prefix>``) in ``text`` names, as :meth:`send` finds them."""
        names = {m: self.core.display_name(m) for m in self.core.members() if m != self.core.peer_id}
        return find_mentions(text, names)

    async def send_location(
        self, lat: float, lon: float, accuracy_m: float | None = None, *, ttl: float | None = None
    ) -> Message:
        """Share a position (degrees, metres); ``ValueError`` out of range."""
        ttl_s = int(ttl) if ttl is not None else None
        msg = self.core.send_location(make_location(lat, lon, accuracy_m), _now_ms(), ttl_s=ttl_s)
        self._commit([MessageReceived(msg)])
        return msg

    async def forward(
        self,
        message_id: str,
        other: Any,
        *,
        ttl: float | None = None,
        timeout: float | None = None,
        progress: ForwardProgress | None = None,
    ) -> Message:
        """Forward a message shown here to ``other`` (a RoomHandle, or the id of a room this peer is in)
        as a new message of ours marked forwarded; its expiry is no later than the original's.
        ``ValueError`` if the message is gone (expired, unsent, never here) or has expired.

        An attachment is fetched whole first if we do not hold it (``timeout``, default
        :data:`peer.forwarding.FETCH_TIMEOUT_S`) and re-sealed under a fresh key in the other room
        (:mod:`peer.forwarding`); it raises :class:`peer.forwarding.ForwardError` (a ``ValueError``)
        when it cannot be fetched, or when the original is erased while it is being re-sealed."""
        target = self._peer.rooms.get(other) if isinstance(other, str) else other
        if target is None or target.closed:
            raise ValueError("not in that room")
        source = self.core.message(message_id)
        if source is None:
            raise ValueError(
                "cannot forward: no such message here (it expired, was unsent, or never arrived)"
            )
        if source.file is not None:
            from peer.forwarding import forward_attachment

            return await forward_attachment(
                self,  # type: ignore[arg-type]
                source,
                target,
                ttl=ttl,
                timeout=timeout,
                progress=progress,
            )
        ttl_s = int(ttl) if ttl is not None else None
        msg: Message = target.core.forward(source, self.label(source.sender), _now_ms(), ttl_s=ttl_s)
        target._commit([MessageReceived(msg)])
        return msg

    def search(self, query: str) -> list[Message]:
        """Messages shown here whose text has every word of ``query`` (case-insensitive), in room
        order. In memory only; an expired or unsent message is gone from the results at once."""
        return self.core.search(query)

    def last_seen(self) -> dict[str, int]:
        """Member -> when we last saw it online (ms since the epoch), for members offline now; within
        the room timer, never for members that opted out, and empty while we opt out."""
        return self.core.last_seen(_now_ms())

    @property
    def share_last_seen(self) -> bool:
        return self.core.share_last_seen

    async def set_share_last_seen(self, share: bool) -> None:
        """Opt in or out (this room) of members seeing when we were last online."""
        self.core.set_share_last_seen(share, _now_ms())
        self._commit([])
