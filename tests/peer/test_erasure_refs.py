"""Erasing a message erases what refers to it (issue 13 item 2), and what could re-derive it (item 6).

Before: after unsending an edited message, the edit's envelope and its message key stayed in every
member's database until the original expiry (decrypting copies of the homes gave the edited text back),
and a reaction to it likewise. Checked on real SQLite stores fed with every batch each room persisted.
"""

from __future__ import annotations

import json

import pytest

from peer.core.chains import ChainPolicy, ReceiverChain, SenderChain, SenderKeyMessage
from peer.core.crypto import b64u_decode
from peer.core.envelope import Envelope, Kind, parse_envelope
from peer.core.handshake import PrekeyPrivate, SignedPrekey, open_from_prekey
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.persist import PersistBatch
from peer.core.room import Room
from peer.core.room.senderkeys import (
    CHAIN_WINDOW_MS,
    NEVER,
    PREKEY_AAD,
    PREKEY_KEEP_MS,
    PREKEY_ROTATE_MS,
    SenderKeys,
)
from peer.store.sqlite import Store, apply_batch, snapshot
from peer.testing import FakeClock
from tests.peer.room_net import Net


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def _mesh(net: Net, *rooms: Room) -> None:
    for i, x in enumerate(rooms):
        for y in rooms[i + 1 :]:
            net.link(x, y)
    net.pump()
    net.tick(1000)


def _store_of(net: Net, room: Room) -> Store:
    store = Store(":memory:")
    for batch in net.persisted[room.peer_id] + [room.take_persist()]:
        apply_batch(store, room.room_id, batch)
    return store


def _rows(store: Store, room: Room, keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[bool, bool]]:
    """Per key: (envelope row present, message key present)."""
    held = {(e.sender, e.seq) for e in store.envelopes(room.room_id)}
    return {k: (k in held, store.message_key(room.room_id, k[0], k[1]) is not None) for k in keys}


def test_unsend_of_an_edited_message_erases_the_edit_and_reactions_everywhere(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    keeper = net.add(Identity.generate(), keeper=True)
    _mesh(net, a, b, c, keeper)
    msg = a.send_text("meet at 10:00", net.now(a), ttl_s=3600)
    net.pump()
    edited = a.edit(msg.id, "meet at 18:00 (secret)", net.now(a))
    net.pump()
    b.react(msg.id, "👍", net.now(b))
    net.pump()
    assert [m.text for m in c.messages()] == ["meet at 18:00 (secret)"]
    assert edited.edited
    refs = [(a.peer_id, msg.seq), *a.timeline.referring((a.peer_id, msg.seq))]
    assert len(refs) == 3  # the message, a's edit, b's reaction
    for room in (a, b, c):
        rows = _rows(_store_of(net, room), room, refs)
        assert all(env and key for env, key in rows.values()), rows  # all on disk before the unsend
    a.unsend(msg.id, net.now(a))
    net.pump()
    net.tick(1_000)
    for room in (a, b, c):
        assert room.messages() == []
        store = _store_of(net, room)
        assert _rows(store, room, refs) == dict.fromkeys(refs, (False, False)), room.peer_id
        store.close()
    # a keeper opens nothing, so it cannot know what b's reaction refers to: it keeps that ciphertext
    # (never a key) until its expiry; a's own edit was named in the unsend and is gone there too
    store = _store_of(net, keeper)
    rows = _rows(store, keeper, refs)
    assert not any(key for _, key in rows.values())
    assert [k for k, (env, _) in rows.items() if env] == [k for k in refs if k[0] == b.peer_id]
    store.close()


def test_an_edit_arriving_after_its_message_was_unsent_is_erased_on_arrival(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    _mesh(net, a, b)
    msg = a.send_text("first", net.now(a), ttl_s=3600)
    net.pump()
    net.unlink(a, b)
    a.edit(msg.id, "second", net.now(a))
    # b reacts while cut off from a, a unsends; then they meet again
    b.react(msg.id, "🔥", net.now(b))
    a.unsend(msg.id, net.now(a))
    net.link(a, b)
    net.pump()
    net.tick(2_000)
    for room in (a, b):
        assert room.messages() == []
        refs = [k for k in room.keys.message_keys if k[0] in (a.peer_id, b.peer_id)]
        assert refs == []
        store = _store_of(net, room)
        rows = {(e.sender, e.seq) for e in store.envelopes(room.room_id)}
        assert (a.peer_id, msg.seq) not in rows
        assert all(store.message_key(room.room_id, s, q) is None for s, q in rows)
        store.close()


# -- item 6: no stored chain state re-derives an erased key -------------------------------------------


def _stored_chains(net: Net, room: Room) -> list[SenderChain]:
    store = _store_of(net, room)
    states = snapshot(store, room.room_id).states
    store.close()
    return [
        SenderChain.from_bytes(v[:57])
        for n, v in states.items()
        if n.startswith(("chain/initial/", "chain/own"))
    ]


def _derivable(chains: list[SenderChain], steps: int = 20) -> set[bytes]:
    out: set[bytes] = set()
    for chain in chains:
        for _ in range(steps):
            chain, mk = chain.advance()
            out.add(mk.key)
    return out


@pytest.mark.parametrize("how", ["mixed-ttl", "unsend-newer"])
def test_no_stored_chain_state_rederives_an_erased_key_while_an_older_one_lives(net: Net, how: str) -> None:
    """Before: the stored initial state stopped at the oldest live message, so it re-derived every newer
    erased message of the chain (THREAT_MODEL.md claimed it could not)."""
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    _mesh(net, a, b)
    old = a.send_text("old, lives an hour", net.now(a), ttl_s=3600)
    newer = [a.send_text(f"newer {i}", net.now(a), ttl_s=5) for i in range(3)]
    erased = {a.keys.message_keys[(a.peer_id, m.seq)] for m in newer}
    net.pump()
    if how == "mixed-ttl":
        net.tick(6_000)
    else:
        for m in newer:
            a.unsend(m.id, net.now(a))
        net.pump()
    assert [m.id for m in a.messages()] == [old.id]
    assert not erased & _derivable(_stored_chains(net, a))
    # the room goes on: the next message starts a new chain that b (and a late joiner) can read
    after = a.send_text("after", net.now(a), ttl_s=3600)
    c = net.add(Identity.generate())
    _mesh(net, a, b, c)
    net.tick(1_000)
    assert after.id in {m.id for m in b.messages()}
    assert after.id in {m.id for m in c.messages()}
    assert old.id in {m.id for m in b.messages()}


# -- item 6, second half: no prekey + SENDER_KEY envelope pair re-derives an erased key ----------------


def _prekey_pairs(net: Net, rooms: list[Room], erased: set[bytes]) -> int:
    """Copies of every home: how many (member's stored prekey private key, stored SENDER_KEY envelope)
    pairs open a chain that re-derives one of ``erased``."""
    stores = {r.peer_id: _store_of(net, r) for r in rooms}
    held = {e.key: e.data for s in stores.values() for e in s.envelopes(rooms[0].room_id)}
    envelopes = [parse_envelope(data) for data in held.values()]
    found = 0
    for r in rooms:
        raw = stores[r.peer_id].states(r.room_id).get("prekey")
        if raw is None:
            continue
        prekey = PrekeyPrivate(raw[:32], SignedPrekey.from_bytes(raw[32:]))
        for env in envelopes:
            member = r.members_part.member(env.sender)
            if (
                env.kind != Kind.SENDER_KEY
                or member is None
                or env.payload[17:33] != bytes.fromhex(r.peer_id)
            ):
                continue
            opened = open_from_prekey(r.identity, prekey, member.bundle, env.payload, PREKEY_AAD, net.now(r))
            skm = SenderKeyMessage.decode(opened.plaintext)
            rx = ReceiverChain.from_sender_key_message(skm, member.bundle.ed25519)
            keys = {rx.message_key(i)[1] for i in range(skm.index, skm.index + 20)}
            found += bool(keys & erased)
    for s in stores.values():
        s.close()
    return found


def test_no_prekey_and_sender_key_envelope_rederive_a_chain_after_its_messages_expired(net: Net) -> None:
    """Open: SENDER_KEY envelopes never expire, so each member's stored prekey private key opens the chain's
    initial state and re-derives every expired message of it (copies of the homes). Strict xfail: it
    turns into a failure (XPASS) the day the fix lands, so the mark must go with it."""
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    keeper = net.add(Identity.generate(), keeper=True)
    rooms = [a, b, c, keeper]
    _mesh(net, *rooms)
    sent = [a.send_text(f"secret {i}", net.now(a), ttl_s=60) for i in range(3)]
    net.pump()
    erased = {a.keys.message_keys[(a.peer_id, m.seq)] for m in sent}
    assert _prekey_pairs(net, rooms, erased) == 3  # b's, c's and the keeper's open a's chain while it lives
    net.tick(3_600_000 + 130_000)  # past the expiry, any window of an hour, and the skew bound
    assert all(not r.messages() for r in (a, b, c))
    assert _prekey_pairs(net, rooms, erased) == 0
    # the room goes on: a message beyond the window starts a new chain everyone reads
    after = a.send_text("after", net.now(a), ttl_s=60)
    net.pump()
    assert {m.id for m in b.messages()} == {after.id} == {m.id for m in c.messages()}


# -- item 6, second half: prekeys rotate, so a home stolen later does not open an envelope recorded earlier


def _away(net: Net, rooms: list[Room], ms: int) -> None:
    """Everyone offline for ``ms`` (no heartbeats to run), then each room's timers once."""
    for i, x in enumerate(rooms):
        for y in rooms[i + 1 :]:
            net.unlink(x, y)
    net.clock.advance(ms)
    for r in rooms:
        net.events[r.peer_id] += r.handle_timer(net.now(r))
    net.flush()


def _stored_prekeys(net: Net, room: Room) -> list[PrekeyPrivate]:
    store = _store_of(net, room)
    states = store.states(room.room_id)
    store.close()
    raws = [v for n, v in states.items() if n == "prekey" or n.startswith("prekey/old/")]
    return [PrekeyPrivate(raw[:32], SignedPrekey.from_bytes(raw[32:136])) for raw in raws]


def test_a_home_stolen_after_prekey_rotation_does_not_open_a_sender_key_envelope_recorded_before(
    net: Net,
) -> None:
    """Before: a member's prekey never rotated, so a copy of its home taken at any later time opened every
    SENDER_KEY envelope ever sealed to it that someone had recorded (another home's copy), and with it the
    chain's keys. Now the prekey rotates by a fresh self-ADD and the old private key is erased after
    ``PREKEY_KEEP_MS``."""
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    _mesh(net, a, b)
    a.send_text("secret", net.now(a), ttl_s=3600)
    net.pump()
    store = _store_of(net, a)  # the attacker's earlier copy (a's home, or any keeper's)
    recorded = [
        e
        for e in (parse_envelope(x.data) for x in store.envelopes(a.room_id))
        if e.kind == Kind.SENDER_KEY and e.payload[17:33] == bytes.fromhex(b.peer_id)
    ]
    store.close()
    assert len(recorded) == 1
    old = b.keys.prekey

    def opens(prekeys: list[PrekeyPrivate]) -> bool:
        for pk in prekeys:
            if recorded[0].payload[33:65] == pk.signed.public:
                opened = open_from_prekey(
                    b.identity, pk, a.identity.public_bundle(), recorded[0].payload, PREKEY_AAD, net.now(b)
                )
                return SenderKeyMessage.decode(opened.plaintext).sender == a.peer_id
        return False

    assert opens(_stored_prekeys(net, b))  # the same copy of b's home taken now opens it
    _away(net, [a, b], PREKEY_ROTATE_MS)  # b's prekey is due: a self-ADD carries a new one
    assert b.keys.prekey.created_at > old.created_at
    _mesh(net, a, b)
    member = a.members_part.member(b.peer_id)
    assert member is not None
    assert member.prekey == b.keys.prekey  # a seals new chains to the new one
    assert b.peer_id in a.members()
    assert a.peer_id in b.members()
    assert opens(_stored_prekeys(net, b))  # kept PREKEY_KEEP_MS for envelopes sealed before the re-ADD
    later = a.send_text("after b rotated", net.now(a), ttl_s=3600)
    net.pump()
    assert later.id in {m.id for m in b.messages()}
    _away(net, [a, b], PREKEY_KEEP_MS)
    assert not opens(_stored_prekeys(net, b))  # a copy of b's home taken now does not
    # replay ids of the erased prekey go with it: ``prekey/seen`` stays bounded by the prekeys held
    store = _store_of(net, b)
    seen = [b64u_decode(x) for x in json.loads(store.states(b.room_id)["prekey/seen"])]
    store.close()
    held = {pk.signed.public[:8] for pk in _stored_prekeys(net, b)}
    assert seen
    assert {x[:8] for x in seen} <= held
    assert old.public[:8] not in held
    assert b.keys.prekey_deadline(member=True) == b.keys.prekey.created_at + PREKEY_ROTATE_MS
    # the room goes on after b's next rotation too
    _mesh(net, a, b)
    last = a.send_text("still readable", net.now(a), ttl_s=60)
    net.pump()
    assert last.id in {m.id for m in b.messages()}


# -- chains carry one expiry window; a late joiner gets every live chain --------------------------------


def _sender_key_expiries(net: Net, room: Room, sender: Room) -> list[int]:
    store = _store_of(net, room)
    out = sorted(
        e.expires_at
        for e in (parse_envelope(x.data) for x in store.envelopes(room.room_id))
        if e.kind == Kind.SENDER_KEY and e.sender == sender.peer_id
    )
    store.close()
    return out


def test_a_late_joiner_reads_every_live_chain_and_sender_keys_expire_with_their_window(net: Net) -> None:
    """Before: a late joiner got only the sender's current chain, so with chains rotating by expiry window
    it could not read a profile or message sent in an earlier chain (the e2e observer never learned the
    chatter's name). Now every live chain's initial state goes to it, and each chain's SENDER_KEY
    envelopes carry ``min(first + CHAIN_WINDOW_MS, NEVER)``."""
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    _mesh(net, a, b)
    t0 = net.now(a)
    a.set_profile("alice", t0)  # NEVER: its own chain
    short = a.send_text("one minute", t0, ttl_s=60)  # a second chain, window [t0+60 s, t0+60 s+1 h]
    same = a.send_text("within the window", t0, ttl_s=1800)  # the same chain
    long = a.send_text("two hours", t0, ttl_s=7200)  # outside it: a third chain
    net.pump()
    assert len({e.chain_id for e in _own_chat(net, a)}) == 3
    assert _sender_key_expiries(net, a, a) == [
        t0 + 60_000 + CHAIN_WINDOW_MS,
        t0 + 7_200_000 + CHAIN_WINDOW_MS,
        NEVER,
    ]
    c = net.add(Identity.generate())
    _mesh(net, a, b, c)
    assert c.display_name(a.peer_id) == "alice"
    assert {short.id, same.id, long.id} <= {m.id for m in c.messages()}
    assert len(_sender_key_expiries(net, a, a)) == 6  # each chain sealed to b and to c
    net.tick(1_900_000)  # "one minute" and "within the window" expired: their chain is retired at a
    assert [m.id for m in a.messages()] == [long.id]
    assert len(_stored_chains(net, a)) == 3  # profile + "two hours" initial states and the current chain
    for r in (a, b, c):  # the envelopes of the retired chain outlive its messages by at most the window
        assert len(_sender_key_expiries(net, r, a)) == 6
    net.tick(CHAIN_WINDOW_MS - 1_800_000 + 65_000)
    for r in (a, b, c):
        assert _sender_key_expiries(net, r, a) == [t0 + 7_200_000 + CHAIN_WINDOW_MS] * 2 + [NEVER] * 2


def _own_chat(net: Net, room: Room) -> list[Envelope]:
    store = _store_of(net, room)
    out = [
        e
        for e in (parse_envelope(x.data) for x in store.envelopes(room.room_id))
        if e.kind == Kind.CHAT and e.sender == room.peer_id
    ]
    store.close()
    return out


def test_a_keeper_keeps_no_receiver_chain(net: Net) -> None:
    """Before: a keeper (which never opens anything) accepted the PAIRWISE copy of every chain and stored
    its receiver chain at the initial index, so a copy of a keeper's home re-derived every message key of
    every chain, expired or not (``scripts/measure_stolen_home.py``: 30 of 30, 3 days later)."""
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    keeper = net.add(Identity.generate(), keeper=True)
    _mesh(net, a, b, keeper)
    a.send_text("kept as ciphertext only", net.now(a), ttl_s=60)
    net.pump()
    store = _store_of(net, keeper)
    states, held = store.states(keeper.room_id), store.envelopes(keeper.room_id)
    store.close()
    assert any(parse_envelope(e.data).kind == Kind.CHAT for e in held)  # it buffers the ciphertext...
    assert not [n for n in states if n.startswith("chain/rx/")]  # ...and no chain to open it
    assert keeper.keys.receiver_chains() == []
    assert [n for n in _store_states(net, b) if n.startswith("chain/rx/")]  # a member does


def _store_states(net: Net, room: Room) -> dict[str, bytes]:
    store = _store_of(net, room)
    states = store.states(room.room_id)
    store.close()
    return states


def test_a_store_from_before_per_chain_initial_states_is_migrated() -> None:
    """A store written before this change holds one ``chain/initial`` (57 bytes): it is read as a chain
    whose SENDER_KEY envelopes never expire (as they were sealed), rewritten under the per-chain name and
    still given to late joiners; the next message with a finite TTL starts a new chain."""
    ident = Identity.generate()
    chain = SenderChain.new(epoch=0, created_at=5)
    keys = SenderKeys(ident, "ab" * 16, ChainPolicy())
    batch = PersistBatch()
    keys.load({"chain/own": chain.to_bytes(), "chain/initial": chain.to_bytes()}, 10, batch)
    assert "chain/initial" in batch.deleted
    assert batch.states[f"chain/initial/{chain.chain_id.hex()}"] == chain.to_bytes() + NEVER.to_bytes(
        8, "big"
    )
    assert keys.initials_for_late_joiner(0, 10) == [(chain, NEVER)]
    assert keys.prekey_deadline(member=True) == 10 + PREKEY_ROTATE_MS
    assert keys.prekey_deadline(member=False) is None  # a removed member never rotates: no timer left due
    assert keys.rotate_if_due(10, 0, NEVER, batch) is None  # a ttl-0 message still fits that chain
    rotated = keys.rotate_if_due(10, 0, 10 + 60_000, batch)
    assert rotated is not None
    assert rotated.chain_id != chain.chain_id


def test_a_receiver_chain_goes_with_its_sender_key_envelopes(net: Net) -> None:
    """Before: a member's receiver chain stayed forever, so a copy of its home plus a recorded copy of a
    message it never received (another home's) re-derived that message's key long after it expired. Now
    the receiver chain goes when the SENDER_KEY envelope sealed to it expires; a NEVER chain's stays."""
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    _mesh(net, a, b, c)
    a.set_profile("alice", net.now(a))
    a.send_text("c reads this", net.now(a), ttl_s=60)
    net.pump()
    net.unlink(a, c)
    net.unlink(b, c)
    missed = a.send_text("c never gets this", net.now(a), ttl_s=60)
    net.pump()
    key = a.keys.message_keys[(a.peer_id, missed.seq)]

    def derivable() -> bool:
        rxs = [
            ReceiverChain.from_bytes(v) for n, v in _store_states(net, c).items() if n.startswith("chain/rx/")
        ]
        return any(key in {rx.message_key(i)[1] for i in range(rx.index, rx.index + 5)} for rx in rxs)

    assert derivable()  # c's chain state is ahead of what it received: it derives the missed key
    net.tick(CHAIN_WINDOW_MS + 65_000)
    assert not derivable()
    chains = [n for n in _store_states(net, c) if n.startswith("chain/rx/")]
    assert len(chains) == 1  # the NEVER profile chain stays (its message lives)
    assert c.display_name(a.peer_id) == "alice"


def test_a_removed_member_does_not_rotate_its_prekey_and_its_timer_does_not_spin(net: Net) -> None:
    """A member that left (or was removed) publishes no re-ADD (it would be refused) and its past-due
    rotation deadline is not a timer: ``next_timer`` is never a time already handled."""
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    _mesh(net, a, b)
    b.leave(net.now(b))
    net.pump()
    assert b.peer_id not in b.members()
    before = b.keys.prekey
    _away(net, [a, b], PREKEY_ROTATE_MS + 1)
    assert b.keys.prekey == before
    when = b.next_timer()
    assert when is None or when > net.now(b)
    assert a.keys.prekey.created_at == net.now(a)  # a, still a member, rotated meanwhile
