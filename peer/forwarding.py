"""Forwarding an attachment to another room (issue 15): fetch it whole, re-seal it under a FRESH key.

```python
msg = await room.forward(message_id, other_room)      # text, location or attachment alike
```

A forwarded attachment is a new file of ours in the target room (PROTOCOL.md "Forwarded attachments"):

1. **Hold the whole file, verified.** If our copy is not complete we fetch it first (from whoever holds
   it, as :meth:`peer.attachments.Attachment.fetch` does); if that fails or times out, the forward is
   refused with a :class:`ForwardError` that says why, and nothing is sent.
2. **Re-seal.** Chunk by chunk: each original chunk is opened (AEAD-verified) and sealed again under a
   fresh random file key with :class:`peer.core.files.Sealer` (the same chunk size), so every chunk id,
   index blob, the manifest, its id (the file id) and the key are new. Name, mime, size, thumbnail and
   duration carry over; the whole plaintext is checked against the original manifest's SHA-256 before
   anything is sent. Nothing of the original's key material is reused (``Room.forward_file`` refuses a
   reused key or manifest).
3. **Bound to the forward's expiry.** The forward expires at ``min(original's, now + ttl)`` (an expired
   original is refused before any work); the new blobs are written with that expiry from the first
   batch on, then tied to the forwarded message, so they are erased with it on every member.

If the original is erased (expiry or unsend) while the re-seal is running, or the target room closes,
the forward fails with a :class:`ForwardError` ("erased"/"closed") and the partial blobs are erased:
nothing is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from peer.attachments import AttachmentError
from peer.core.errors import ProtocolError
from peer.core.events import Message, MessageReceived
from peer.core.files import (
    IDS_PER_INDEX,
    FileLimitError,
    Manifest,
    Sealer,
    open_chunk,
    open_manifest,
    parse_index,
)

if TYPE_CHECKING:
    from peer.node import RoomHandle

#: how long a forward waits for a missing attachment to arrive (the API's ``timeout`` overrides it)
FETCH_TIMEOUT_S = 120.0
_BATCH = 64

ForwardProgress = Callable[[int, int], Awaitable[Any] | Any]
"""``progress(bytes_resealed, total_bytes)``, after each batch; it may be a coroutine function."""


class ForwardError(ValueError):
    """A forward was refused or could not complete (``code``: expired, fetch-failed, timeout, erased,
    closed, bad-file, or a :class:`FileLimitError` code); nothing was sent and nothing is left behind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _now_ms() -> int:
    return int(time.time() * 1000)


async def forward_attachment(
    src: RoomHandle,
    source: Message,
    target: RoomHandle,
    *,
    ttl: float | None = None,
    timeout: float | None = None,
    progress: ForwardProgress | None = None,
) -> Message:
    """Forward the attachment message ``source`` (shown in ``src``) to ``target``; see the module doc."""
    ref = source.file
    assert ref is not None
    ttl_s = int(ttl) if ttl is not None else None
    try:
        expires_at = target.core.forward_expiry(source, _now_ms(), ttl_s=ttl_s)
    except ValueError as exc:
        raise ForwardError("expired", str(exc)) from None
    try:
        target.files.limits.check_file(ref.size)
        used = target.files.blobs.room_bytes(target.room_id)
        target.files.limits.check_quota(used, ref.size)
    except FileLimitError as exc:
        raise ForwardError(exc.code, f"cannot forward into that room: {exc}") from None
    wait = FETCH_TIMEOUT_S if timeout is None else timeout
    try:
        await src.files.fetch(source, timeout=wait)
    except AttachmentError as exc:
        raise ForwardError(
            "erased" if exc.code == "erased" else "fetch-failed",
            f"cannot forward: the attachment could not be fetched ({exc.code}): {exc}",
        ) from None
    except FileLimitError as exc:
        raise ForwardError(exc.code, f"cannot forward: the attachment could not be fetched: {exc}") from None
    except TimeoutError:
        raise ForwardError(
            "timeout",
            f"cannot forward: the attachment could not be fetched within {wait:g}s"
            " (no online member holds all of it)",
        ) from None

    def alive() -> None:
        if src.core.message(source.id) is None or _now_ms() >= source.expires_at:
            raise ForwardError("erased", "cannot forward: the original was erased (expired or unsent)")
        if target.closed or src.closed:
            raise ForwardError("closed", "cannot forward: the room was closed")

    blobs, room = target.files.blobs, target.room_id
    tmp = "forwarding:" + secrets.token_hex(8)
    final: str | None = None
    try:
        alive()
        manifest = _manifest(src, source)
        sealer = Sealer(secrets.token_bytes(32), manifest.size, manifest.chunk_size)
        digest = hashlib.sha256()
        batch: list[tuple[bytes, str, bytes]] = []
        done = 0
        for i, plain in _plaintext(src, source, manifest):
            digest.update(plain)
            blob_id, blob = sealer.seal(i, plain)
            batch.append((blob_id, "chunk", blob))
            done += len(plain)
            if len(batch) >= _BATCH:
                blobs.put(room, tmp, batch, None, expires_at)
                batch = []
                await _report(progress, done, manifest.size)
                await asyncio.sleep(0)  # chat and transfers go on
                alive()
        if digest.digest() != manifest.digest:
            raise ForwardError("bad-file", "cannot forward: the file does not match its manifest")
        sealed = sealer.finish(
            manifest.name,
            manifest.mime,
            manifest.digest,
            thumb=manifest.thumb,
            thumb_mime=manifest.thumb_mime,
            duration_ms=manifest.duration_ms,
        )
        ref2 = sealed.content
        batch.append((ref2.manifest, "manifest", sealed.manifest_blob))
        batch += [(hashlib.sha256(b).digest(), "index", b) for b in sealed.index_blobs]
        blobs.put(room, tmp, batch, None, expires_at)
        await _report(progress, done, manifest.size)
        alive()
        blobs.rename_file(room, tmp, ref2.file_id)
        final = ref2.file_id
        msg = target.core.forward_file(source, ref2, src.label(source.sender), _now_ms(), ttl_s=ttl_s)
    except BaseException:
        blobs.erase_file(room, tmp)
        if final is not None:
            blobs.erase_file(room, final)
        raise
    blobs.bind(room, ref2.file_id, msg.id, msg.expires_at)
    target.files.adopt_own(ref2.file_id, {b[0] for b in batch} | set(sealed.chunk_ids))
    target._commit([MessageReceived(msg)])
    return msg


async def _report(progress: ForwardProgress | None, done: int, total: int) -> None:
    if progress is None:
        return
    out = progress(done, total)
    if inspect.isawaitable(out):
        await out


def _missing(what: str) -> ForwardError:
    return ForwardError("erased", f"cannot forward: {what} of the original is gone (expired or unsent)")


def _manifest(src: RoomHandle, source: Message) -> Manifest:
    ref = source.file
    assert ref is not None
    blob = src.files.blobs.get(src.room_id, ref.manifest)
    if blob is None:
        raise _missing("the manifest")
    try:
        return open_manifest(ref.key, blob, ref)
    except ProtocolError as exc:
        raise ForwardError("bad-file", f"cannot forward: {exc.message}") from None


def _plaintext(src: RoomHandle, source: Message, m: Manifest) -> Iterator[tuple[int, bytes]]:
    """The original's chunks in order, each opened (AEAD-verified) from our blob store."""
    ref = source.file
    assert ref is not None
    blobs, room = src.files.blobs, src.room_id
    for pos, index_id in enumerate(m.index):
        index_blob = blobs.get(room, index_id)
        if index_blob is None:
            raise _missing("an index blob")
        try:
            ids = parse_index(index_blob, pos, m)
        except ProtocolError as exc:
            raise ForwardError("bad-file", f"cannot forward: {exc.message}") from None
        for k, chunk_id in enumerate(ids):
            i = pos * IDS_PER_INDEX + k
            blob = blobs.get(room, chunk_id)
            if blob is None:
                raise _missing(f"chunk {i}")
            try:
                yield i, open_chunk(ref.key, m, i, blob)
            except ProtocolError as exc:
                raise ForwardError("bad-file", f"cannot forward: {exc.message}") from None


__all__ = ["FETCH_TIMEOUT_S", "ForwardError", "forward_attachment"]
