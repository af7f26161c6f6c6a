"""Attachments in a Python peer: the asyncio pump around :class:`peer.core.files_transfer.Transfers`.

```python
msg = await room.send_file("photo.jpg")                 # sealed, stored (ciphertext), announced
async for ev in room.events():
    if isinstance(ev, MessageReceived) and ev.message.file:
        await room.attachment(ev.message.id).save("/tmp/photo.jpg", progress=print)
```

One :class:`RoomFiles` per joined room. It owns the room's transfer engine, one reader and one writer
task per neighbour's ``ephemesh-files`` channel (:mod:`peer.net.fileschannel`, paced so chat stays
fast) and the room's blobs in the :class:`peer.store.blobs.BlobStore`. It serves every blob it holds to
any linked member that asks, fetches from every linked member at once, and erases a file's blobs when
its message expires or is unsent (and at start-up, the blobs of any message that is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import mimetypes
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from peer.core.crypto import b64u_encode
from peer.core.events import Message, MessageExpired, MessageReceived, RoomEvent
from peer.core.files import (
    CHUNK_SIZE,
    IDS_PER_INDEX,
    File,
    FileLimitError,
    FileLimits,
    Sealer,
    open_chunk,
    open_manifest,
    parse_index,
)
from peer.core.files_transfer import (
    BLOB,
    BlobReceived,
    FileComplete,
    FileFailed,
    FileProgress,
    ServeRequest,
    TransferError,
    TransferEvent,
    Transfers,
)
from peer.net.fileschannel import FilesLink
from peer.net.transport import TransportClosed
from peer.store.blobs import BlobStore

if TYPE_CHECKING:
    from peer.net.rtc import RtcTransport
    from peer.node import RoomHandle

log = logging.getLogger(__name__)

SEAL_BATCH = 64  # chunks sealed per worker-thread call, stored in one transaction (send_file)
FLUSH_S = 0.25  # received blobs wait at most this long for their batch (a crash re-fetches them)
KEPT_BLOB_OVERHEAD = 64  # a keeper's per-blob allowance over the file limit (AEAD tags, index ids)

Progress = Callable[[int, int], Any]
"""``progress(bytes_done, total_bytes)``."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _file_size(p: Path) -> int:
    return p.stat().st_size


def _read_chunks(p: Path, size: int) -> Iterator[bytes]:
    with p.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def _target(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def _open_part(path: Path) -> BinaryIO:
    return path.open("wb")


@dataclass(frozen=True, slots=True)
class AttachmentProgress:
    """More of an attachment arrived: ``bytes`` of ``size`` (chunks ``have`` of ``total``)."""

    message_id: str
    file_id: str
    have: int
    total: int
    bytes: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "attachment-progress",
            "id": self.message_id,
            "file": self.file_id,
            "have": self.have,
            "total": self.total,
            "bytes": self.bytes,
            "size": self.size,
        }

    def __str__(self) -> str:
        return f"* attachment of {self.message_id[:8]}…: {self.bytes * 100 // max(1, self.size)}%"


@dataclass(frozen=True, slots=True)
class AttachmentComplete:
    """Every blob of the attachment is here (verified); :meth:`Attachment.save` writes it out."""

    message_id: str
    file_id: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "attachment-complete", "id": self.message_id, "file": self.file_id}

    def __str__(self) -> str:
        return f"* attachment of {self.message_id[:8]}… is here (/save to write it out)"


@dataclass(frozen=True, slots=True)
class AttachmentFailed:
    """The attachment cannot be fetched: its manifest is bad, it is over a limit, or it was erased."""

    message_id: str
    file_id: str
    code: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "attachment-failed", "id": self.message_id, "file": self.file_id, "code": self.code}

    def __str__(self) -> str:
        return f"* attachment of {self.message_id[:8]}… cannot be fetched ({self.code})"


AttachmentEvent = AttachmentProgress | AttachmentComplete | AttachmentFailed


class AttachmentError(Exception):
    """An attachment could not be fetched or saved (``code``: bad-manifest, erased, file-too-large...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Attachment:
    """One received (or sent) file: what the message says, and how to get its bytes."""

    def __init__(self, files: RoomFiles, message: Message) -> None:
        assert message.file is not None
        self._files = files
        self.message = message
        self.file: File = message.file

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def size(self) -> int:
        return self.file.size

    @property
    def mime(self) -> str:
        return self.file.mime

    @property
    def id(self) -> str:
        return self.file.file_id

    def __repr__(self) -> str:
        return f"Attachment({self.name!r}, {self.size} bytes, {self.mime})"

    async def fetch(self, *, progress: Progress | None = None, timeout: float | None = None) -> None:
        """Fetch every blob (from every linked member that holds them); returns when all are here.
        Raises :class:`AttachmentError` (bad manifest, erased...), :class:`FileLimitError`, TimeoutError."""
        await self._files.fetch(self.message, progress=progress, timeout=timeout)

    async def save(
        self, path: str | os.PathLike[str], *, progress: Progress | None = None, timeout: float | None = None
    ) -> Path:
        """Fetch (if needed), decrypt, verify the whole file and write it to ``path`` (a directory: the
        file's own name inside it). The file appears only once verified."""
        await self.fetch(progress=progress, timeout=timeout)
        return await self._files.write(self.message, Path(path), progress=progress)


class _Outbox:
    """One neighbour's frames to send and its serve requests not answered yet (see ``RoomFiles._write``)."""

    def __init__(self) -> None:
        self.frames: deque[bytes] = deque()
        self.serve: deque[ServeRequest] = deque()
        self.wake = asyncio.Event()


class RoomFiles:
    def __init__(
        self, handle: RoomHandle, blobs: BlobStore, limits: FileLimits | None = None, auto_fetch: int = 0
    ) -> None:
        self._handle = handle
        self.room_id = handle.room_id
        self.blobs = blobs
        self.limits = limits or FileLimits()
        self.engine = Transfers(self.limits)
        self._by_file: dict[str, Message] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._progress: dict[str, list[Progress]] = {}
        self._queues: dict[str, _Outbox] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0  # the engine deadline (ms) self._timer was armed for
        self._flush_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.errors: dict[str, int] = {}
        self.served = 0  # blobs served to other members
        self.auto_fetch = auto_fetch  # fetch others' files up to this size as soon as they arrive
        self._served_ids: dict[str, set[bytes]] = {}  # our own files: which of their blobs left at least once
        self._own_blobs: dict[str, set[bytes]] = {}
        self._auto: set[asyncio.Task[None]] = set()
        self._kept: dict[str, tuple[str, int, int]] = {}  # a keeper: file id -> message, expiry, byte cap
        for msg in handle.core.messages():
            if msg.file is not None:
                self._by_file[msg.file.file_id] = msg
        # nothing of a message that is gone survives a restart
        self.blobs.erase_except(self.room_id, set(self._by_file))

    # -- messages --------------------------------------------------------------------------------------

    def on_events(self, events: list[RoomEvent]) -> None:
        """Room events, before they are published: learn file messages, erase the files of erased ones."""
        for ev in events:
            if isinstance(ev, MessageReceived) and ev.message.file is not None:
                self._by_file[ev.message.file.file_id] = ev.message
                mine = ev.message.sender == self._handle.peer_id
                if not mine and ev.message.file.size <= self.auto_fetch and not self._closed:
                    task = asyncio.ensure_future(self._auto_fetch(ev.message))
                    self._auto.add(task)
                    task.add_done_callback(self._auto.discard)
            elif isinstance(ev, MessageExpired):
                self._erase_message(ev.id)

    async def _auto_fetch(self, msg: Message) -> None:
        try:
            await self.fetch(msg)
        except (AttachmentError, FileLimitError) as exc:
            log.info("auto-fetch of %s stopped: %s", msg.id[:12], exc)

    async def wait_served(self, msg: Message, timeout: float) -> bool:
        """Our own file: wait until every blob of it was served at least once (someone holds a whole
        copy); False after ``timeout``."""
        assert msg.file is not None
        file_id = msg.file.file_id
        try:
            await self._handle.wait_for(
                lambda: self._served_ids.get(file_id, set()) >= self._own_blobs.get(file_id, {b""}), timeout
            )
        except TimeoutError:
            return False
        return True

    def _erase_message(self, msg_id: str) -> None:
        for file_id, msg in list(self._by_file.items()):
            if msg.id == msg_id:
                del self._by_file[file_id]
                self.engine.cancel(file_id)
                self.blobs.erase_file(self.room_id, file_id)
                self._fail(file_id, AttachmentError("erased", "the message of this attachment is gone"))
        self.blobs.erase_message(self.room_id, msg_id)

    def attachment(self, message_id: str) -> Attachment:
        for msg in self._by_file.values():
            if msg.id == message_id:
                return Attachment(self, msg)
        raise KeyError(message_id)

    def attachments(self) -> list[Attachment]:
        return [Attachment(self, m) for m in self._by_file.values()]

    def adopt_own(self, file_id: str, blob_ids: set[bytes]) -> None:
        """A file of ours sealed outside :meth:`send_file` (a forward, :mod:`peer.forwarding`): its blobs
        are followed by :meth:`wait_served` like those of a file we sent."""
        self._own_blobs[file_id] = set(blob_ids)

    # -- sending ---------------------------------------------------------------------------------------

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
        """Seal ``path`` chunk by chunk into the blob store, then send its ``"file"`` message.
        Raises :class:`FileLimitError` when the file or the room's attachments would be over a limit."""
        p = Path(path)
        size = _file_size(p)
        self.limits.check_file(size)
        self.limits.check_quota(self.blobs.room_bytes(self.room_id), size)
        name = name or p.name
        mime = mime or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        key = secrets.token_bytes(32)
        sealer = Sealer(key, size)
        tmp = "sealing:" + secrets.token_hex(8)
        digest = hashlib.sha256()
        chunks = _read_chunks(p, sealer.chunk_size)
        sealed_count = 0

        def seal_batch() -> list[tuple[bytes, str, bytes]]:
            """Read and seal the next SEAL_BATCH chunks (in a worker thread: AES-GCM and SHA-256 of a
            50 MB file held the event loop 30-50 ms a batch, chat on this peer waited meanwhile)."""
            out: list[tuple[bytes, str, bytes]] = []
            for plain in itertools.islice(chunks, SEAL_BATCH):
                digest.update(plain)
                blob_id, blob = sealer.seal(sealed_count + len(out), plain)
                out.append((blob_id, "chunk", blob))
            return out

        batch: list[tuple[bytes, str, bytes]] = []
        try:
            while chunk_batch := await asyncio.to_thread(seal_batch):
                self.blobs.put(self.room_id, tmp, chunk_batch)  # (the store stays on the loop's thread)
                sealed_count += len(chunk_batch)
            sealed = sealer.finish(
                name, mime, digest.digest(), thumb=thumb, thumb_mime=thumb_mime, duration_ms=duration_ms
            )
            ref = sealed.content
            batch.append((ref.manifest, "manifest", sealed.manifest_blob))
            batch += [(hashlib.sha256(b).digest(), "index", b) for b in sealed.index_blobs]
            self.blobs.put(self.room_id, tmp, batch)
            self.blobs.rename_file(self.room_id, tmp, ref.file_id)
            self._own_blobs[ref.file_id] = {b[0] for b in batch} | set(sealed.chunk_ids)
        except BaseException:
            self.blobs.erase_file(self.room_id, tmp)
            raise
        ttl_s = int(ttl) if ttl is not None else None
        msg = self._handle.core.send_file(ref, now_ms(), ttl_s=ttl_s)
        self.blobs.bind(self.room_id, ref.file_id, msg.id, msg.expires_at)
        self._handle._commit([MessageReceived(msg)])
        return msg

    # -- fetching and saving ---------------------------------------------------------------------------

    async def fetch(
        self, msg: Message, *, progress: Progress | None = None, timeout: float | None = None
    ) -> None:
        ref = msg.file
        assert ref is not None
        file_id = ref.file_id
        if file_id not in self._by_file:
            raise AttachmentError("erased", "the message of this attachment is gone")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(file_id, []).append(done)
        if progress is not None:
            self._progress.setdefault(file_id, []).append(progress)
        try:
            if file_id not in self.engine.downloading():
                self.limits.check_quota(
                    self.blobs.room_bytes(self.room_id) - self._held_bytes(file_id), ref.size
                )
                events = self.engine.fetch(
                    ref,
                    now_ms(),
                    held=self.blobs.held(self.room_id, file_id),
                    meta=self.blobs.meta(self.room_id, file_id),
                )
                self._pump(events)
            async with asyncio.timeout(timeout):
                await done
        finally:
            waiters = self._waiters.get(file_id, [])
            if done in waiters:
                waiters.remove(done)
            if progress is not None:
                with contextlib.suppress(ValueError):
                    self._progress.get(file_id, []).remove(progress)

    def _held_bytes(self, file_id: str) -> int:
        return self.blobs.file_bytes(self.room_id, file_id)

    def progress(self, message_id: str) -> tuple[int, int]:
        """``(bytes held, size)`` of an attachment."""
        att = self.attachment(message_id)
        live = self.engine.progress(att.id)
        held = self.blobs.held(self.room_id, att.id)
        if live is not None and live[1]:
            return min(att.size, live[0] * CHUNK_SIZE), att.size
        chunks = max(0, len(held) - 2)  # roughly: manifest and index are not chunks
        return min(att.size, chunks * CHUNK_SIZE), att.size

    async def write(self, msg: Message, path: Path, *, progress: Progress | None = None) -> Path:
        ref = msg.file
        assert ref is not None
        path = _target(path, ref.name)
        manifest_blob = self.blobs.get(self.room_id, ref.manifest)
        if manifest_blob is None:
            raise AttachmentError("missing", "the attachment is not here (fetch it first)")
        m = open_manifest(ref.key, manifest_blob, ref)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        digest = hashlib.sha256()
        try:
            with _open_part(tmp) as f:
                done = 0
                for pos, index_id in enumerate(m.index):
                    index_blob = self.blobs.get(self.room_id, index_id)
                    if index_blob is None:
                        raise AttachmentError("missing", "an index blob is missing")
                    for k, chunk_id in enumerate(parse_index(index_blob, pos, m)):
                        i = pos * IDS_PER_INDEX + k
                        blob = self.blobs.get(self.room_id, chunk_id)
                        if blob is None:
                            raise AttachmentError("missing", f"chunk {i} is missing")
                        plain = open_chunk(ref.key, m, i, blob)
                        digest.update(plain)
                        f.write(plain)
                        done += len(plain)
                        if i % 64 == 63:
                            await asyncio.sleep(0)
            if digest.digest() != m.digest:
                raise AttachmentError("bad-file", "the whole file does not match its manifest")
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if progress is not None:
            progress(ref.size, ref.size)
        return path

    # -- links -----------------------------------------------------------------------------------------

    def link_up(self, peer: str, transport: RtcTransport) -> None:
        old = self._tasks.pop(peer, None)
        if old is not None:
            old.cancel()
        self._tasks[peer] = asyncio.create_task(self._run_link(peer, transport), name=f"files-{peer[:8]}")

    async def _run_link(self, peer: str, transport: RtcTransport) -> None:
        await transport.files_attached.wait()
        link = transport.files
        if link is None or not await link.wait_open():
            return
        queue = _Outbox()
        self._queues[peer] = queue
        writer = asyncio.create_task(self._write(link, queue), name=f"files-w-{peer[:8]}")
        try:
            self._pump(self.engine.link_up(peer, now_ms()))
            async for frame in link:
                self._pump(self.engine.receive(peer, frame, now_ms()))
        finally:
            writer.cancel()
            if self._queues.get(peer) is queue:
                del self._queues[peer]
            if not self._closed:
                self._pump(self.engine.link_down(peer, now_ms()))

    async def _write(self, link: FilesLink, queue: _Outbox) -> None:
        """Send one link's frames; answer its serve requests one at a time, only once everything before
        them has gone to the transport: a request stays open (counted against ``serve_window``, past
        which the engine answers BUSY) until its blob is being sent, so a WANT flood can make us hold
        at most one blob for that neighbour, never a queue of them."""
        while True:
            if queue.frames:
                frame = queue.frames.popleft()
                try:
                    await link.send(frame)
                except (TransportClosed, ConnectionError):
                    return
                except ValueError as exc:
                    log.warning("transfer frame dropped: %s", exc)
                else:
                    self._sent(frame)
            elif queue.serve:
                ev = queue.serve.popleft()
                data = self.blobs.get(self.room_id, ev.blob_id)
                self.served += data is not None
                self.engine.serve(ev.peer, ev.req, ev.blob_id, data)
                self._route()
            else:
                queue.wake.clear()
                await queue.wake.wait()

    def _sent(self, frame: bytes) -> None:
        """A BLOB frame of one of our own files went to the transport (which drains it on close)."""
        if frame[:1] != bytes([BLOB]) or not self._own_blobs:
            return
        blob_id = frame[5:37]
        for file_id, own in self._own_blobs.items():
            if blob_id in own:
                self._served_ids.setdefault(file_id, set()).add(blob_id)
                self._handle.wake()

    # -- a keeper: blobs named by id only, no key (peer.keeper_files) -----------------------------------

    def own_blob_ids(self, manifest: bytes) -> list[bytes] | None:
        """The index and chunk ids of a file of ours (the core asks only for its own: sealed or forwarded
        here, so held whole), sorted; None when we do not hold its manifest. What a KEEP_FILE offer lists (``Room.set_blob_ids``)."""
        file_id = b64u_encode(manifest)
        held = self.blobs.held(self.room_id, file_id)
        if manifest not in held:
            return None
        return sorted(held - {manifest})

    def keep_blobs(
        self, file_id: str, manifest: bytes, ids: tuple[bytes, ...], msg_id: str, expires_at: int
    ) -> None:
        """A keeper: fetch exactly ``manifest`` and ``ids`` (each verified by its hash), stored as
        ciphertext bound to message ``msg_id`` and its expiry, within the room quota and the file limit."""
        if file_id in self._kept or file_id in self._by_file or self._closed:
            return
        self._kept[file_id] = (msg_id, expires_at, (len(ids) + 1) * KEPT_BLOB_OVERHEAD + self.limits.max_file)
        try:
            events = self.engine.fetch_blobs(
                file_id, (manifest, *ids), now_ms(), held=self.blobs.held(self.room_id, file_id)
            )
        except FileLimitError as exc:
            del self._kept[file_id]
            log.info("keeper: attachment of %s not held: %s", msg_id[:12], exc)
            return
        self._pump(events)

    def drop_kept(self, msg_id: str) -> None:
        """A keeper: the message of a kept file was erased: stop fetching it and erase its blobs."""
        for file_id, kept in list(self._kept.items()):
            if kept[0] == msg_id:
                del self._kept[file_id]
                self.engine.cancel(file_id)
                self.blobs.erase_file(self.room_id, file_id)
        self.blobs.erase_message(self.room_id, msg_id)

    def kept_files(self) -> dict[str, str]:
        """A keeper: file id -> message id of every file it holds or is fetching."""
        return {f: k[0] for f, k in self._kept.items()}

    def _store_kept(self, ev: BlobReceived) -> None:
        kept = self._kept.get(ev.file)
        if kept is None:
            return
        msg_id, expires_at, file_cap = kept
        used = self.blobs.room_bytes(self.room_id)
        if (
            used + len(ev.data) > self.limits.room_quota
            or self._held_bytes(ev.file) + len(ev.data) > file_cap
        ):
            log.info("keeper: attachment of %s not held: over the room quota or the file limit", msg_id[:12])
            del self._kept[ev.file]
            self.engine.cancel(ev.file)
            self.blobs.erase_file(self.room_id, ev.file)
            return
        self.blobs.put(self.room_id, ev.file, [(ev.blob_id, "raw", ev.data)], msg_id, expires_at)

    # -- the pump --------------------------------------------------------------------------------------

    def _pump(self, events: list[TransferEvent]) -> None:
        published: list[AttachmentEvent] = []
        for ev in events:
            if isinstance(ev, ServeRequest):
                outbox = self._queues.get(ev.peer)
                if outbox is not None:
                    outbox.serve.append(ev)
                    outbox.wake.set()
                else:  # no writer (its link is going down): answer now, the frame goes nowhere
                    self.engine.serve(ev.peer, ev.req, ev.blob_id, None)
            elif isinstance(ev, BlobReceived):
                msg = self._by_file.get(ev.file)
                if ev.role == "raw":
                    self._store_kept(ev)
                elif msg is not None:
                    self.blobs.put(
                        self.room_id,
                        ev.file,
                        [(ev.blob_id, ev.role, ev.data)],
                        msg.id,
                        msg.expires_at,
                        later=True,
                    )
                    self._arm_flush()
            elif isinstance(ev, FileProgress):
                msg = self._by_file.get(ev.file)
                if msg is not None and msg.file is not None:
                    published.append(
                        AttachmentProgress(msg.id, ev.file, ev.have, ev.total, ev.bytes, msg.file.size)
                    )
                    for cb in list(self._progress.get(ev.file, [])):
                        cb(ev.bytes, msg.file.size)
            elif isinstance(ev, FileComplete):
                self.blobs.flush()
                msg = self._by_file.get(ev.file)
                if msg is not None:
                    published.append(AttachmentComplete(msg.id, ev.file))
                for fut in self._waiters.pop(ev.file, []):
                    if not fut.done():
                        fut.set_result(None)
            elif isinstance(ev, FileFailed):
                msg = self._by_file.get(ev.file)
                if msg is not None:
                    published.append(AttachmentFailed(msg.id, ev.file, ev.code))
                self._fail(ev.file, AttachmentError(ev.code, f"attachment cannot be fetched ({ev.code})"))
            elif isinstance(ev, TransferError):
                self.errors[ev.code] = self.errors.get(ev.code, 0) + 1
                log.info(
                    "transfer error from %s: %s (%d)%s",
                    ev.peer[:8],
                    ev.code,
                    ev.count,
                    " closed" if ev.closed else "",
                )
        self._route()
        self._arm()
        if published:
            self._handle.publish(published)
        if events:
            self._handle.wake()

    def _route(self) -> None:
        """The engine's frames to each neighbour's outbox (frames to a neighbour without one are dropped)."""
        for peer, frame in self.engine.data_to_send():
            outbox = self._queues.get(peer)
            if outbox is not None:
                outbox.frames.append(frame)
                outbox.wake.set()

    def _fail(self, file_id: str, exc: Exception) -> None:
        for fut in self._waiters.pop(file_id, []):
            if not fut.done():
                fut.set_exception(exc)

    def _arm(self) -> None:
        """The engine's next deadline moves on with (nearly) every frame: a timer that fires no later
        than it is kept (firing early only runs ``handle_timer``, which re-arms), not re-created."""
        when = self.engine.next_timer()
        if self._timer is not None:
            if when is not None and self._timer_at <= when and not self._closed:
                return
            self._timer.cancel()
            self._timer = None
        if when is None or self._closed:
            return
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, (when - now_ms()) / 1000), self._on_timer
        )

    def _on_timer(self) -> None:
        self._timer = None
        self._pump(self.engine.handle_timer(now_ms()))

    def _arm_flush(self) -> None:
        """Received blobs go to the store in batches (peer/store/blobs.py); none waits longer than this."""
        if self._flush_timer is None and self.blobs.waiting and not self._closed:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_S, self._on_flush)

    def _on_flush(self) -> None:
        self._flush_timer = None
        self.blobs.flush()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self.blobs.flush()
        tasks = list(self._tasks.values()) + list(self._auto)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for file_id in list(self._waiters):
            self._fail(file_id, AttachmentError("closed", "the room was closed"))


__all__ = [
    "Attachment",
    "AttachmentComplete",
    "AttachmentError",
    "AttachmentEvent",
    "AttachmentFailed",
    "AttachmentProgress",
    "FileLimitError",
    "FileLimits",
    "RoomFiles",
]
