"""Attachment blobs: sealed chunks, index and manifest blobs, in their own SQLite file next to the store.

Only ciphertext lives here: every chunk and manifest is AES-256-GCM under a file key that is carried only
inside the (sealed) CHAT envelope of its message; index blobs hold ciphertext hashes. A blob row names the
file (manifest id), the message it belongs to and that message's expiry, so it is erased with the message
(expiry or unsend: :meth:`BlobStore.erase_message`), at start-up when the message is gone
(:meth:`purge_expired`, :meth:`erase_except`), and never outlives it. ``secure_delete`` is on and every
erasure is followed by ``wal_checkpoint(TRUNCATE)``, as in :mod:`peer.store.sqlite`.

What we hold of a file IS the download state: a restarted peer resumes by asking for what is missing.

Received chunks are written in batches (:meth:`BlobStore.put` with ``later=True``, one transaction per
:data:`BATCH` blobs or per :meth:`flush`, which the transfer loop calls on a short timer and when a file
completes): one SQLite transaction per 16 KiB chunk was 7% of a receiver's CPU. Blobs waiting for their
batch are verified already and are seen by every read (:meth:`get` looks at them first; the other
queries flush first). A crash loses at most one batch, which the resumed download simply fetches
again; an erasure drops the waiting blobs of what it erases, so they are never written at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

BLOBS_FILE = "blobs.sqlite"
BATCH = 64  # blobs per transaction (~1 MiB of chunks)

_Row = tuple[str, bytes, str, str, str | None, int | None, bytes]  # room, id, file, role, msg, expires, data

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    room_id TEXT NOT NULL,
    id BLOB NOT NULL,
    file TEXT NOT NULL,
    role TEXT NOT NULL,
    msg_id TEXT,
    expires_at INTEGER,
    data BLOB NOT NULL,
    PRIMARY KEY (room_id, id)
);
CREATE INDEX IF NOT EXISTS blobs_file ON blobs (room_id, file);
CREATE INDEX IF NOT EXISTS blobs_msg ON blobs (room_id, msg_id);
CREATE INDEX IF NOT EXISTS blobs_expiry ON blobs (expires_at);
"""


class BlobStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = OFF")  # no fsync: a blob lost in a power cut is fetched again
        self._db.executescript(_SCHEMA)
        self._closed = False
        self._waiting: dict[tuple[str, bytes], _Row] = {}  # (room, id) -> row, for the next batch

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    @property
    def waiting(self) -> int:
        """Blobs held for the next batch, not written yet."""
        return len(self._waiting)

    def flush(self) -> None:
        """Write every blob waiting for its batch, in one transaction."""
        if not self._waiting or self._closed:
            return
        rows, self._waiting = list(self._waiting.values()), {}
        self._insert(rows)

    def _drop_waiting(self, keep: Callable[[_Row], bool]) -> int:
        before = len(self._waiting)
        self._waiting = {k: r for k, r in self._waiting.items() if keep(r)}
        return before - len(self._waiting)

    def _insert(self, rows: list[_Row]) -> None:
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO blobs (room_id, id, file, role, msg_id, expires_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put(
        self,
        room_id: str,
        file: str,
        items: Iterable[tuple[bytes, str, bytes]],
        msg_id: str | None = None,
        expires_at: int | None = None,
        *,
        later: bool = False,
    ) -> None:
        """Store ``(id, role, data)`` blobs of ``file`` in one transaction (a blob already held is kept).
        ``later``: in the next batch instead, written once :data:`BATCH` blobs wait or at :meth:`flush`."""
        rows = [(room_id, i, file, role, msg_id, expires_at, data) for i, role, data in items]
        if later:
            for row in rows:
                self._waiting.setdefault((room_id, row[1]), row)
            if len(self._waiting) >= BATCH:
                self.flush()
        else:
            self.flush()
            self._insert(rows)

    def rename_file(self, room_id: str, old: str, new: str) -> None:
        self.flush()
        self._db.execute("UPDATE blobs SET file = ? WHERE room_id = ? AND file = ?", (new, room_id, old))

    def bind(self, room_id: str, file: str, msg_id: str, expires_at: int) -> None:
        """Tie a file's blobs to the message that carries its key (sender side, after sending)."""
        self.flush()
        self._db.execute(
            "UPDATE blobs SET msg_id = ?, expires_at = ? WHERE room_id = ? AND file = ?",
            (msg_id, expires_at, room_id, file),
        )

    def get(self, room_id: str, blob_id: bytes) -> bytes | None:
        waiting = self._waiting.get((room_id, blob_id))
        if waiting is not None:
            return waiting[6]
        row = self._db.execute(
            "SELECT data FROM blobs WHERE room_id = ? AND id = ?", (room_id, blob_id)
        ).fetchone()
        return bytes(row[0]) if row else None

    def held(self, room_id: str, file: str) -> set[bytes]:
        self.flush()
        rows = self._db.execute("SELECT id FROM blobs WHERE room_id = ? AND file = ?", (room_id, file))
        return {bytes(r[0]) for r in rows}

    def meta(self, room_id: str, file: str) -> dict[bytes, bytes]:
        """The manifest and index blobs held of ``file``."""
        self.flush()
        rows = self._db.execute(
            "SELECT id, data FROM blobs WHERE room_id = ? AND file = ? AND role != 'chunk'", (room_id, file)
        )
        return {bytes(i): bytes(d) for i, d in rows}

    def room_bytes(self, room_id: str) -> int:
        self.flush()
        row = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM blobs WHERE room_id = ?", (room_id,)
        )
        return int(row.fetchone()[0])

    def file_bytes(self, room_id: str, file: str) -> int:
        self.flush()
        row = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM blobs WHERE room_id = ? AND file = ?", (room_id, file)
        )
        return int(row.fetchone()[0])

    def files(self, room_id: str) -> dict[str, str | None]:
        """file id -> message id, for every file we hold blobs of."""
        self.flush()
        rows = self._db.execute("SELECT DISTINCT file, msg_id FROM blobs WHERE room_id = ?", (room_id,))
        return {str(f): (None if m is None else str(m)) for f, m in rows}

    def _erased(self, cur: sqlite3.Cursor) -> int:
        n = cur.rowcount
        if n:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def erase_message(self, room_id: str, msg_id: str) -> int:
        return self._drop_waiting(lambda r: not (r[0] == room_id and r[4] == msg_id)) + self._erased(
            self._db.execute("DELETE FROM blobs WHERE room_id = ? AND msg_id = ?", (room_id, msg_id))
        )

    def erase_file(self, room_id: str, file: str) -> int:
        return self._drop_waiting(lambda r: not (r[0] == room_id and r[2] == file)) + self._erased(
            self._db.execute("DELETE FROM blobs WHERE room_id = ? AND file = ?", (room_id, file))
        )

    def erase_except(self, room_id: str, alive: set[str]) -> int:
        """Erase the blobs of every file of this room whose message is not in ``alive`` (file ids)."""
        gone = [f for f in self.files(room_id) if f not in alive]
        return sum(self.erase_file(room_id, f) for f in gone)

    def erase_room(self, room_id: str) -> int:
        return self._drop_waiting(lambda r: r[0] != room_id) + self._erased(
            self._db.execute("DELETE FROM blobs WHERE room_id = ?", (room_id,))
        )

    def purge_expired(self, now: int) -> int:
        return self._drop_waiting(lambda r: r[5] is None or r[5] > now) + self._erased(
            self._db.execute("DELETE FROM blobs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        )
