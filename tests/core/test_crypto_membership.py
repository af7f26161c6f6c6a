"""Signed membership ops and deterministic state."""

from __future__ import annotations

import pytest

from peer.core.errors import ProtocolError
from peer.core.membership import MembershipOp, MembershipState, make_add, make_remove, make_set_timer

from .helpers import identity, invite, prekey, room_with


def test_self_add_add_remove_epoch() -> None:
    inv = invite()
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    state = room_with(alice, bob)
    assert state.is_member(alice.peer_id)
    assert state.is_member(bob.peer_id)
    assert state.epoch == 0
    add_carol = make_add(alice, inv.member_key, inv.room_id, 5, carol.public_bundle(), prekey(carol).signed)
    state = state.apply(MembershipOp.decode(add_carol.encode()), inv.member_key)
    state = state.apply(make_remove(bob, inv.member_key, inv.room_id, 6, carol.peer_id), inv.member_key)
    assert not state.is_member(carol.peer_id)
    assert state.epoch == 1
    with pytest.raises(ProtocolError, match="removed"):  # removed member's ops are rejected
        state.apply(make_set_timer(carol, inv.member_key, inv.room_id, 7, 60, 9), inv.member_key)
    with pytest.raises(ProtocolError, match="removed"):  # and she cannot be re-added
        state.apply(add_carol, inv.member_key)
    assert MembershipState.from_dict(state.to_dict()) == state


def test_rejections() -> None:
    inv = invite()
    alice, bob, mallory = identity("alice"), identity("bob"), identity("mallory")
    state = room_with(alice)
    with pytest.raises(ProtocolError, match="bad-mac"):  # no member_key, no membership
        state.apply(
            make_add(mallory, b"\x00" * 32, inv.room_id, 2, mallory.public_bundle(), prekey(mallory).signed),
            inv.member_key,
        )
    with pytest.raises(ProtocolError, match="not-member"):  # non-member adding someone else
        state.apply(
            make_add(mallory, inv.member_key, inv.room_id, 2, bob.public_bundle(), prekey(bob).signed),
            inv.member_key,
        )
    with pytest.raises(ProtocolError, match="not-member"):
        state.apply(make_remove(mallory, inv.member_key, inv.room_id, 2, alice.peer_id), inv.member_key)
    op = make_set_timer(alice, inv.member_key, inv.room_id, 2, 60, 1)
    forged = MembershipOp(op.op, op.room_id, op.author, op.lamport, op.body, op.mac, mallory.sign(b"x"))
    with pytest.raises(ProtocolError, match="bad-signature"):
        state.apply(forged, inv.member_key)


def test_timer_latest_version_wins_order_independent() -> None:
    inv = invite()
    alice, bob = identity("alice"), identity("bob")
    base = room_with(alice, bob)
    ops = [
        make_set_timer(alice, inv.member_key, inv.room_id, 10, 60, 2),
        make_set_timer(bob, inv.member_key, inv.room_id, 11, 120, 2),
        make_set_timer(alice, inv.member_key, inv.room_id, 12, 30, 1),
    ]
    results = set()
    for order in (ops, ops[::-1], [ops[1], ops[2], ops[0]]):
        state = base
        for op in order:
            state = state.apply(op, inv.member_key)
        assert state.timer is not None
        results.add((state.timer.ttl_s, state.timer.author))
    winner = max((alice.peer_id, 60), (bob.peer_id, 120))
    assert results == {(winner[1], winner[0])}


def test_from_ops_is_deterministic() -> None:
    inv = invite()
    alice, bob = identity("alice"), identity("bob")
    ops = [
        make_add(alice, inv.member_key, inv.room_id, 1, alice.public_bundle(), prekey(alice).signed),
        make_add(alice, inv.member_key, inv.room_id, 2, bob.public_bundle(), prekey(bob).signed),
        make_remove(alice, inv.member_key, inv.room_id, 3, bob.peer_id),
    ]
    s1, r1 = MembershipState.from_ops(inv.room_id, ops, inv.member_key)
    s2, r2 = MembershipState.from_ops(inv.room_id, ops[::-1], inv.member_key)
    assert s1 == s2
    assert r1 == r2 == []
    assert s1.epoch == 1


def test_timer_cannot_be_pinned_by_a_huge_version() -> None:
    """Issue 13, item 13: versions form a chain from 1; a skipped version is held, not applied."""
    inv = invite()
    alice, mallory = identity("alice"), identity("mallory")
    base = room_with(alice, mallory)
    mk, rid = inv.member_key, inv.room_id
    pin = make_set_timer(mallory, mk, rid, 3, 1, 2**32 - 1)
    state = base.apply(pin, mk)
    assert state.timer is None  # held: versions 1 .. 2**32-2 do not exist
    state = state.apply(make_set_timer(alice, mk, rid, 4, 600, 1), mk)
    assert state.timer is not None
    assert (state.timer.ttl_s, state.timer.author) == (600, alice.peer_id)
    # the attacker can only take the next version, which the next honest change outranks
    state = state.apply(make_set_timer(mallory, mk, rid, 5, 1, 2), mk)
    state = state.apply(make_set_timer(alice, mk, rid, 6, 600, 3), mk)
    assert state.timer is not None
    assert (state.timer.ttl_s, state.timer.version) == (600, 3)
    with pytest.raises(ValueError, match="version"):  # a clean refusal, never struct.error
        make_set_timer(alice, mk, rid, 7, 600, 2**32)


def test_timer_winner_does_not_depend_on_lamport_or_order() -> None:
    """An op placed late by a huge lamport cannot hide the honest next version behind a 'gap'."""
    inv = invite()
    alice, mallory = identity("alice"), identity("mallory")
    mk, rid = inv.member_key, inv.room_id
    ops = [
        make_add(alice, mk, rid, 1, alice.public_bundle(), prekey(alice).signed),
        make_add(mallory, mk, rid, 2, mallory.public_bundle(), prekey(mallory).signed),
        make_set_timer(alice, mk, rid, 3, 600, 1),
        make_set_timer(mallory, mk, rid, 2**53 - 1, 1, 2),  # sorts last of all
        make_set_timer(alice, mk, rid, 10, 900, 3),  # alice saw version 2 and answered
    ]
    for order in (ops, ops[::-1], ops[2:] + ops[:2]):
        state, rejected = MembershipState.from_ops(rid, order, mk)
        assert not rejected
        assert state.timer is not None
        assert (state.timer.ttl_s, state.timer.version, state.timer.author) == (900, 3, alice.peer_id)
