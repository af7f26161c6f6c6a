"""Restart: put a stored snapshot back into the parts. Anything expired or deleted by now is erased (and
reported to the store), never shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peer.core import wire
from peer.core.envelope import Envelope, Kind, decode_tombstone, parse_envelope
from peer.core.log import Key, LogEntry
from peer.core.membership import MembershipOp, OpType
from peer.core.persist import Snapshot

if TYPE_CHECKING:
    from .room import Room


def restore(room: Room, snap: Snapshot, now: int) -> None:
    sync, batch = room.sync, room._persist
    parsed = [(e, parse_envelope(e.data)) for e in sorted(snap.envelopes, key=lambda e: e.order_key)]
    adds: set[Key] = set()
    for entry, env in parsed:
        if env.kind == Kind.MEMBERSHIP:
            op = MembershipOp.decode(env.payload)
            room.members_part.add_op(entry.key, op)
            if op.op == OpType.ADD:
                adds.add(entry.key)
    room.members_part.recompute()
    for pid in sorted(room.membership.removed):  # stores written before removal deleted them still hold these
        room.keys.forget_sender(pid, batch)
    # unsends first, with their proof, so a restored member still answers stale copies with them
    state_keys = {e.key for e, env in parsed if env.kind != Kind.CHAT}
    for entry, env in parsed:
        if env.kind == Kind.TOMBSTONE and entry.expires_at > now:
            for seq in decode_tombstone(env.payload):
                if (env.sender, seq) not in state_keys:  # room state is never unsent
                    sync.restore_tombstone((env.sender, seq), room._unsend_until(env.expires_at), entry.data)
    for sender, seq, until in snap.tombstones:
        if until > now:
            sync.restore_tombstone((sender, seq), until)
            room.receipts.owe(sender, seq)  # erased (or never held) here: (re)report it, the sender dedupes
    restored: set[Key] = set()
    erased_own: list[tuple[bytes, int]] = []  # our CHAT messages that expired while we were down
    for entry, env in parsed:
        if env.kind == Kind.CHAT and env.sender == room.peer_id:
            room.receipts.track(env.seq)
        if not sync.restore(entry, now):
            _erase_at_restore(room, entry, env, now)
            if env.kind == Kind.CHAT and env.sender == room.peer_id:
                erased_own.append((env.chain_id, env.chain_index))
            continue
        restored.add(entry.key)
        if entry.key not in adds:
            room.distribution.shown_life(env.sender)
        if env.kind == Kind.CHAT:
            room.keys.hold_chat(env)
            key = snap.message_keys.get(entry.key)
            if key is not None:
                room._open_restored(env, key)
            elif not room.keeper:
                room.keys.wait(env)
        elif env.kind == Kind.SENDER_KEY and not room.keeper:
            room._take_sender_key(env, now, [])
    for sender, seq in sorted(snap.message_keys.keys() - restored):
        tomb = sync.tombstone_of((sender, seq))
        batch.erased.append((sender, seq, tomb.until if tomb is not None else 0))
    room.keys.advance_initial(batch, erased_own)
    live = room.keys.initials_for_late_joiner(room.members_part.epoch, now)
    for pid in room.members_part.others():  # owed a live chain when we stopped: served from the queue
        if any(not room.keys.was_given(pid, init.chain_id) for init, _ in live):
            room.distribution.enqueue(pid)


def _erase_at_restore(room: Room, entry: LogEntry, env: Envelope, now: int) -> None:
    """A stored entry the log refuses (expired or tombstoned): erase it from the store and report it."""
    sync = room.sync
    until = min(entry.expires_at + sync.skew_ms, wire.MAX_INT)
    if until > now:
        sync.restore_tombstone(entry.key, until)
    tomb = sync.tombstone_of(entry.key)
    room._persist.erased.append((entry.sender, entry.seq, tomb.until if tomb is not None else until))
    if env.kind == Kind.CHAT:
        room.receipts.owe(env.sender, env.seq)
