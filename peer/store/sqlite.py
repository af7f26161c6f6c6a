"""SQLite store: the embedded default, one database file per home directory.

What lives here is ciphertext (signed envelopes, exactly as they travel) plus the key material needed to
open them: per-message keys until the message expires, chain states, the room secret of each joined room.
Erasing a message deletes its envelope row and its key row (crypto-shredding) with ``secure_delete`` on,
so the freed pages are zeroed. The database runs in WAL mode; commits that carry our own seq/chain state
are fsynced (``synchronous=FULL``: ~0.3 ms here, against ~9 ms with a rollback journal), others are not
(``NORMAL``: they survive a process crash, and a power cut only loses what can be fetched again); and every transaction that erases anything is
followed by ``wal_checkpoint(TRUNCATE)``: the ``-wal`` file keeps old page images (field notes: deleted
content stayed there until a TRUNCATE checkpoint), so it is emptied whenever something was erased.
Nothing in this database is plaintext chat content.

Every method is a short synchronous transaction; the asyncio side calls them from the event loop (they
take well under a millisecond on small rooms) or from a thread for bulk work.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peer.core.ints import in_range
from peer.core.log import LogEntry
from peer.core.persist import PersistBatch, Snapshot

SCHEMA_VERSION = 1

log = logging.getLogger("ephemesh.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    invite TEXT NOT NULL,
    joined_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS envelopes (
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    seq INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (room_id, sender, seq)
);
CREATE INDEX IF NOT EXISTS envelopes_expiry ON envelopes (expires_at);
CREATE TABLE IF NOT EXISTS tombstones (
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    seq INTEGER NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (room_id, sender, seq)
);
CREATE TABLE IF NOT EXISTS message_keys (
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    seq INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (room_id, sender, seq)
);
CREATE TABLE IF NOT EXISTS state (
    room_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (room_id, name)
);
"""


class StoreConflict(Exception):
    """Our own ``(sender, seq)`` is already stored with other content: two writers of one home."""


#: (room id, sender, seq) of an envelope refused because another one is stored under its key
Conflict = tuple[str, str, int]

_INSERT_ENVELOPE = (
    "INSERT INTO envelopes (room_id, sender, seq, lamport, sent_at, expires_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, sender, seq) DO NOTHING"
)


def _insert_envelope(db: sqlite3.Connection, room_id: str, e: LogEntry) -> bool | None:
    """True: stored; None: this very envelope was already stored; False: ANOTHER envelope is stored
    under its key (never silently reported as a write)."""
    cur = db.execute(_INSERT_ENVELOPE, (room_id, e.sender, e.seq, e.lamport, e.sent_at, e.expires_at, e.data))
    if cur.rowcount == 1:
        return True
    row = db.execute(
        "SELECT data FROM envelopes WHERE room_id = ? AND sender = ? AND seq = ?", (room_id, e.sender, e.seq)
    ).fetchone()
    return None if row is not None and bytes(row[0]) == e.data else False


class Store:
    """One SQLite database. ``Store(":memory:")`` is the in-memory store for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._closed = False
        self.rejected_rows = 0  # rows dropped by apply_batches (an integer outside the range)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._durable = True
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION).encode(),),
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Checkpoint (emptying the ``-wal`` file) and close; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.truncate_wal()
        self._db.close()

    # -- rooms -------------------------------------------------------------------------------------

    def add_room(self, room_id: str, invite: str, now: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO rooms (room_id, invite, joined_at) VALUES (?, ?, ?)",
                (room_id, invite, now),
            )

    def rooms(self) -> list[tuple[str, str]]:
        return list(self._db.execute("SELECT room_id, invite FROM rooms ORDER BY joined_at"))

    def forget_room(self, room_id: str) -> None:
        with self._tx() as db:
            for table in ("rooms", "envelopes", "tombstones", "message_keys", "state"):
                db.execute(f"DELETE FROM {table} WHERE room_id = ?", (room_id,))  # noqa: S608
        self.compact()
        self.truncate_wal()

    # -- envelopes and tombstones ---------------------------------------------------------------------

    def put_envelope(self, room_id: str, env: LogEntry) -> bool:
        """True if this call stored ``env``; False if it was already there. Raises :class:`StoreConflict`
        if a different envelope is stored under its ``(sender, seq)``."""
        with self._tx() as db:
            stored = _insert_envelope(db, room_id, env)
            if stored is False:
                raise StoreConflict(_conflict_text(room_id, env.sender, env.seq))
            return bool(stored)

    def put_envelopes(self, room_id: str, envs: list[LogEntry]) -> list[Conflict]:
        """Store what is new; returns the keys under which a different envelope was already stored."""
        conflicts: list[Conflict] = []
        with self._tx() as db:
            for e in envs:
                if _insert_envelope(db, room_id, e) is False:
                    conflicts.append((room_id, e.sender, e.seq))
        return conflicts

    def envelopes(self, room_id: str) -> list[LogEntry]:
        rows = self._db.execute(
            "SELECT sender, seq, lamport, sent_at, expires_at, data FROM envelopes WHERE room_id = ?"
            " ORDER BY lamport, sender, seq",
            (room_id,),
        )
        return [LogEntry(*row) for row in rows]

    def put_tombstone(self, room_id: str, sender: str, seq: int, until: int) -> None:
        self.erase(room_id, [(sender, seq)], until)

    def tombstones(self, room_id: str) -> list[tuple[str, int, int]]:
        return list(
            self._db.execute("SELECT sender, seq, until FROM tombstones WHERE room_id = ?", (room_id,))
        )

    def erase(self, room_id: str, keys: list[tuple[str, int]], until: int) -> None:
        """Erase messages: envelope and key rows go, a tombstone stays until ``until``."""
        if not keys:
            return
        with self._tx() as db:
            for sender, seq in keys:
                _erase_row(db, room_id, sender, seq, until)
        self.truncate_wal()

    def set_durable(self, durable: bool) -> None:
        """FULL: the next commits are fsynced; NORMAL: durable across a process crash, not a power cut."""
        if durable != self._durable:
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def truncate_wal(self) -> None:
        """Empty the ``-wal`` file, so no old page image of erased rows survives in it."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def purge_expired(self, now: int, skew_ms: int) -> int:
        """Erase everything whose expiry has passed (all rooms); drop tombstones past their time."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO tombstones (room_id, sender, seq, until)"
                " SELECT room_id, sender, seq, expires_at + ? FROM envelopes WHERE expires_at <= ?",
                (skew_ms, now),
            )
            n = db.execute("DELETE FROM envelopes WHERE expires_at <= ?", (now,)).rowcount
            db.execute("DELETE FROM message_keys WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM tombstones WHERE until <= ?", (now,))
        if n:
            self.truncate_wal()
        return n

    # -- keys and state ----------------------------------------------------------------------------------

    def put_message_key(self, room_id: str, sender: str, seq: int, expires_at: int, key: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO message_keys (room_id, sender, seq, expires_at, key) VALUES (?, ?, ?, ?, ?)",
                (room_id, sender, seq, expires_at, key),
            )

    def message_key(self, room_id: str, sender: str, seq: int) -> bytes | None:
        row = self._db.execute(
            "SELECT key FROM message_keys WHERE room_id = ? AND sender = ? AND seq = ?",
            (room_id, sender, seq),
        ).fetchone()
        return bytes(row[0]) if row else None

    def put_state(self, room_id: str, name: str, value: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO state (room_id, name, value) VALUES (?, ?, ?)", (room_id, name, value)
            )

    def put_states(self, room_id: str, items: dict[str, bytes]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO state (room_id, name, value) VALUES (?, ?, ?)",
                [(room_id, k, v) for k, v in items.items()],
            )

    def get_state(self, room_id: str, name: str) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM state WHERE room_id = ? AND name = ?", (room_id, name)
        ).fetchone()
        return bytes(row[0]) if row else None

    def states(self, room_id: str, prefix: str = "") -> dict[str, bytes]:
        rows = self._db.execute(
            "SELECT name, value FROM state WHERE room_id = ? AND substr(name, 1, ?) = ?",
            (room_id, len(prefix), prefix),
        )
        return {name: bytes(value) for name, value in rows}

    def delete_state(self, room_id: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM state WHERE room_id = ? AND name = ?", (room_id, name))

    def compact(self) -> None:
        """Rewrite the file without free pages (after large purges)."""
        self._db.execute("VACUUM")


def snapshot(store: Store, room_id: str) -> Snapshot:
    """Everything a room core needs to resume (:class:`peer.core.persist.Snapshot`)."""
    keys = {
        (sender, seq): bytes(key)
        for sender, seq, key in store._db.execute(
            "SELECT sender, seq, key FROM message_keys WHERE room_id = ?", (room_id,)
        )
    }
    return Snapshot(
        envelopes=store.envelopes(room_id),
        tombstones=store.tombstones(room_id),
        message_keys=keys,
        states=store.states(room_id),
    )


def _erase_row(db: sqlite3.Connection, room_id: str, sender: str, seq: int, until: int) -> None:
    db.execute(
        "INSERT INTO tombstones (room_id, sender, seq, until) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (room_id, sender, seq) DO UPDATE SET until = max(until, excluded.until)",
        (room_id, sender, seq, until),
    )
    db.execute("DELETE FROM envelopes WHERE room_id = ? AND sender = ? AND seq = ?", (room_id, sender, seq))
    db.execute(
        "DELETE FROM message_keys WHERE room_id = ? AND sender = ? AND seq = ?", (room_id, sender, seq)
    )


def apply_batch(store: Store, room_id: str, batch: PersistBatch, *, own: str | None = None) -> list[Conflict]:
    """Write what one room asked to persist, in one transaction."""
    return apply_batches(store, [(room_id, batch)], own=own)


def _fits(*values: int) -> bool:
    """Every integer of a row lies in the protocol's one range (``peer.core.ints``), which SQLite's
    signed 64-bit integers hold."""
    return all(in_range(v) for v in values)


def _only_fitting(store: Store, batch: PersistBatch) -> PersistBatch:
    """``batch`` without the rows holding an integer outside the range: one bad row is dropped (and
    counted), so it can never make SQLite roll back everyone else's writes in the group commit."""
    envelopes = [e for e in batch.envelopes if _fits(e.seq, e.lamport, e.sent_at, e.expires_at)]
    keys = [k for k in batch.message_keys if _fits(k[1], k[2])]
    erased = [x for x in batch.erased if _fits(x[1], x[2])]
    dropped = len(batch.envelopes) - len(envelopes) + len(batch.message_keys) - len(keys)
    dropped += len(batch.erased) - len(erased)
    if not dropped:
        return batch
    store.rejected_rows += dropped
    log.warning("dropped %d row(s) with an integer outside 0..2**53-1", dropped)
    return PersistBatch(
        envelopes=envelopes, erased=erased, message_keys=keys, states=batch.states, deleted=batch.deleted
    )


def _conflict_text(room_id: str, sender: str, seq: int) -> str:
    return (
        f"room {room_id[:8]}: another envelope is already stored as {sender[:8]}:{seq}"
        " (is a second process writing this home?)"
    )


def apply_batches(
    store: Store, batches: list[tuple[str, PersistBatch]], *, own: str | None = None
) -> list[Conflict]:
    """Write what several rooms asked to persist in ONE transaction (group commit); then, if anything
    was erased, truncate the WAL.

    An envelope whose key already holds a DIFFERENT envelope is not stored and is returned as a
    conflict (the store never reports a write it did not make); if its sender is ``own`` (us), nothing
    of the batch is stored and :class:`StoreConflict` is raised: we never publish two envelopes under
    one of our keys. Rows that cannot be stored (an integer out of range) are dropped one by one first.
    """
    batches = [(r, _only_fitting(store, b)) for r, b in batches if b]
    conflicts: list[Conflict] = []
    if not batches:
        return conflicts
    # Only what WE published must survive a power cut before it leaves (our seq and chain state: reusing
    # them would collide); what we received can be fetched again, so it skips the fsync.
    durable = any("seq" in b.states for _, b in batches)
    store.set_durable(durable)
    with store._tx() as db:
        for room_id, batch in batches:
            for e in batch.envelopes:
                if _insert_envelope(db, room_id, e) is False:
                    if e.sender == own:
                        raise StoreConflict(_conflict_text(room_id, e.sender, e.seq))
                    conflicts.append((room_id, e.sender, e.seq))
            db.executemany(
                "INSERT OR REPLACE INTO message_keys (room_id, sender, seq, expires_at, key) VALUES (?, ?, ?, ?, ?)",
                [(room_id, s, q, x, k) for s, q, x, k in batch.message_keys],
            )
            db.executemany(
                "INSERT OR REPLACE INTO state (room_id, name, value) VALUES (?, ?, ?)",
                [(room_id, k, v) for k, v in batch.states.items()],
            )
            db.executemany(
                "DELETE FROM state WHERE room_id = ? AND name = ?",
                [(room_id, n) for n in sorted(batch.deleted)],
            )
            for sender, seq, until in batch.erased:
                _erase_row(db, room_id, sender, seq, until)
    if any(b.erased for _, b in batches):
        store.truncate_wal()
    return conflicts
