"""The SQLite store on real files: persistence, erasure, tombstones, secure_delete."""

from __future__ import annotations

from pathlib import Path

from peer.core.log import LogEntry
from peer.store.sqlite import Store


def env(sender: str, seq: int, lamport: int, expires_at: int, data: bytes) -> LogEntry:
    return LogEntry(sender=sender, seq=seq, lamport=lamport, sent_at=0, expires_at=expires_at, data=data)


def test_envelopes_survive_reopen_in_total_order(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.put_envelopes(
        "r", [env("b", 1, 2, 100, b"x"), env("a", 1, 2, 100, b"y"), env("a", 2, 1, 100, b"z")]
    )
    assert not store.put_envelope("r", env("a", 1, 2, 100, b"y"))  # the same envelope again: no write
    store.close()
    store = Store(path)
    got = [(e.sender, e.seq, e.data) for e in store.envelopes("r")]
    assert got == [("a", 2, b"z"), ("a", 1, b"y"), ("b", 1, b"x")]
    assert store.envelopes("other") == []


def test_purge_expired_erases_rows_keys_and_leaves_tombstones(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.put_envelopes("r", [env("a", 1, 1, 50, b"old"), env("a", 2, 2, 500, b"new")])
    store.put_message_key("r", "a", 1, 50, b"k" * 32)
    store.put_message_key("r", "a", 2, 500, b"K" * 32)
    assert store.purge_expired(now=100, skew_ms=60) == 1
    assert [e.seq for e in store.envelopes("r")] == [2]
    assert store.message_key("r", "a", 1) is None
    assert store.message_key("r", "a", 2) == b"K" * 32
    assert store.tombstones("r") == [("a", 1, 110)]
    store.purge_expired(now=111, skew_ms=60)
    assert store.tombstones("r") == []


def test_erased_bytes_are_not_left_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    marker = b"FORENSIC-MARKER-" * 8
    keymark = b"KEYMARK!" * 4
    store.put_envelope("r", env("a", 1, 1, 10, marker))
    store.put_message_key("r", "a", 1, 10, keymark)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert marker in raw
    store.erase("r", [("a", 1)], until=100)
    store.close()
    for p in tmp_path.iterdir():
        data = p.read_bytes()
        assert marker not in data, p
        assert keymark not in data, p
    assert {p.name for p in tmp_path.iterdir()} == {"s.sqlite3"}


def test_state_and_rooms(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.add_room("r", "http://x/#secret", 1)
    store.put_states("r", {"chain/own": b"1", "chain/rx/a": b"2", "lamport": b"3"})
    assert store.states("r", "chain/") == {"chain/own": b"1", "chain/rx/a": b"2"}
    assert store.get_state("r", "lamport") == b"3"
    store.delete_state("r", "lamport")
    assert store.get_state("r", "lamport") is None
    assert store.rooms() == [("r", "http://x/#secret")]
    store.forget_room("r")
    assert store.rooms() == []
    assert store.states("r") == {}
