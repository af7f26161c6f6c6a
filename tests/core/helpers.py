"""Deterministic fixtures shared by the crypto tests."""

from __future__ import annotations

from peer.core.crypto import DeterministicRng
from peer.core.handshake import PrekeyPrivate, generate_prekey
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.membership import MembershipState, make_add

NOW = 1_700_000_000_000


def identity(name: str) -> Identity:
    return Identity.generate(DeterministicRng(b"identity:" + name.encode()))


def invite() -> Invite:
    return Invite.new("https://chat.example", ttl_s=3600, rng=DeterministicRng(b"invite"))


def prekey(ident: Identity) -> PrekeyPrivate:
    return generate_prekey(ident, NOW, DeterministicRng(b"prekey:" + ident.seed))


def room_with(*members: Identity) -> MembershipState:
    inv = invite()
    state = MembershipState(inv.room_id)
    for lamport, m in enumerate(members, start=1):
        op = make_add(m, inv.member_key, inv.room_id, lamport, m.public_bundle(), prekey(m).signed)
        state = state.apply(op, inv.member_key)
    return state
