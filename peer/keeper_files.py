"""A keeper holds attachments (issue 15): the asyncio side of :mod:`peer.core.room.keeping`.

A keeper (``ephemesh keep``, ``Peer.join(..., keeper=True)``) opens no message, so authors offer it
their files over their links (KEEPER / KEEP_FILE, PROTOCOL.md "Keepers hold attachments"). For every
file offered this module has the room's :class:`peer.attachments.RoomFiles` fetch it with the normal
transfer engine (every blob verified; from every linked member at once), store it as ciphertext bound
to its message's envelope and expiry, and serve it like any member: a member who was offline while the
author left gets the file from the keeper. When the envelope is erased (expiry, unsend) the blobs go.

Limits are the members' (``FileLimits``): the per-file limit, and the per-room quota (1 GB by default;
``ephemesh keep --file-quota MB``). A quota of 0 turns it off: the keeper then says nothing and holds
nothing. The file key stays in this process's memory only, never on the keeper's disk; so a restarted
keeper starts empty (its stored blobs of the last run are purged at start, as a member's would be for
messages it cannot show) and fetches again what the authors offer when they link.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from peer.attachments import AttachmentError
from peer.core.events import Message, MessageExpired, MessageReceived
from peer.core.files import FileLimitError
from peer.core.room.keeping import KeptFile

if TYPE_CHECKING:
    from peer.node import RoomHandle

log = logging.getLogger(__name__)


def attach(handle: RoomHandle) -> None:
    """A keeper's room: hold attachments unless its quota is 0."""
    if handle.keeper:
        handle.core.set_keep_files(handle.files.limits.room_quota > 0)


def on_pump(handle: RoomHandle) -> None:
    """After each core call: act on the files offered and on kept messages that were erased."""
    if not handle.keeper:
        return
    for notice in handle.core.take_kept():
        if isinstance(notice, KeptFile):
            msg = Message(
                notice.message_id, notice.sender, notice.seq, 0, 0, notice.expires_at, "", file=notice.file
            )
            handle.files.on_events([MessageReceived(msg)])  # known to the files part (not shown)
            task = asyncio.ensure_future(_fetch(handle, msg))
            handle.files._auto.add(task)  # cancelled with the room's files
            task.add_done_callback(handle.files._auto.discard)
        else:
            handle.files.on_events([MessageExpired(notice.message_id, notice.reason)])


async def _fetch(handle: RoomHandle, msg: Message) -> None:
    try:
        await handle.files.fetch(msg)
    except (AttachmentError, FileLimitError) as exc:
        log.info("keeper: attachment of %s not held: %s", msg.id[:12], exc)


__all__ = ["attach", "on_pump"]
