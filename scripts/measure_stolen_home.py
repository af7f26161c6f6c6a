"""How many erased message keys copies of the homes re-derive (issue 13 item 6, second half).

    .venv/bin/python scripts/measure_stolen_home.py
    PYTHONPATH=<checkout of 9a68797> .venv/bin/python scripts/measure_stolen_home.py   # before

A room of three members and a keeper (sans-IO rooms, real SQLite stores fed with every batch each room
persisted). A sets a profile and sends 10 messages with a 60 s TTL and 10 with 600 s; B sends 10 with
300 s. The attacker copies every home while the messages live ("recorded": it keeps the envelopes only),
then everyone goes offline and time runs. At each checkpoint the attacker takes copies of every home and
tries every stored chain state, receiver chain, message key and every (stored prekey private key,
SENDER_KEY envelope sealed to it, from the home or from the recorded copies) pair against the 30 message
keys, all erased by then. Printed: erased keys re-derived / 30, and the number of pairs that open.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: "before" checkouts win

from peer.core.chains import ReceiverChain, SenderChain, SenderKeyMessage
from peer.core.envelope import Envelope, Kind, parse_envelope
from peer.core.errors import ProtocolError
from peer.core.handshake import PrekeyPrivate, SignedPrekey, open_from_prekey
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import Room
from peer.store.sqlite import Store, apply_batch
from peer.testing import FakeClock
from tests.peer.room_net import Net

AAD = b"ephemesh-v1 prekey sender-key"
STEPS = 40  # chain steps tried from every state (each chain here carries at most 21 messages)


def _store(net: Net, room: Room) -> Store:
    store = Store(":memory:")
    for batch in net.persisted[room.peer_id] + [room.take_persist()]:
        apply_batch(store, room.room_id, batch)
    return store


def _from_chain(chain: SenderChain) -> set[bytes]:
    out = set()
    for _ in range(STEPS):
        chain, mk = chain.advance()
        out.add(mk.key)
    return out


def _from_rx(rx: ReceiverChain) -> set[bytes]:
    out = {k for _, k in rx.skipped}
    for i in range(rx.index, rx.index + STEPS):
        out.add(rx.message_key(i)[1])
    return out


def _prekeys(states: dict[str, bytes]) -> list[PrekeyPrivate]:
    raws = [v for n, v in states.items() if n == "prekey" or n.startswith("prekey/old/")]
    return [PrekeyPrivate(r[:32], SignedPrekey.from_bytes(r[32:136])) for r in raws]


def attack(net: Net, rooms: list[Room], recorded: list[Envelope], erased: set[bytes]) -> tuple[int, int]:
    """(erased keys re-derived, opening (prekey, SENDER_KEY envelope) pairs) from copies of every home."""
    bundles = {r.peer_id: r.identity.public_bundle() for r in rooms}
    found: set[bytes] = set()
    pairs = 0
    for r in rooms:
        store = _store(net, r)
        states = store.states(r.room_id)
        envs = [parse_envelope(e.data) for e in store.envelopes(r.room_id)]
        for sender in bundles:
            for seq in range(1, 100):
                mk = store.message_key(r.room_id, sender, seq)
                if mk is not None:
                    found.add(mk)
        store.close()
        for name, value in states.items():
            if name.startswith("chain/initial") or name == "chain/own":
                found |= _from_chain(SenderChain.from_bytes(value[:57]))
            elif name.startswith("chain/rx/"):
                found |= _from_rx(ReceiverChain.from_bytes(value))
        sealed = {
            (e.sender, e.seq): e
            for e in envs + recorded
            if e.kind == Kind.SENDER_KEY and e.payload[17:33] == bytes.fromhex(r.peer_id)
        }
        for pk in _prekeys(states):
            for env in sealed.values():
                try:
                    opened = open_from_prekey(
                        r.identity, pk, bundles[env.sender], env.payload, AAD, net.now(r)
                    )
                except ProtocolError:
                    continue
                pairs += 1
                skm = SenderKeyMessage.decode(opened.plaintext)
                found |= _from_rx(ReceiverChain.from_sender_key_message(skm, bundles[env.sender].ed25519))
    return len(found & erased), pairs


def _offline(net: Net, rooms: list[Room], ms: int, step: int = 30_000) -> None:
    """Everyone offline for ``ms``: each room's timers fire as they fall due (no links, no heartbeats)."""
    end = net.clock.now + ms
    while net.clock.now < end:
        net.clock.advance(min(step, end - net.clock.now))
        for r in rooms:
            when = r.next_timer()
            if when is not None and when <= net.now(r):
                net.events[r.peer_id] += r.handle_timer(net.now(r))
        net.flush()


def main() -> None:
    net = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    keeper = net.add(Identity.generate(), keeper=True)
    rooms = [a, b, c, keeper]
    for i, x in enumerate(rooms):
        for y in rooms[i + 1 :]:
            net.link(x, y)
    net.pump()
    net.tick(1000)
    a.set_profile("alice", net.now(a))
    sent = [(a, a.send_text(f"a{i}", net.now(a), ttl_s=60)) for i in range(10)]
    sent += [(a, a.send_text(f"a{i}", net.now(a), ttl_s=600)) for i in range(10)]
    sent += [(b, b.send_text(f"b{i}", net.now(b), ttl_s=300)) for i in range(10)]
    net.pump()
    net.tick(1000)
    erased = {r.keys.message_keys[(r.peer_id, m.seq)] for r, m in sent}
    recorded = []
    for r in rooms:
        store = _store(net, r)
        recorded += [parse_envelope(e.data) for e in store.envelopes(r.room_id)]
        store.close()
    print(
        f"while the messages live: {attack(net, rooms, [], erased)[0]}/{len(erased)} keys derivable (expected)"
    )
    for i, x in enumerate(rooms):
        for y in rooms[i + 1 :]:
            net.unlink(x, y)
    checkpoints = [
        ("1 min after the last expiry", 660_000),
        ("1 h + skew after the last expiry", 3_600_000 + 60_000),
        ("3 days later, with the envelopes recorded while live", 3 * 86_400_000),
    ]
    for label, ms in checkpoints:
        _offline(net, rooms, ms)
        assert not any(r.messages() for r in rooms)
        keys, pairs = attack(net, rooms, recorded if "recorded" in label else [], erased)
        print(
            f"{label}: {keys}/{len(erased)} erased keys re-derived, {pairs} (prekey, SENDER_KEY) pairs open"
        )


if __name__ == "__main__":
    main()
