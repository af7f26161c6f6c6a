"""Closed rooms with admin approval (ADMISSION op, READMIT as *admit*): the member cap of issue 13 item 8."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.membership import (
    MAX_CLOSE_IDS,
    MAX_REQUESTS,
    MembershipOp,
    MembershipState,
    OpType,
    make_add,
    make_admission,
    make_readmit,
    make_remove,
)

from .helpers import identity, prekey

_INV = Invite.new("https://chat.example", owner=identity("alice").peer_id)


def _self_add(m: Identity, lamport: int, inv: Invite = _INV) -> MembershipOp:
    return make_add(m, inv.member_key, inv.room_id, lamport, m.public_bundle(), prekey(m).signed)


def _state(ops: list[MembershipOp], inv: Invite = _INV) -> MembershipState:
    state, _rejected = MembershipState.from_ops(inv.room_id, ops, inv.member_key, inv.owner)
    return state


def _ground_low_id(below: str) -> Identity:
    """An identity whose peer id sorts below ``below`` (what an attacker grinds)."""
    for i in range(10_000):
        m = identity(f"fake-low-{i}")
        if m.peer_id < below:
            return m
    raise AssertionError("no low id found")


ALICE, BOB, CAROL, DAVE = identity("alice"), identity("bob"), identity("carol"), identity("dave")
MK, ROOM = _INV.member_key, _INV.room_id


def test_after_a_close_a_self_add_admits_no_one_and_is_a_join_request() -> None:
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id, BOB.peer_id])
    state = _state([_self_add(ALICE, 1), _self_add(BOB, 2), close, _self_add(CAROL, 11)])
    assert state.closed
    assert set(state.members) == {ALICE.peer_id, BOB.peer_id}
    assert set(state.requests) == {CAROL.peer_id}
    admitted = _state(
        [
            _self_add(ALICE, 1),
            _self_add(BOB, 2),
            close,
            _self_add(CAROL, 11),
            make_readmit(ALICE, MK, ROOM, 12, CAROL.peer_id),
        ]
    )
    assert set(admitted.members) == {ALICE.peer_id, BOB.peer_id, CAROL.peer_id}
    assert admitted.requests == {}
    assert admitted.epoch == 0  # a new member needs no rotation


def test_backdated_self_add_with_a_ground_low_id_admits_no_one() -> None:
    """The attack a lamport-ordered cap fails: lamport 1 and an id below every member's."""
    fake = _ground_low_id(min(ALICE.peer_id, BOB.peer_id))
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id, BOB.peer_id])
    state = _state([_self_add(ALICE, 1), _self_add(BOB, 2), close, _self_add(fake, 1)])
    assert not state.is_member(fake.peer_id)
    assert set(state.members) == {ALICE.peer_id, BOB.peer_id}
    assert fake.peer_id in state.requests  # visible to admins as "asks to join"


def test_a_close_drops_members_not_listed_and_an_admit_lets_them_in() -> None:
    # carol joined concurrently (alice had not seen her): left out visibly, admitted by name
    close = make_admission(ALICE, MK, ROOM, 10, [BOB.peer_id])  # author and owner are always kept
    state = _state([_self_add(ALICE, 1), _self_add(BOB, 2), _self_add(CAROL, 3), close])
    assert set(state.members) == {ALICE.peer_id, BOB.peer_id}
    assert set(state.requests) == {CAROL.peer_id}
    assert state.epoch == 0  # a close does not rotate (a late self-ADD sorts before it); REMOVE does
    state = state.apply(make_readmit(ALICE, MK, ROOM, 11, CAROL.peer_id), MK)
    assert state.is_member(CAROL.peer_id)


def test_an_admit_ahead_of_the_add_admits_the_add() -> None:
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id])
    admit = make_readmit(ALICE, MK, ROOM, 11, DAVE.peer_id)
    state = _state([_self_add(ALICE, 1), close, admit, _self_add(DAVE, 12)])
    assert state.is_member(DAVE.peer_id)
    assert state.allowed == frozenset()


def test_only_admins_close_open_and_admit() -> None:
    base = [_self_add(ALICE, 1), _self_add(BOB, 2)]
    state = _state(base)
    for op in (
        make_admission(BOB, MK, ROOM, 5, [BOB.peer_id]),
        make_admission(BOB, MK, ROOM, 5, None),
    ):
        with pytest.raises(ProtocolError, match="not-admin"):
            state.apply(op, MK)
    closed = state.apply(make_admission(ALICE, MK, ROOM, 5, [ALICE.peer_id, BOB.peer_id]), MK)
    with pytest.raises(ProtocolError, match="not-admin"):
        closed.apply(make_readmit(BOB, MK, ROOM, 6, CAROL.peer_id), MK)
    with pytest.raises(ProtocolError, match="not-removed"):  # open room: nothing to admit
        state.apply(make_readmit(ALICE, MK, ROOM, 6, CAROL.peer_id), MK)


def test_reopening_restores_open_admission_and_admits_pending_requests() -> None:
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id, BOB.peer_id])
    reopen = make_admission(ALICE, MK, ROOM, 20, None)
    state = _state(
        [_self_add(ALICE, 1), _self_add(BOB, 2), close, _self_add(CAROL, 11), reopen, _self_add(DAVE, 21)]
    )
    assert not state.closed
    assert set(state.members) == {ALICE.peer_id, BOB.peer_id, CAROL.peer_id, DAVE.peer_id}
    assert state.requests == {}


def test_a_legacy_room_cannot_be_closed() -> None:
    legacy = Invite.new("https://chat.example")
    state = _state([_self_add(ALICE, 1, legacy)], legacy)
    with pytest.raises(ProtocolError, match="legacy room cannot be closed"):
        state.apply(
            make_admission(ALICE, legacy.member_key, legacy.room_id, 2, [ALICE.peer_id]), legacy.member_key
        )


def test_concurrent_closes_apply_in_canonical_order_each_replacing_the_list() -> None:
    # alice (owner) appoints nobody; two closes by the owner at the same lamport: canonical order decides
    c1 = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id, BOB.peer_id])
    c2 = make_admission(ALICE, MK, ROOM, 11, [ALICE.peer_id, BOB.peer_id, CAROL.peer_id])
    ops = [_self_add(ALICE, 1), _self_add(BOB, 2), _self_add(CAROL, 3), c2, c1]
    state = _state(ops)
    # c1 first drops carol; c2 lists carol but intersects with the members at that point: carol stays out
    assert set(state.members) == {ALICE.peer_id, BOB.peer_id}
    assert CAROL.peer_id in state.requests


def test_an_admins_add_of_another_admits_it_but_a_members_does_not() -> None:
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id, BOB.peer_id])
    by_member = make_add(BOB, MK, ROOM, 11, CAROL.public_bundle(), prekey(CAROL).signed)
    by_admin = make_add(ALICE, MK, ROOM, 11, DAVE.public_bundle(), prekey(DAVE).signed)
    state = _state([_self_add(ALICE, 1), _self_add(BOB, 2), close, by_member, by_admin])
    assert not state.is_member(CAROL.peer_id)
    assert state.is_member(DAVE.peer_id)


def test_join_requests_are_bounded() -> None:
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id])
    state = _state([_self_add(ALICE, 1), close])
    fakes = [identity(f"req-{i}") for i in range(MAX_REQUESTS + 5)]
    for i, f in enumerate(fakes):
        state = state.apply(_self_add(f, 11 + i), MK)
    assert len(state.requests) == MAX_REQUESTS
    assert len(state.members) == 1


def test_admission_op_codec_and_bad_bodies() -> None:
    ids = sorted(identity(f"m{i}").peer_id for i in range(3))
    op = make_admission(ALICE, MK, ROOM, 7, ids)
    again = MembershipOp.decode(op.encode())
    assert again == op
    assert again.op == OpType.ADMISSION
    assert again.closing
    assert list(again.admits) == ids
    opened = MembershipOp.decode(make_admission(ALICE, MK, ROOM, 8, None).encode())
    assert not opened.closing
    assert opened.admits == ()
    raw = op.encode()
    body = raw[42:-96]
    swapped = body[:3] + body[19:35] + body[3:19] + body[35:]  # not ascending
    bad = {
        "mode 2": raw[:42] + b"\x02" + raw[43:],
        "not ascending": raw[:42] + swapped + raw[-96:],
        "count too high": raw[:43] + b"\x00\x04" + raw[45:],
        "open with ids": raw[:42] + b"\x00" + raw[43:],
        "close with none": raw[:42] + b"\x01\x00\x00" + raw[-96:],
    }
    for name, data in bad.items():
        with pytest.raises(ProtocolError, match="bad-op"):
            MembershipOp.decode(data)
        assert name
    with pytest.raises(ValueError):
        make_admission(ALICE, MK, ROOM, 7, [])
    big = make_admission(ALICE, MK, ROOM, 7, [f"{i:032x}" for i in range(MAX_CLOSE_IDS)])
    assert len(MembershipOp.decode(big.encode()).admits) == MAX_CLOSE_IDS
    with pytest.raises(ValueError):
        make_admission(ALICE, MK, ROOM, 7, [f"{i:032x}" for i in range(MAX_CLOSE_IDS + 1)])


def test_state_round_trips_through_its_dict() -> None:
    close = make_admission(ALICE, MK, ROOM, 10, [ALICE.peer_id])
    state = _state(
        [_self_add(ALICE, 1), close, _self_add(CAROL, 11), make_readmit(ALICE, MK, ROOM, 12, DAVE.peer_id)]
    )
    assert MembershipState.from_dict(state.to_dict()) == state


_POOL = [ALICE, BOB, CAROL, DAVE, identity("erin")]


def _op_strategy() -> st.SearchStrategy[MembershipOp]:
    lamports = st.integers(min_value=1, max_value=12)
    who = st.sampled_from(_POOL)
    admin = st.sampled_from([ALICE])
    subset = st.lists(st.sampled_from([m.peer_id for m in _POOL]), min_size=1, max_size=5, unique=True)
    return st.one_of(
        st.builds(lambda m, lam: _self_add(m, lam), who, lamports),
        st.builds(lambda a, lam, ids: make_admission(a, MK, ROOM, lam, ids), admin, lamports, subset),
        st.builds(lambda a, lam: make_admission(a, MK, ROOM, lam, None), admin, lamports),
        st.builds(lambda a, lam, t: make_readmit(a, MK, ROOM, lam, t.peer_id), admin, lamports, who),
        st.builds(lambda a, lam, t: make_remove(a, MK, ROOM, lam, t.peer_id), who, lamports, who),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_op_strategy(), min_size=1, max_size=14), st.randoms(use_true_random=False))
def test_same_ops_in_any_order_give_the_same_members(ops: list[MembershipOp], rnd: object) -> None:
    ops = [_self_add(ALICE, 1), *ops]
    shuffled = list(ops)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = _state(ops), _state(shuffled)
    assert a == b
    assert a.to_dict() == b.to_dict()
    # incremental application in canonical order gives the same state as a replay
    inc = MembershipState(ROOM, owner=_INV.owner)
    for op in sorted(shuffled, key=lambda o: o.sort_key):
        with contextlib.suppress(ProtocolError):
            inc = inc.apply(op, MK)
    assert inc == a


def test_admission_vectors_resolve_identically_in_any_order() -> None:
    """tests/vectors/admission.json (checked in JS too: web/js/test/admission-vectors.js)."""
    import json
    from pathlib import Path

    v = json.loads((Path(__file__).parents[1] / "vectors" / "admission.json").read_text())
    mk = bytes.fromhex(v["member_key"])
    close = MembershipOp.decode(bytes.fromhex(v["close_op"]["hex"]))
    assert list(close.admits) == v["close_op"]["ids"]
    assert close.closing
    assert not MembershipOp.decode(bytes.fromhex(v["open_op"]["hex"])).closing
    biggest = bytes.fromhex(v["max_close_op"])
    assert len(biggest) == 16_525
    assert len(MembershipOp.decode(biggest).admits) == MAX_CLOSE_IDS
    with pytest.raises(ProtocolError, match="bad-op"):  # one id more: over the size limit
        MembershipOp.decode(biggest[:-96] + bytes(16) + biggest[-96:])
    for bad in v["bad"]:
        with pytest.raises(ProtocolError, match="bad-op"):
            MembershipOp.decode(bytes.fromhex(bad["hex"]))
    for sc in v["scenarios"]:
        ops = [MembershipOp.decode(bytes.fromhex(o)) for o in sc["ops"]]
        for order in (ops, ops[::-1], ops[1::2] + ops[::2]):
            state, rejected = MembershipState.from_ops(
                sc["room_id"], order, bytes.fromhex(sc["member_key"]), sc["owner"]
            )
            assert state.to_dict() == sc["state"], sc["name"]
            assert sorted(ops.index(op) for op in rejected) == sc["rejected"], sc["name"]
            assert sorted(state.members) == sc["members"]
            assert sorted(state.requests) == sc["requests"]
    assert mk
