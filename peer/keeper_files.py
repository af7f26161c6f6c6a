"""A keeper holds attachments (issue 15): the asyncio side of :mod:`peer.core.room.keeping`.

A keeper (``ephemesh keep``, ``Peer.join(..., keeper=True)``) opens no message and never learns a file
key. Authors offer it the blob ids of their files over their links (KEEPER / KEEP_FILE, PROTOCOL.md
"Keepers hold attachments"): the manifest id and every index blob and chunk id, nothing else. For every
file offered this module has the room's :class:`peer.attachments.RoomFiles` fetch exactly those blobs
with the normal transfer engine (raw: each verified by its hash, nothing opened; from every linked
member at once), store them as ciphertext bound to the message's envelope and expiry, and serve them
like any member: a member who was offline while the author left gets the file from the keeper, and
verifies it as from anyone (ids are hashes; the manifest is sealed under the key the keeper never sees).
When the envelope is erased (expiry, unsend) the blobs go.

Members (the authors) give their core the lookup of their own files' blob ids (``Room.set_blob_ids``:
:meth:`RoomFiles.own_blob_ids`, from the blob store rows of the file).

Limits: the per-room quota (1 GB by default; ``ephemesh keep --file-quota MB``) and, per file, the
per-file limit (plus a small per-blob allowance), checked as each blob arrives; past either the file is
dropped and its blobs erased. A quota of 0 turns it off: the keeper then says nothing and holds nothing.
A restarted keeper starts empty (its stored blobs of the last run are purged at start, as a member's
would be for messages it cannot show) and fetches again what the authors offer when they link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peer.core.room.keeping import KeptFile

if TYPE_CHECKING:
    from peer.node import RoomHandle


def attach(handle: RoomHandle) -> None:
    """A keeper's room: hold attachments unless its quota is 0. A member's: offer its files to keepers."""
    if handle.keeper:
        handle.core.set_keep_files(handle.files.limits.room_quota > 0)
    else:
        handle.core.set_blob_ids(handle.files.own_blob_ids)


def on_pump(handle: RoomHandle) -> None:
    """After each core call: act on the files offered and on kept messages that were erased."""
    if not handle.keeper:
        return
    for notice in handle.core.take_kept():
        if isinstance(notice, KeptFile):
            handle.files.keep_blobs(
                notice.file_id, notice.manifest, notice.ids, notice.message_id, notice.expires_at
            )
        else:
            handle.files.drop_kept(notice.message_id)


__all__ = ["attach", "on_pump"]
