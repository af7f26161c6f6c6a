"""What a room asks its adapter to store, and what the store hands back on restart.

The room core never does I/O: after every call the adapter drains a :class:`PersistBatch` and writes it
(in one transaction) *before* it transmits anything the call returned. A batch is a delta, and it can
say "gone": ``erased`` removes an envelope and its message key (a tombstone stays), ``deleted`` removes
named state rows (e.g. the receiver chains of a removed member). Each part of the room owns the state
names it writes (see ``docs/architecture.md``); this module knows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peer.core.crypto import b64u_encode
from peer.core.log import Key, LogEntry


@dataclass
class PersistBatch:
    envelopes: list[LogEntry] = field(default_factory=list)
    erased: list[tuple[str, int, int]] = field(default_factory=list)  # sender, seq, tombstone until
    message_keys: list[tuple[str, int, int, bytes]] = field(default_factory=list)  # sender, seq, exp, key
    states: dict[str, bytes] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)  # state names to delete

    def __bool__(self) -> bool:
        return bool(self.envelopes or self.erased or self.message_keys or self.states or self.deleted)

    def put(self, name: str, value: bytes) -> None:
        self.states[name] = value
        self.deleted.discard(name)

    def delete(self, name: str) -> None:
        self.states.pop(name, None)
        self.deleted.add(name)

    def to_json(self) -> dict[str, Any]:
        """A canonical JSON form (recorded traces compare it byte for byte)."""
        return {
            "envelopes": [b64u_encode(e.data) for e in self.envelopes],
            "erased": [[s, q, u] for s, q, u in self.erased],
            "message_keys": [[s, q, x, b64u_encode(k)] for s, q, x, k in self.message_keys],
            "states": {k: b64u_encode(v) for k, v in sorted(self.states.items())},
            "deleted": sorted(self.deleted),
        }


@dataclass
class Snapshot:
    """What the store hands back on restart."""

    envelopes: list[LogEntry] = field(default_factory=list)
    tombstones: list[tuple[str, int, int]] = field(default_factory=list)
    message_keys: dict[Key, bytes] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)

    def apply(self, batch: PersistBatch) -> None:
        """What a store that applied ``batch`` would hand back (mirrors ``peer.store.sqlite.apply_batch``)."""
        erased = {(s, q) for s, q, _ in self.tombstones}
        envs = {e.key: e for e in self.envelopes}
        for e in batch.envelopes:
            if e.key not in erased:
                envs.setdefault(e.key, e)
        for sender, seq, _exp, key in batch.message_keys:
            self.message_keys[(sender, seq)] = key
        self.states.update(batch.states)
        for name in batch.deleted:
            self.states.pop(name, None)
        tombs = {(s, q): u for s, q, u in self.tombstones}
        for sender, seq, until in batch.erased:
            envs.pop((sender, seq), None)
            self.message_keys.pop((sender, seq), None)
            tombs[(sender, seq)] = max(until, tombs.get((sender, seq), 0))
        self.envelopes = list(envs.values())
        self.tombstones = [(s, q, u) for (s, q), u in tombs.items()]
