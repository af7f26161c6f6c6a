"""Who may do what: owner (bound by the invite), admins, members; concurrent ops in canonical order."""

from __future__ import annotations

import pytest

from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.membership import (
    MembershipOp,
    MembershipState,
    Role,
    make_add,
    make_readmit,
    make_remove,
    make_role,
    make_set_timer,
    make_settings,
)

from .helpers import identity, prekey


def _room(owner: Identity, *others: Identity) -> tuple[Invite, MembershipState]:
    inv = Invite.new("https://chat.example", owner=owner.peer_id)
    state = MembershipState(inv.room_id, owner=inv.owner)
    for lamport, m in enumerate((owner, *others), start=1):
        state = state.apply(
            make_add(m, inv.member_key, inv.room_id, lamport, m.public_bundle(), prekey(m).signed),
            inv.member_key,
        )
    return inv, state


def test_owner_is_admin_members_are_not() -> None:
    alice, bob = identity("alice"), identity("bob")
    _inv, state = _room(alice, bob)
    assert state.is_admin(alice.peer_id)
    assert not state.is_admin(bob.peer_id)
    assert not state.is_admin(identity("mallory").peer_id)


def test_a_member_cannot_remove_retime_or_change_settings() -> None:
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    inv, state = _room(alice, bob, carol)
    mk, room = inv.member_key, inv.room_id
    for op in (
        make_remove(bob, mk, room, 9, carol.peer_id),
        make_remove(bob, mk, room, 9, alice.peer_id),
        make_set_timer(bob, mk, room, 9, 60, 1),
        make_settings(bob, mk, room, 9, announce=True),
        make_role(bob, mk, room, 9, bob.peer_id, Role.ADMIN),  # no self-promotion
    ):
        with pytest.raises(ProtocolError, match="not-admin"):
            state.apply(op, mk)


def test_anyone_may_leave_and_only_an_admin_readmits() -> None:
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    inv, state = _room(alice, bob, carol)
    mk, room = inv.member_key, inv.room_id
    state = state.apply(make_remove(bob, mk, room, 9, bob.peer_id), mk)
    assert bob.peer_id in state.removed
    assert state.epoch == 1
    with pytest.raises(ProtocolError, match="removed"):  # no coming back by itself
        state.apply(make_add(bob, mk, room, 10, bob.public_bundle(), prekey(bob).signed), mk)
    with pytest.raises(ProtocolError, match="not-admin"):
        state.apply(make_readmit(carol, mk, room, 10, bob.peer_id), mk)
    state = state.apply(make_readmit(alice, mk, room, 10, bob.peer_id), mk)
    assert state.is_member(bob.peer_id)
    assert bob.peer_id not in state.removed
    assert state.epoch == 2  # every sender rotates and hands the readmitted member its new chain
    with pytest.raises(ProtocolError, match="not-removed"):
        state.apply(make_readmit(alice, mk, room, 11, carol.peer_id), mk)


def test_admins_appointed_and_demoted_owner_fixed() -> None:
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    inv, state = _room(alice, bob, carol)
    mk, room = inv.member_key, inv.room_id
    state = state.apply(make_role(alice, mk, room, 9, bob.peer_id, Role.ADMIN), mk)
    state = state.apply(make_role(bob, mk, room, 10, carol.peer_id, Role.ADMIN), mk)  # admins appoint
    assert state.is_admin(carol.peer_id)
    with pytest.raises(ProtocolError, match="not-allowed"):
        state.apply(make_role(bob, mk, room, 11, alice.peer_id, Role.MEMBER), mk)
    with pytest.raises(ProtocolError, match="not-allowed"):
        state.apply(make_remove(bob, mk, room, 11, alice.peer_id), mk)
    state = state.apply(make_remove(carol, mk, room, 11, bob.peer_id), mk)  # an admin removes an admin
    assert bob.peer_id not in state.admins
    state = state.apply(make_readmit(carol, mk, room, 12, bob.peer_id), mk)
    assert state.is_member(bob.peer_id)
    assert not state.is_admin(bob.peer_id)
    state = state.apply(make_role(carol, mk, room, 13, carol.peer_id, Role.MEMBER), mk)  # steps down
    assert [p for p in state.members if state.is_admin(p)] == [alice.peer_id]


def test_owner_binding_changing_the_owner_makes_another_room() -> None:
    alice, mallory = identity("alice"), identity("mallory")
    inv = Invite.new("https://chat.example", owner=alice.peer_id)
    forged = Invite(inv.server, inv.secret, inv.ttl_s, mallory.peer_id)
    legacy = Invite(inv.server, inv.secret, inv.ttl_s)
    assert len({inv.room_id, forged.room_id, legacy.room_id}) == 3
    assert len({inv.member_key, forged.member_key, legacy.member_key}) == 3
    # an op made under the forged invite is for another room and under another key
    _, state = _room(alice)
    op = make_add(
        mallory, forged.member_key, forged.room_id, 5, mallory.public_bundle(), prekey(mallory).signed
    )
    with pytest.raises(ProtocolError, match="wrong-room"):
        state.apply(op, inv.member_key)
    assert Invite.parse(inv.url()).owner == alice.peer_id
    assert Invite.parse(legacy.url()).owner is None
    with pytest.raises(ProtocolError, match="bad-invite"):
        Invite(inv.server, inv.secret, None, "not-an-id")


def test_legacy_room_every_member_is_admin_and_role_is_refused() -> None:
    alice, bob = identity("alice"), identity("bob")
    inv = Invite.new("https://chat.example")
    mk, room = inv.member_key, inv.room_id
    state = MembershipState(room)
    for lamport, m in enumerate((alice, bob), start=1):
        state = state.apply(make_add(m, mk, room, lamport, m.public_bundle(), prekey(m).signed), mk)
    assert state.is_admin(bob.peer_id)
    with pytest.raises(ProtocolError, match="not-allowed"):
        state.apply(make_role(alice, mk, room, 5, bob.peer_id, Role.ADMIN), mk)
    state = state.apply(make_remove(bob, mk, room, 5, alice.peer_id), mk)
    state = state.apply(make_readmit(bob, mk, room, 6, alice.peer_id), mk)  # removals are no longer forever
    assert state.is_member(alice.peer_id)


def test_announcement_mode_by_lamport() -> None:
    alice, bob = identity("alice"), identity("bob")
    inv, state = _room(alice, bob)
    mk, room = inv.member_key, inv.room_id
    state = state.apply(make_settings(alice, mk, room, 20, announce=True), mk)
    assert state.announce
    assert state.announce_since == 20
    assert state.may_post(bob.peer_id, 20)  # before (or at) the switch: still shown
    assert not state.may_post(bob.peer_id, 21)
    assert state.may_post(alice.peer_id, 21)
    again = state.apply(make_settings(alice, mk, room, 25, announce=True), mk)
    assert again.announce_since == 20  # turning it on twice keeps the first switch
    off = again.apply(make_settings(alice, mk, room, 30, announce=False), mk)
    assert not off.announce
    assert off.may_post(bob.peer_id, 31)


def test_demotion_and_removal_concurrent_resolve_by_canonical_order() -> None:
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    inv, _ = _room(alice, bob, carol)
    mk, room = inv.member_key, inv.room_id
    appoint = make_role(alice, mk, room, 5, bob.peer_id, Role.ADMIN)
    add_ops = [
        make_add(m, mk, room, n, m.public_bundle(), prekey(m).signed)
        for n, m in enumerate((alice, bob, carol), start=1)
    ]
    demote = make_role(alice, mk, room, 10, bob.peer_id, Role.MEMBER)
    for lamport, stands in ((9, True), (11, False)):
        removal = make_remove(bob, mk, room, lamport, carol.peer_id)
        ops = [*add_ops, appoint, removal, demote]
        for order in (ops, ops[::-1]):
            state, rejected = MembershipState.from_ops(room, order, mk, inv.owner)
            assert (carol.peer_id in state.removed) is stands
            assert rejected == ([] if stands else [removal])
            assert not state.is_admin(bob.peer_id)


def test_bad_role_and_settings_bodies_are_refused() -> None:
    alice, bob = identity("alice"), identity("bob")
    inv, _ = _room(alice, bob)
    role = make_role(alice, inv.member_key, inv.room_id, 5, bob.peer_id, Role.ADMIN).encode()
    bad_role = role[: 42 + 16] + b"\x02" + role[42 + 17 :]
    with pytest.raises(ProtocolError, match="bad-op"):
        MembershipOp.decode(bad_role)
    settings = make_settings(alice, inv.member_key, inv.room_id, 5, announce=True).encode()
    bad_flags = settings[:42] + b"\x00\x00\x00\x03" + settings[46:]
    with pytest.raises(ProtocolError, match="bad-op"):
        MembershipOp.decode(bad_flags)
    with pytest.raises(ProtocolError, match="bad-op"):  # a ROLE body one byte short
        MembershipOp.decode(role[:42] + role[43:])
    assert MembershipOp.decode(role).role == Role.ADMIN
