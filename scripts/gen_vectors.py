"""Generate tests/vectors/*.json from fixed seeds (shared by pytest and the browser suite).

These are *codec* vectors: bytes <-> fields for every structure on the wire (which file covers which
PROTOCOL.md section is listed there, under "Vectors"). Behaviour traces are a different thing.

Randomness: every random byte comes from ``DeterministicRng(seed)`` (``peer/core/crypto.py``; the JS mirror
is ``deterministicRng`` in ``web/js/core/crypto.js``). It is a byte stream made of the blocks
``block_i = SHA-256(seed || u32be(i))`` for i = 0, 1, 2, ... concatenated; each call ``rng(n)`` takes the
next ``n`` bytes of the stream (so the order of calls matters). Each file records the seeds it used
(hex of their ASCII text, e.g. ``b"chain"`` -> ``"636861696e"``), so another implementation can reproduce
the sealing as well as the opening. Ed25519 signatures are deterministic (RFC 8032) and need no RNG.

Usage: ``python scripts/gen_vectors.py [--check]`` (``--check`` exits 1 if the committed files differ).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.bindings

from peer.core import wire
from peer.core.chains import SenderChain, SenderKeyMessage
from peer.core.content import Content, Edit, Profile, Reaction, Text, decode_content, encode_content
from peer.core.crypto import ED25519_SMALL_ORDER, X25519_SMALL_ORDER, DeterministicRng, b64u_encode, sha256
from peer.core.envelope import (
    MAX_ENVELOPE,
    Envelope,
    Kind,
    decode_tombstone,
    encode_tombstone,
    message_key_to_aead_key,
    parse_envelope,
    seal_envelope,
    seal_unchained_envelope,
    verify_envelope,
)
from peer.core.erasure import ErasureReceipt
from peer.core.errors import ProtocolError
from peer.core.handshake import (
    Handshake,
    generate_prekey,
    open_pairwise,
    seal_pairwise,
    seal_to_prekey,
    transcript,
)
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.log import Tombstone
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
from peer.core.presence import SEEN_TAG, decode_presence, encode_seen, encode_typing
from peer.core.safety import key_digits, safety_number
from peer.core.signal import seal_signal

VECTOR_DIR = Path(__file__).resolve().parents[1] / "tests" / "vectors"
NOW = 1_700_000_000_000
# The room layer's constants (peer/core/room.py; written out here so a change there must change a vector)
NEVER = 2**52  # expires_at of room-state envelopes
HS_HELLO, HS_FINISH = 0x01, 0x02  # first byte of a HANDSHAKE frame body
PREKEY_AAD = b"ephemesh-v1 prekey sender-key"  # aad of a SENDER_KEY envelope's prekey frame
PAIRWISE_AAD = b"ephemesh-v1 pairwise sender-key"  # aad of a PAIRWISE frame carrying a sender key
SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\na=setup:actpass\r\n"
)


def _identity(name: str) -> tuple[str, Identity]:
    seed = b"identity:" + name.encode()
    return seed.hex(), Identity.generate(DeterministicRng(seed))


def _id_vector(seed_hex: str, ident: Identity) -> dict[str, Any]:
    return {
        "rng_seed": seed_hex,
        "ed25519_seed": ident.seed.hex(),
        "x25519_private": ident.x25519_private.hex(),
        "identity_bytes": ident.to_bytes().hex(),
        "ed25519_public": ident.public_key.hex(),
        "x25519_public": ident.x25519_public.hex(),
        "peer_id": ident.peer_id,
        "fingerprint": ident.fingerprint,
        "bundle": ident.public_bundle().to_dict(),
        "safety_digits": key_digits(ident.public_key),
    }


def build() -> dict[str, dict[str, Any]]:
    """All vector files, by name."""
    (sa, alice), (sb, bob) = _identity("alice"), _identity("bob")
    inv_seed = b"invite"
    inv = Invite.new("https://chat.example", ttl_s=3600, rng=DeterministicRng(inv_seed))
    room = inv.room_id
    out: dict[str, dict[str, Any]] = {}

    out["identity"] = {
        "alice": _id_vector(sa, alice),
        "bob": _id_vector(sb, bob),
        "safety_number": safety_number(alice.public_key, bob.public_key),
    }
    out["invite"] = {
        "rng_seed": inv_seed.hex(),
        "server": inv.server,
        "ttl_s": inv.ttl_s,
        "secret": inv.secret.hex(),
        "url": inv.url(),
        "room_id": room,
        "signal_key": inv.signal_key.hex(),
        "member_key": inv.member_key.hex(),
    }

    chain_seed = b"chain"
    chain = SenderChain.new(epoch=0, created_at=NOW, rng=DeterministicRng(chain_seed))
    skm = SenderKeyMessage.create(alice, room, chain)
    env_rng_seed = b"envelope-nonces"
    env_rng = DeterministicRng(env_rng_seed)
    messages = []
    state = chain
    for i in range(5):
        _, mk = state.advance()
        plaintext = encode_content(Text(f"message {i}", None if i == 0 else f"{alice.peer_id}:0"))
        wire, state = seal_envelope(
            alice, room, state, Kind.CHAT, i, 10 + i, NOW + i, NOW + i + 3_600_000, plaintext, env_rng
        )
        messages.append(
            {
                "index": i,
                "message_key": mk.key.hex(),
                "aead_key": message_key_to_aead_key(mk.key).hex(),
                "plaintext": plaintext.hex(),
                "envelope": wire.hex(),
            }
        )
    out["chain"] = {
        "sender": alice.peer_id,
        "sender_ed25519": alice.public_key.hex(),
        "room_id": room,
        "rng_seed": chain_seed.hex(),
        "envelope_rng_seed": env_rng_seed.hex(),
        "chain_id": chain.chain_id.hex(),
        "chain_key": chain.chain_key.hex(),
        "sender_key_message": skm.encode().hex(),
        "final_chain_key": state.chain_key.hex(),
        "messages": messages,
    }

    sig_seed = b"signal"
    body = {"type": "offer", "sdp": SDP}
    out["signal"] = {
        "rng_seed": sig_seed.hex(),
        "from": alice.peer_id,
        "to": bob.peer_id,
        "now": NOW,
        "kind": "offer",
        "body": body,
        "fingerprints": ["sha-256 " + SDP.split("sha-256 ")[1].split("\r\n")[0]],
        "payload": seal_signal(alice, inv, bob.peer_id, "offer", body, NOW, DeterministicRng(sig_seed)),
    }

    ha = Handshake(alice, bob.public_bundle(), room, DeterministicRng(b"eph-alice"))
    hb = Handshake(bob, alice.public_bundle(), room, DeterministicRng(b"eph-bob"))
    fa, fb = ha.on_hello(hb.hello()), hb.on_hello(ha.hello())
    s_alice, s_bob = ha.on_finish(fb), hb.on_finish(fa)
    s_alice, frame = seal_pairwise(s_alice, b"pairwise hello", b"aad")
    open_pairwise(s_bob, frame, b"aad")
    out["handshake"] = {
        "room_id": room,
        "alice_eph_rng_seed": b"eph-alice".hex(),
        "bob_eph_rng_seed": b"eph-bob".hex(),
        "alice_hello": ha.hello().hex(),
        "bob_hello": hb.hello().hex(),
        "alice_finish": fa.hex(),
        "bob_finish": fb.hex(),
        "transcript": transcript(
            room, alice.public_bundle(), bob.public_bundle(), ha.ephemeral, hb.ephemeral
        ).hex(),
        "alice_send_key": s_alice.send_key.hex(),
        "alice_recv_key": s_alice.recv_key.hex(),
        "pairwise_plaintext": b"pairwise hello".hex(),
        "pairwise_aad": b"aad".hex(),
        "pairwise_frame_alice_to_bob": frame.hex(),
    }

    pk_seed = b"prekey-bob"
    pk = generate_prekey(bob, NOW, DeterministicRng(pk_seed))
    aad = PREKEY_AAD  # what the room layer uses (SENDER_KEY envelopes)
    seal_seed = b"prekey-seal"
    frame = seal_to_prekey(
        alice, bob.public_bundle(), pk.signed, skm.encode(), aad, NOW, DeterministicRng(seal_seed)
    )
    out["prekey"] = {
        "rng_seed": pk_seed.hex(),
        "seal_rng_seed": seal_seed.hex(),
        "sender": alice.peer_id,
        "recipient": bob.peer_id,
        "prekey_private": pk.private.hex(),
        "signed_prekey": pk.signed.to_bytes().hex(),
        "now": NOW,
        "aad": aad.hex(),
        "plaintext": skm.encode().hex(),
        "frame": frame.hex(),
    }

    member_key = inv.member_key
    ops = [
        make_add(
            alice,
            member_key,
            room,
            1,
            alice.public_bundle(),
            generate_prekey(alice, NOW, DeterministicRng(b"pa")).signed,
        ),
        make_add(alice, member_key, room, 2, bob.public_bundle(), pk.signed),
        make_set_timer(bob, member_key, room, 3, 3600, 1),
        make_remove(alice, member_key, room, 4, bob.peer_id),
    ]
    state_after, rejected = MembershipState.from_ops(room, ops, member_key)
    assert not rejected
    out["membership"] = {
        "room_id": room,
        "member_key": member_key.hex(),
        "ops": [op.encode().hex() for op in ops],
        "state": state_after.to_dict(),
        "timer_pin": _timer_pin(alice, bob, member_key, room, pk.signed),
    }
    out["room"] = build_room(inv, alice, bob)
    envs = [bytes.fromhex(e["envelope"]) for e in out["room"]["envelopes"]]
    out["frames"] = build_frames(room, alice, bob, envs, envs[-1])
    out["content"] = build_content(alice)
    out["app"] = build_app(room, alice, bob)
    out["keys"] = build_keys()
    out["rng"] = build_rng()
    out["auth"] = build_auth(alice)
    out["ranges"] = _int_range_cases(alice, member_key, room)
    out["check"] = build_check(alice, bob)
    out["governance"] = build_governance()
    out["files"] = build_files()
    out["invite_servers"] = build_invite_servers()
    out["relay"] = build_relay(room, alice, bob)
    out["features"] = build_features(alice, bob)
    out["admission"] = build_admission()
    out["forward_files"] = build_forward_files()
    out["keeping"] = build_keeping()
    return out


def build_invite_servers() -> dict[str, Any]:
    """Invites listing several bootstraps (``.s``) and none (``ephemesh:``); the LAN instance names
    (``peer/core/lan.py``, Python only: browsers cannot do mDNS). The server list is not an input of the
    keys: every good case derives the room id of the same invite without it."""
    from peer.core.lan import instance_name

    seed = b"invite-servers"
    owner = _identity("alice")[1].peer_id
    base = Invite.new("https://chat.example", ttl_s=3600, rng=DeterministicRng(seed), owner=owner)
    lists = [
        ["https://chat.example", "https://backup.example:8443", "http://192.0.2.7:8080/sig"],
        ["https://backup.example"],
        [],
    ]
    good = []
    for servers in lists:
        inv = base.with_servers(servers)
        good.append({"servers": servers, "server": inv.server, "url": inv.url(), "room_id": inv.room_id})
    frag = base.fragment()
    enc = b64u_encode
    bad = [
        f"https://chat.example/#{frag}.s",  # empty list
        f"https://chat.example/#{frag}.s{enc(b'ftp://x.example')}",  # not http(s)
        f"https://chat.example/#{frag}.s{enc(b'https://chat.example')}",  # the base again
        f"https://chat.example/#{frag}.s{enc(b'https://a.example' + bytes([10]) + b'https://a.example')}",
        f"https://chat.example/#{frag}.s{enc(bytes([10]).join(b'https://s%d.example' % i for i in range(9)))}",
        f"https://chat.example/#{frag}.s{enc(bytes([255, 254]))}",  # not UTF-8
        f"https://chat.example/#{frag}.s{enc(b'https://a.example/?q=1')}",  # a query
        f"https://chat.example/#{frag}.s{enc(b'https://a.example')}.3600",  # components out of order
        f"ephemesh:x#{frag}",  # not the no-server base
        f"#{frag}",  # no base at all
    ]
    for url in bad:
        try:
            Invite.parse(url)
        except ProtocolError:
            continue
        raise AssertionError(f"accepted {url}")
    lan_now = 1_767_225_600_000
    return {
        "rng_seed": seed.hex(),
        "owner": owner,
        "secret": base.secret.hex(),
        "room_id": base.room_id,
        "good": good,
        "bad": bad,
        "lan": {
            "service_type": "_ephemesh._tcp.local.",
            "now_ms": lan_now,
            "epoch": lan_now // 600_000,
            "nonce": "0001020304050607",
            "instance": instance_name(base, lan_now, bytes(range(8))),
        },
    }


# -- signaling through the mesh: RELAY (0x20) and REACH (0x21) APP bodies (peer/core/room/relay.py) --------


def build_relay(room: str, alice: Identity, bob: Identity) -> dict[str, Any]:
    from peer.core.room import relay as rl

    payload = "v1." + "A" * 40
    relays: list[dict[str, Any]] = [
        {"name": name, "hops": hops, "from": f, "to": t, "payload": pl}
        for name, hops, f, t, pl in (
            ("alice to bob, 3 hops", 3, alice.peer_id, bob.peer_id, payload),
            ("bob to alice, last hop", 1, bob.peer_id, alice.peer_id, "v1.x"),
        )
    ]
    for r in relays:
        body = rl.encode_relay(r["hops"], r["from"], r["to"], r["payload"])
        r["body"] = body.hex()
        r["id"] = rl.relay_id(r["from"], r["to"], r["payload"]).hex()
        r["app_frame"] = wire.encode_opaque(wire.FrameType.APP, body).hex()
    good = bytes.fromhex(relays[0]["body"])
    bad_relay = [
        ("truncated", good[:50]),
        ("hops 0", good[:1] + b"\x00" + good[2:]),
        ("hops 5", good[:1] + b"\x05" + good[2:]),
        ("id not the hash", good[:2] + bytes(16) + good[18:]),
        ("payload not ASCII", good[:-1] + b"\x80"),
        ("from equals to", good[:34] + good[18:34] + good[50:]),
        ("oversized", good + b"A" * rl.MAX_RELAY_PAYLOAD),
        ("wrong tag", b"\x21" + good[1:]),
    ]
    assert all(_error_code(rl.decode_relay, d) == "bad-relay" for _, d in bad_relay)
    ts = NOW
    reaches: list[dict[str, Any]] = [
        {"name": name, "ts": ts, "ttl_s": ttl, "links": sorted(links), "hints": hints}
        for name, ttl, links, hints in (
            ("empty", 90, [], []),
            (
                "two links, two hints",
                600,
                [bob.peer_id, "00" * 16],
                [["server", "https://chat.example"], ["lan", "udp://10.0.0.2:4100"]],
            ),
        )
    ]
    for r in reaches:
        body = rl.encode_reach(alice, room, r["ts"], r["ttl_s"], r["links"], [tuple(h) for h in r["hints"]])
        r["body"] = body.hex()
        r["signed"] = rl.reach_signed(room, body).hex()
    full = bytes.fromhex(reaches[1]["body"])
    bad_reach = [
        ("truncated", full[:40]),
        ("ttl 0", full[:25] + b"\x00\x00" + full[27:]),
        ("ttl 601", full[:25] + (601).to_bytes(2, "big") + full[27:]),
        ("ts above 2^53-1", full[:17] + b"\x00\x20" + full[19:]),
        ("link count past the end", full[:27] + b"\x20" + full[28:]),
        ("links not increasing", full[:28] + full[44:60] + full[28:44] + full[60:]),
        ("trailing byte", full[:-64] + b"\x00" + full[-64:]),
        ("hint kind upper case", full.replace(b"server", b"Server")),
        ("hint url with a space", full.replace(b"chat.example", b"chat example")),
    ]
    assert all(_error_code(rl.decode_reach, d) == "bad-reach" for _, d in bad_reach)
    urls = ["https://b.example", "https://a.example"]
    return {
        "room_id": room,
        "announcer": alice.peer_id,
        "relay": relays,
        "relay_bad": [{"name": n, "body": b.hex(), "code": "bad-relay"} for n, b in bad_relay],
        "reach": reaches,
        "reach_bad": [{"name": n, "body": b.hex(), "code": "bad-reach"} for n, b in bad_reach],
        "servers_state": {
            "name": rl.SERVERS_STATE,
            "urls": urls,
            "value": json.dumps(urls, separators=(",", ":")).encode().hex(),
        },
    }


# -- issue 15: mentions, forward, location, long text, search, last seen --------------------------------


def _text_with(extra: str) -> str:
    return '{"t":"text","body":"x","reply_to":null,' + extra + "}"


def build_features(alice: Identity, bob: Identity) -> dict[str, Any]:
    """Content fields of issue 15 (encode/decode and refusals), @mention composing, search matching and
    the LASTSEEN APP body."""
    from peer.core.content import Forwarded, Location, searchable_text
    from peer.core.mentions import find_mentions
    from peer.core.presence import LastSeenSignal, encode_last_seen
    from peer.core.search import SearchIndex

    a, b = alice.peer_id, bob.peer_id
    cases: list[tuple[str, Content]] = [
        ("text with mentions", Text("hi @Bob and @Alice", None, (b, a))),
        ("text forwarded", Text("fwd body", None, (), Forwarded("Alice Liddell"))),
        ("location", Location(52_520_008, -13_404_954, 25)),
        ("location no accuracy, forwarded", Location(-90_000_000, 180_000_000, None, Forwarded("Bob"))),
    ]

    def fields(c: Content) -> dict[str, Any]:
        import json as _json

        obj: dict[str, Any] = _json.loads(encode_content(c))
        return obj

    valid = [
        {"name": n, "content": fields(c), "plaintext": encode_content(c).hex(), "search": searchable_text(c)}
        for n, c in cases
    ]
    # a 20,000-character text (over the old 16 KiB cap): by the SHA-256 of its encoding, to keep this small
    long_text = Text("\u00e9" * 20_000)
    long = {
        "char": "\u00e9",
        "count": 20_000,
        "sha256": hashlib.sha256(encode_content(long_text)).hexdigest(),
    }
    loc = '{"t":"location","lat_e6":%s,"lon_e6":0,"acc_m":null}'
    bad_json = [
        ("mentions empty", '{"t":"text","body":"x","reply_to":null,"mentions":[]}'),
        ("mentions null", '{"t":"text","body":"x","reply_to":null,"mentions":null}'),
        ("mentions duplicate", _text_with(f'"mentions":["{a}","{a}"]')),
        ("mentions not an id", _text_with(f'"mentions":["{a.upper()}"]')),
        ("mentions over 32", _text_with('"mentions":[' + ",".join(f'"{i:032x}"' for i in range(33)) + "]")),
        ("fwd not an object", '{"t":"text","body":"x","reply_to":null,"fwd":"Alice"}'),
        ("fwd extra field", '{"t":"text","body":"x","reply_to":null,"fwd":{"from_name":"A","id":1}}'),
        ("fwd name unclean", '{"t":"text","body":"x","reply_to":null,"fwd":{"from_name":" A"}}'),
        ("location lat over 90", loc % "90000001"),
        ("location lat a float", loc % "52.5"),
        ("location lat a bool", loc % "true"),
        ("location lon over 180", '{"t":"location","lat_e6":0,"lon_e6":-180000001,"acc_m":null}'),
        ("location accuracy negative", '{"t":"location","lat_e6":0,"lon_e6":0,"acc_m":-1}'),
        ("location without lat", '{"t":"location","lon_e6":0,"acc_m":null}'),
    ]
    bad = [
        {"name": n, "plaintext": d.encode().hex(), "code": _error_code(decode_content, d.encode())}
        for n, d in bad_json
    ]
    names = {a: "Alice", b: "Ann Lee", "c" * 32: "Ann", "d" * 32: None}
    mention_texts = [
        "hi @Alice",
        "@ann lee, and @Ann: lunch?",
        "mail alice@Alice.example (no mention), (@alice) yes",
        "@cccc by id, @dddd too, @ddd too short, @Nobody",
        "@Alicea is not Alice, @Alice. is",
        "twice @Alice @alice",
    ]
    mentions = [{"text": t, "want": find_mentions(t, names)} for t in mention_texts]
    docs = ["Lunch at NOON", "ﬁne ＬＵＮＣＨ", "dinner", ""]
    index = SearchIndex()
    for i, d in enumerate(docs):
        index.put((a, i), d)
    queries = ["lunch", "LUNCH noon", "fine", "  ", "din ner", "e"]
    search = [{"q": q, "want": sorted(k[1] for k in index.query(q))} for q in queries]
    lastseen = [
        {"body": encode_last_seen(False).hex(), "share": False},
        {"body": encode_last_seen(True).hex(), "share": True},
    ]
    assert decode_presence(encode_last_seen(False)) == LastSeenSignal(False)
    bad_presence = [bytes([0x06, 0x02]).hex(), bytes([0x06]).hex(), bytes([0x06, 0x01, 0x00]).hex()]
    assert all(_error_code(decode_presence, bytes.fromhex(h)) == "bad-app-frame" for h in bad_presence)
    return {
        "names": names,
        "valid": valid,
        "bad": bad,
        "mentions": mentions,
        "search": {"docs": docs, "queries": search},
        "lastseen": lastseen,
        "lastseen_bad": bad_presence,
        "limits": {"max_content": 64_000, "max_mentions": 32},
        "long": long,
    }


# -- governance: roles, concurrent ops, announcement mode (peer/core/membership.py) -------------------


def build_governance() -> dict[str, Any]:
    """Owned invites and membership scenarios: every op list resolves to one state and one set of
    rejected ops, whatever the order the ops arrive in (the JS check feeds them reversed)."""
    names = ["alice", "bob", "carol", "dave"]
    alice, bob, carol, dave = (_identity(n)[1] for n in names)
    owned = Invite.new(
        "https://chat.example", ttl_s=3600, rng=DeterministicRng(b"gov-invite"), owner=alice.peer_id
    )
    legacy = Invite(owned.server, owned.secret, owned.ttl_s)
    prekeys = {
        i.peer_id: generate_prekey(i, NOW, DeterministicRng(b"gov-prekey:" + n.encode())).signed
        for n, i in zip(names, (alice, bob, carol, dave), strict=True)
    }

    def scenario(name: str, inv: Invite, steps: list[Callable[[bytes, str], MembershipOp]]) -> dict[str, Any]:
        ops = [step(inv.member_key, inv.room_id) for step in steps]
        state, rejected = MembershipState.from_ops(inv.room_id, ops, inv.member_key, inv.owner)
        ids = [id(op) for op in ops]
        posts = [
            [p.peer_id, lamport, state.may_post(p.peer_id, lamport)]
            for p in (alice, bob, carol, dave)
            for lamport in (state.announce_since, state.announce_since + 1)
        ]
        return {
            "name": name,
            "room_id": inv.room_id,
            "member_key": inv.member_key.hex(),
            "owner": inv.owner,
            "ops": [op.encode().hex() for op in ops],
            "rejected": sorted(ids.index(id(op)) for op in rejected),
            "state": state.to_dict(),
            "admins": sorted(p for p in state.members if state.is_admin(p)),
            "posts": posts,
        }

    def add(who: Identity, lamport: int) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_add(who, mk, room, lamport, who.public_bundle(), prekeys[who.peer_id])

    def remove(who: Identity, lamport: int, target: Identity) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_remove(who, mk, room, lamport, target.peer_id)

    def role(who: Identity, lamport: int, target: Identity, r: Role) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_role(who, mk, room, lamport, target.peer_id, r)

    def readmit(who: Identity, lamport: int, target: Identity) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_readmit(who, mk, room, lamport, target.peer_id)

    def timer(who: Identity, lamport: int, ttl: int, v: int) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_set_timer(who, mk, room, lamport, ttl, v)

    def announce(who: Identity, lamport: int, on: bool) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_settings(who, mk, room, lamport, announce=on)

    joined = [add(alice, 1), add(bob, 2), add(carol, 3), add(dave, 4)]
    admin, member = Role.ADMIN, Role.MEMBER
    scenarios = [
        scenario(
            "roles",
            owned,
            [
                *joined,
                remove(bob, 5, carol),  # a member cannot remove another
                timer(bob, 5, 60, 1),  # nor change the timer
                announce(carol, 5, True),  # nor the settings
                role(alice, 6, bob, admin),  # the owner appoints bob
                remove(bob, 7, alice),  # no one removes the owner
                role(bob, 7, alice, member),  # nor demotes it
                remove(bob, 8, carol),  # an admin removes carol
                add(carol, 9),  # a removed member cannot self-add back
                readmit(bob, 10, carol),  # an admin readmits her
                announce(alice, 11, True),
                timer(bob, 11, 60, 1),
                role(bob, 12, bob, member),  # bob steps down
                remove(bob, 13, dave),  # and can no longer remove
                remove(dave, 14, dave),  # anyone may leave
                readmit(carol, 15, dave),  # a member cannot readmit
            ],
        ),
        scenario(  # the removal sorts before the demotion: it stands
            "remove-before-demotion",
            owned,
            [*joined, role(alice, 5, bob, admin), remove(bob, 9, carol), role(alice, 10, bob, member)],
        ),
        scenario(  # the demotion sorts first: the removal is rejected everywhere
            "demotion-before-remove",
            owned,
            [*joined, role(alice, 5, bob, admin), remove(bob, 11, carol), role(alice, 10, bob, member)],
        ),
        scenario(  # same lamport: the lower author id sorts first
            "concurrent-same-lamport",
            owned,
            [*joined, role(alice, 5, bob, admin), remove(bob, 10, carol), role(alice, 10, bob, member)],
        ),
        scenario(  # two admins demote each other concurrently: the first in canonical order wins
            "mutual-demotion",
            owned,
            [
                *joined,
                role(alice, 5, bob, admin),
                role(alice, 5, carol, admin),
                role(bob, 10, carol, member),
                role(carol, 10, bob, member),
            ],
        ),
        scenario(  # announcement mode off again, timer chain by admins
            "announce-off",
            owned,
            [*joined, announce(alice, 5, True), announce(alice, 6, True), announce(alice, 8, False)],
        ),
        scenario(  # an invite without owner: every member is an admin, ROLE refused, readmit works
            "legacy",
            legacy,
            [
                add(alice, 1),
                add(bob, 2),
                timer(bob, 3, 60, 1),
                role(alice, 4, bob, admin),
                remove(bob, 5, alice),
                readmit(bob, 6, alice),
            ],
        ),
    ]
    return {
        "identities": {
            n: {"identity_bytes": i.to_bytes().hex()} for n, i in (("carol", carol), ("dave", dave))
        },
        "invite": {
            "url": owned.url(),
            "secret": owned.secret.hex(),
            "owner": owned.owner,
            "room_id": owned.room_id,
            "signal_key": owned.signal_key.hex(),
            "member_key": owned.member_key.hex(),
            "legacy_room_id": legacy.room_id,
            "bad": [
                owned.url()[:-1],  # owner one character short
                owned.url() + "A",  # one too long
                owned.url().replace(".o", ".x"),  # unknown field
                owned.url() + ".o" + owned.url()[-22:],  # two owners
            ],
        },
        "scenarios": scenarios,
    }


# -- codec vectors for the sync frames, content, APP bodies and the room's envelopes ----------------------


def _error_code(parse: Callable[[bytes], object], data: bytes) -> str:
    """The ProtocolError code ``parse`` raises for ``data`` (a vector of bad input must be refused)."""
    try:
        parse(data)
    except ProtocolError as exc:
        return exc.code
    raise AssertionError(f"accepted bad input {data[:40].hex()}")


def _frame_fields(frame: wire.Frame) -> dict[str, Any]:
    """A decoded frame as JSON fields (the same shape the browser check builds from its decoder)."""
    if isinstance(frame, wire.Hello):
        return {"room_id": frame.room_id, "have": _ranges(frame.have), "version": frame.version}
    if isinstance(frame, wire.Envelopes):
        return {"items": [item.hex() for item in frame.items]}
    if isinstance(frame, wire.Want | wire.Ack):
        return {"ranges": _ranges(frame.ranges)}
    if isinstance(frame, wire.Ping | wire.Pong):
        return {"nonce": frame.nonce}
    if isinstance(frame, wire.Tombstones):
        return {
            "items": [
                {"sender": t.sender, "seq": t.seq, "until": t.until, "proof": t.proof.hex()}
                for t in frame.items
            ]
        }
    assert isinstance(frame, wire.Opaque)
    return {"body": frame.body.hex()}


def _ranges(rm: dict[str, list[tuple[int, int]]]) -> dict[str, list[list[int]]]:
    return {sender: [[a, b] for a, b in rs] for sender, rs in sorted(rm.items())}


def _one(frames: list[bytes]) -> bytes:
    assert len(frames) == 1
    return frames[0]


def _filler_sender(i: int) -> str:
    """Sender ids for the size cases: SHA-256("sender" || u32be(i))[0:16]."""
    return sha256(b"sender" + i.to_bytes(4, "big"))[:16].hex()


def build_frames(
    room: str, alice: Identity, bob: Identity, envelopes: list[bytes], proof: bytes
) -> dict[str, Any]:
    a, b = alice.peer_id, bob.peer_id
    have = {a: [(1, 3), (5, 5), (9, 12)], b: [(1, 1)]}
    tomb = Tombstone(a, 4, NOW + 3_600_000 + 60_000, proof)
    expiry = Tombstone(b, 2, NOW + 60_000, b"")
    frames: list[tuple[str, bytes]] = [
        ("hello", wire.encode_hello(room, have)),
        ("hello-empty", wire.encode_hello(room, {})),
        ("envelopes", _one(wire.encode_envelopes(envelopes[:2]))),
        ("want", _one(wire.encode_want({a: [(2, 2), (6, 8)]}))),
        ("ack", _one(wire.encode_ack({a: [(1, 3)], b: [(1, 1)]}))),
        ("ping", wire.encode_ping(0x0102030405)),
        ("pong", wire.encode_pong(2**53 - 1)),
        ("tombstones", _one(wire.encode_tombstones([tomb, expiry]))),
        ("handshake", wire.encode_opaque(wire.FrameType.HANDSHAKE, bytes([HS_HELLO]) + bytes(82))),
        ("pairwise", wire.encode_opaque(wire.FrameType.PAIRWISE, bytes(8) + b"opaque ciphertext")),
        ("app", wire.encode_opaque(wire.FrameType.APP, encode_typing(True))),
    ]
    valid = []
    for name, data in frames:
        frame = wire.decode_frame(data)
        ftype = frame.type if isinstance(frame, wire.Opaque) else data[0]
        valid.append({"name": name, "type": int(ftype), "fields": _frame_fields(frame), "hex": data.hex()})

    ping = wire.encode_ping(7)
    want = _one(wire.encode_want({a: [(1, 2)]}))
    sender_a = bytes.fromhex(a)
    bad = [
        ("empty", b"", "bad-frame"),
        ("unknown type 0x0b", b"\x0b", "unknown-type"),
        ("unknown type 0xff", b"\xff\x00", "unknown-type"),
        ("hello version 2", b"\x01\x02" + bytes.fromhex(room) + b"\x00\x00", "bad-version"),
        ("hello truncated", wire.encode_hello(room, have)[:-1], "truncated"),
        ("ping trailing byte", ping + b"\x00", "trailing-bytes"),
        ("ping nonce 2^53", b"\x05" + (2**53).to_bytes(8, "big"), "bad-integer"),
        ("want no senders", b"\x03\x00\x00", "empty"),
        ("ack no senders", b"\x04\x00\x00", "empty"),
        ("want sender without ranges", b"\x03\x00\x01" + sender_a + b"\x00\x00", "bad-ranges"),
        (
            "want range start > end",
            b"\x03\x00\x01" + sender_a + b"\x00\x01" + (5).to_bytes(8, "big") + (4).to_bytes(8, "big"),
            "bad-ranges",
        ),
        (
            "want adjacent ranges",
            b"\x03\x00\x01" + sender_a + b"\x00\x02" + b"".join(n.to_bytes(8, "big") for n in (1, 2, 3, 4)),
            "bad-ranges",
        ),
        (
            "want senders not ascending",
            b"\x03\x00\x02"
            + b"".join(s + b"\x00\x01" + (1).to_bytes(8, "big") * 2 for s in (sender_a, sender_a)),
            "bad-ranges",
        ),
        ("want truncated", want[:-3], "truncated"),
        ("envelopes count 0", b"\x02\x00\x00", "empty"),
        ("envelopes item length 0", b"\x02\x00\x01\x00\x00\x00\x00", "bad-envelope"),
        ("envelopes item truncated", b"\x02\x00\x01\x00\x00\x00\x05abc", "truncated"),
        ("tombstones count 0", b"\x07\x00\x00", "empty"),
        (
            "tombstone proof over 1024",
            b"\x07\x00\x01" + sender_a + bytes(16) + (1025).to_bytes(2, "big") + bytes(1025),
            "too-large",
        ),
    ]
    for name, data, code in bad:
        assert _error_code(wire.decode_frame, data) == code, name
    # size cases, described by rule instead of spelled out (the frames are up to 64 KiB each)
    big = [bytes([k + 1]) * n for k, n in enumerate((40_000, 30_000, 65_529))]
    env_frames = wire.encode_envelopes(big)
    many = {_filler_sender(i): [(1, 5)] for i in range(2_000)}
    hello_big = wire.encode_hello(room, many)
    claimed = wire.decode_frame(hello_big)
    assert isinstance(claimed, wire.Hello)
    assert _error_code(wire.decode_frame, b"\x12" + bytes(wire.MAX_FRAME)) == "too-large"
    return {
        "room_id": room,
        "max_frame": wire.MAX_FRAME,
        "max_envelope": MAX_ENVELOPE,
        "max_proof": wire.MAX_PROOF,
        "frames": valid,
        "bad": [{"name": n, "hex": d.hex(), "code": c} for n, d, c in bad],
        "too_large": {
            "note": "an APP frame of 65,537 bytes: 0x12 then 65,536 zero bytes",
            "code": "too-large",
        },
        "envelopes_split": {
            "note": "envelope k (k = 0, 1, 2) is byte k+1 repeated sizes[k] times; "
            "encode_envelopes keeps order and starts a new frame when the next one does not fit",
            "sizes": [len(x) for x in big],
            "frame_lengths": [len(f) for f in env_frames],
            "frame_counts": [len(wire.decode_frame(f).items) for f in env_frames],  # type: ignore[union-attr]
            "frame_sha256": [sha256(f).hex() for f in env_frames],
        },
        "hello_underclaim": {
            "note": "2,000 senders, sender i = SHA-256('sender' || u32be(i))[0:16], each with the range "
            "[1, 5]; the HELLO keeps the lowest ids (sorted as hex) that fit in 65,536 bytes",
            "n_senders": len(many),
            "range": [1, 5],
            "claimed": len(claimed.have),
            "frame_length": len(hello_big),
            "frame_sha256": sha256(hello_big).hex(),
        },
    }


def _content_cases(alice: Identity) -> list[tuple[str, Content]]:
    target = f"{alice.peer_id}:1"
    return [
        ("text", Text("hello")),
        ("text reply", Text("re: hello", target)),
        ("text escapes", Text('quote " backslash \\ newline \n tab \t nul \x00 del \x7f')),
        ("text unicode", Text("caf\u00e9 \u2028 \U0001f600 \u05e9\u05dc\u05d5\u05dd")),
        ("text empty", Text("")),
        ("profile", Profile("Alice Liddell")),
        ("edit", Edit(target, "hello, edited")),
        ("react on", Reaction(target, "\U0001f44d", True)),
        ("react off", Reaction(target, "\U0001f44d", False)),
        ("react zwj sequence", Reaction(target, "\U0001f468\u200d\U0001f469\u200d\U0001f467")),
    ]


def _content_fields(c: Content) -> dict[str, Any]:
    if isinstance(c, Text):
        return {"t": "text", "body": c.body, "reply_to": c.reply_to}
    if isinstance(c, Profile):
        return {"t": "profile", "name": c.name}
    if isinstance(c, Edit):
        return {"t": "edit", "target": c.target, "body": c.body}
    assert isinstance(c, Reaction)  # the issue-15 types are in build_features
    return {"t": "react", "target": c.target, "emoji": c.emoji, "on": c.on}


def build_content(alice: Identity) -> dict[str, Any]:
    target = f"{alice.peer_id}:1"
    valid = [
        {"name": n, "content": _content_fields(c), "plaintext": encode_content(c).hex()}
        for n, c in _content_cases(alice)
    ]
    bad_json = [
        ("not JSON", b"{"),
        ("not UTF-8", b'{"t":"text","body":"\xff"}'),
        ("not an object", b'["text"]'),
        ("unknown type", b'{"t":"poll","body":"?"}'),
        ("no type", b'{"body":"hello"}'),
        ("text body not a string", b'{"t":"text","body":5,"reply_to":null}'),
        ("text content over 64,000 bytes", b'{"t":"text","body":"' + b"a" * 64_000 + b'","reply_to":null}'),
        ("reply_to not a message id", b'{"t":"text","body":"x","reply_to":"nope"}'),
        (
            "reply_to seq not decimal",
            ('{"t":"text","body":"x","reply_to":"' + alice.peer_id + ':x1"}').encode(),
        ),
        ("profile name with control char", b'{"t":"profile","name":"a\\u0007b"}'),
        ("profile name with double space", b'{"t":"profile","name":"a  b"}'),
        ("profile name over 64", ('{"t":"profile","name":"' + "n" * 65 + '"}').encode()),
        ("edit without target", b'{"t":"edit","body":"x"}'),
        ("react empty emoji", ('{"t":"react","target":"' + target + '","emoji":"","on":true}').encode()),
        ("react on not bool", ('{"t":"react","target":"' + target + '","emoji":"x","on":1}').encode()),
        (
            "react emoji over 16",
            ('{"t":"react","target":"' + target + '","emoji":"' + "x" * 17 + '","on":true}').encode(),
        ),
    ]
    bad = []
    for name, data in bad_json:
        bad.append({"name": name, "plaintext": data.hex(), "code": _error_code(decode_content, data)})
    bad.append(
        {
            "name": "reply_to sender not lowercase hex",
            "plaintext": ('{"t":"text","body":"x","reply_to":"' + alice.peer_id.upper() + ':1"}')
            .encode()
            .hex(),
            "code": "bad-id",
        }
    )
    return {"valid": valid, "bad": bad}


def build_app(room: str, alice: Identity, bob: Identity) -> dict[str, Any]:
    receipt = ErasureReceipt.create(bob, room, alice.peer_id, [5, 1, 2])
    bodies = [
        ("typing on", encode_typing(True), {"type": "typing", "typing": True}),
        ("typing off", encode_typing(False), {"type": "typing", "typing": False}),
        ("seen", encode_seen([3, 1, 2, 3]), {"type": "seen", "seqs": [1, 2, 3]}),
    ]
    bad_presence = [
        ("typing 2", bytes([0x02, 0x02])),
        ("typing long", bytes([0x02, 0x01, 0x00])),
        ("seen zero", bytes([0x03, 0x00, 0x00])),
        ("seen short", bytes([0x03, 0x00, 0x02]) + (1).to_bytes(8, "big")),
        ("unknown tag", bytes([0x09, 0x00])),
    ]
    enc = receipt.encode()
    bad_receipt = [
        ("truncated", enc[:-1]),
        ("version 2", enc[:1] + b"\x02" + enc[2:]),
        ("seqs not ascending", enc[:52] + (2).to_bytes(8, "big") + (1).to_bytes(8, "big") + enc[68:]),
        ("count 0", enc[:50] + b"\x00\x00" + enc[52:]),
    ]
    assert all(_error_code(decode_presence, d) == "bad-app-frame" for _, d in bad_presence)
    assert all(_error_code(ErasureReceipt.decode, d) == "bad-receipt" for _, d in bad_receipt)
    return {
        "room_id": room,
        "presence": [{"name": n, "body": b.hex(), "fields": f} for n, b, f in bodies],
        "presence_bad": [{"name": n, "body": b.hex(), "code": "bad-app-frame"} for n, b in bad_presence],
        "receipt": {
            "member": bob.peer_id,
            "sender": alice.peer_id,
            "seqs_given": [5, 1, 2],
            "seqs": list(receipt.seqs),
            "body": enc.hex(),
            "app_frame": wire.encode_opaque(wire.FrameType.APP, enc).hex(),
        },
        "receipt_bad": [{"name": n, "body": b.hex(), "code": "bad-receipt"} for n, b in bad_receipt],
    }


def _bad_envelopes(membership: bytes, chat: bytes) -> list[dict[str, str]]:
    """Envelopes every implementation must refuse when parsing (before any signature check)."""

    def patch(data: bytes, offset: int, new: bytes) -> bytes:
        return data[:offset] + new + data[offset + len(new) :]

    cases = [
        ("too short", membership[: 90 + 4 + 63]),
        ("version 2", patch(membership, 0, b"\x02")),
        ("kind 0", patch(membership, 1, b"\x00")),
        ("kind 5", patch(membership, 1, b"\x05")),
        ("ct_len too long", patch(membership, 90, (len(membership) - 157).to_bytes(4, "big"))),
        ("ct_len too short", patch(membership, 90, (len(membership) - 159).to_bytes(4, "big"))),
        ("seq 2^53", patch(membership, 34, (2**53).to_bytes(8, "big"))),
        ("lamport 2^64 - 1", patch(membership, 42, (2**64 - 1).to_bytes(8, "big"))),
        ("expires_at before sent_at", patch(membership, 58, (NOW - 1).to_bytes(8, "big"))),
        ("unchained with a chain id", patch(membership, 66, b"\x01")),
        ("unchained with a chain index", patch(membership, 77, b"\x01")),
        ("unchained with a nonce", patch(membership, 89, b"\x01")),
        ("chat ciphertext under 16 bytes", chat[:90] + (15).to_bytes(4, "big") + chat[94:109] + chat[-64:]),
        ("bad signature", patch(membership, len(membership) - 1, bytes([membership[-1] ^ 1]))),
    ]
    out = []
    for name, data in cases:
        parse = _parse_and_verify_as_alice if name == "bad signature" else parse_envelope
        out.append({"name": name, "envelope": data.hex(), "code": _error_code(parse, data)})
    return out


def _parse_and_verify_as_alice(data: bytes) -> None:
    verify_envelope(parse_envelope(data), _identity("alice")[1].public_key)


def _bad_tombstones() -> list[dict[str, str]]:
    cases = [
        b"{",
        b'{"t":"delete"}',
        b'{"t":"remove","seqs":[1]}',
        b'{"t":"delete","seqs":[-1]}',
        b'{"t":"delete","seqs":[1.5]}',
        b'{"t":"delete","seqs":[true]}',
        b'{"t":"delete","seqs":[9007199254740992]}',
        b'{"t":"delete","seqs":[' + b",".join(b"1" for _ in range(4097)) + b"]}",
    ]
    return [{"payload": c.hex(), "code": _error_code(decode_tombstone, c)} for c in cases]


def build_room(inv: Invite, alice: Identity, bob: Identity) -> dict[str, Any]:
    """The room layer's use of the pieces: handshake frames, sender keys, every envelope kind."""
    room, mk = inv.room_id, inv.member_key
    # the data-channel handshake: HANDSHAKE frames wrapping the pairwise handshake messages
    ha = Handshake(alice, bob.public_bundle(), room, DeterministicRng(b"eph-alice"))
    hb = Handshake(bob, alice.public_bundle(), room, DeterministicRng(b"eph-bob"))
    fa, fb = ha.on_hello(hb.hello()), hb.on_hello(ha.hello())
    s_alice, _ = ha.on_finish(fb), hb.on_finish(fa)

    def hs(tag: int, msg: bytes) -> str:
        return wire.encode_opaque(wire.FrameType.HANDSHAKE, bytes([tag]) + msg).hex()

    chain_seed = b"room-chain"
    chain = SenderChain.new(epoch=0, created_at=NOW, rng=DeterministicRng(chain_seed))
    skm = SenderKeyMessage.create(alice, room, chain).encode()
    _, pairwise = seal_pairwise(s_alice, skm, PAIRWISE_AAD)
    pk_alice = generate_prekey(alice, NOW, DeterministicRng(b"room-prekey-alice"))
    pk_bob = generate_prekey(bob, NOW, DeterministicRng(b"room-prekey-bob"))
    seal_seed = b"room-prekey-seal"
    # sealed when its SENDER_KEY envelope is sent (sent_at NOW + 3 below)
    sealed = seal_to_prekey(
        alice, bob.public_bundle(), pk_bob.signed, skm, PREKEY_AAD, NOW + 3, DeterministicRng(seal_seed)
    )
    nonce_seed = b"room-nonces"
    chat_expires = NOW + 10 + 3_600_000
    text = encode_content(Text("hello, room"))
    chat, _ = seal_envelope(
        alice, room, chain, Kind.CHAT, 4, 6, NOW + 10, chat_expires, text, DeterministicRng(nonce_seed)
    )
    ops = {
        "alice-add": make_add(alice, mk, room, 1, alice.public_bundle(), pk_alice.signed),
        "alice-timer": make_set_timer(alice, mk, room, 3, 3600, 1),
        "bob-add": make_add(bob, mk, room, 1, bob.public_bundle(), pk_bob.signed),
        "alice-remove-bob": make_remove(alice, mk, room, 7, bob.peer_id),
    }

    def unchained(
        who: Identity, kind: Kind, seq: int, lamport: int, at: int, exp: int, payload: bytes
    ) -> str:
        return seal_unchained_envelope(who, room, kind, seq, lamport, at, exp, payload).hex()

    tomb_payload = encode_tombstone([4])
    envelopes = [
        ("alice self-ADD", "alice", 2, 1, 2, NOW, NEVER, ops["alice-add"].encode(), 1),
        ("alice SET_TIMER", "alice", 2, 2, 4, NOW + 1, NEVER, ops["alice-timer"].encode(), 3),
        ("bob self-ADD", "bob", 2, 1, 2, NOW + 2, NEVER, ops["bob-add"].encode(), 1),
        ("alice SENDER_KEY for bob", "alice", 3, 3, 5, NOW + 3, NEVER, sealed, None),
        ("alice CHAT", "alice", 1, 4, 6, NOW + 10, chat_expires, b"", None),
        ("alice REMOVE bob", "alice", 2, 5, 8, NOW + 20, NEVER, ops["alice-remove-bob"].encode(), 7),
        ("alice TOMBSTONE (unsend seq 4)", "alice", 4, 6, 9, NOW + 30, chat_expires, tomb_payload, None),
    ]
    who = {"alice": alice, "bob": bob}
    out_envs = []
    for name, sender, kind, seq, lamport, at, exp, payload, op_lamport in envelopes:
        data = (
            chat.hex()
            if kind == Kind.CHAT
            else unchained(who[sender], Kind(kind), seq, lamport, at, exp, payload)
        )
        item: dict[str, Any] = {
            "name": name,
            "sender": who[sender].peer_id,
            "kind": kind,
            "seq": seq,
            "lamport": lamport,
            "sent_at": at,
            "expires_at": exp,
            "envelope": data,
        }
        if kind != Kind.CHAT:
            item["payload"] = payload.hex()
        if op_lamport is not None:
            item["op_lamport"] = op_lamport
        out_envs.append(item)
    state, rejected = MembershipState.from_ops(room, list(ops.values()), mk)
    assert not rejected
    return {
        "room_id": room,
        "never": NEVER,
        "bad_envelopes": _bad_envelopes(bytes.fromhex(out_envs[0]["envelope"]), chat),
        "bad_tombstone_payloads": _bad_tombstones(),
        "prekey_aad": PREKEY_AAD.hex(),
        "pairwise_aad": PAIRWISE_AAD.hex(),
        "handshake": {
            "alice_eph_rng_seed": b"eph-alice".hex(),
            "bob_eph_rng_seed": b"eph-bob".hex(),
            "alice_hello_frame": hs(HS_HELLO, ha.hello()),
            "bob_hello_frame": hs(HS_HELLO, hb.hello()),
            "alice_finish_frame": hs(HS_FINISH, fa),
            "bob_finish_frame": hs(HS_FINISH, fb),
        },
        "sender_key": {
            "chain_rng_seed": chain_seed.hex(),
            "sender_key_message": skm.hex(),
            "pairwise_frame_alice_to_bob": wire.encode_opaque(wire.FrameType.PAIRWISE, pairwise).hex(),
            "alice_prekey_rng_seed": b"room-prekey-alice".hex(),
            "bob_prekey_rng_seed": b"room-prekey-bob".hex(),
            "bob_signed_prekey": pk_bob.signed.to_bytes().hex(),
            "bob_prekey_private": pk_bob.private.hex(),
            "seal_rng_seed": seal_seed.hex(),
        },
        "chat": {"nonce_rng_seed": nonce_seed.hex(), "plaintext": text.hex()},
        "tombstone_seqs": [4],
        "envelopes": out_envs,
        "membership_state": state.to_dict(),
    }


def build_keys() -> dict[str, Any]:
    """Key validation: encodings every implementation must refuse (browsers accept some of them)."""
    p = 2**255 - 19
    alice = _identity("alice")[1]
    ed_noncanonical = [(p + 2).to_bytes(32, "little").hex(), (p + 3).to_bytes(32, "little").hex()]
    x_noncanonical = [(p + 2).to_bytes(32, "little").hex(), (2**255 - 1).to_bytes(32, "little").hex()]
    x_top_bit = bytearray(alice.x25519_public)
    x_top_bit[31] |= 0x80
    order8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    mixed = nacl.bindings.crypto_core_ed25519_add(alice.public_key, order8)
    return {
        "ed25519_mixed_order": {
            "note": "alice's key + a point of order 8 (on the curve, not prime order)",
            "key": mixed.hex(),
        },
        "ed25519_small_order": sorted(k.hex() for k in ED25519_SMALL_ORDER),
        "x25519_small_order": sorted(k.hex() for k in X25519_SMALL_ORDER),
        "ed25519_non_canonical": ed_noncanonical,
        "x25519_non_canonical": [*x_noncanonical, bytes(x_top_bit).hex()],
        "ed25519_valid": alice.public_key.hex(),
        "x25519_valid": alice.x25519_public.hex(),
    }


def build_auth(alice: Identity) -> dict[str, Any]:
    """The signaling server's challenge/auth signature (*Signaling server protocol*, 2)."""
    seed = b"auth-nonce"
    nonce = DeterministicRng(seed)(32)
    message = b"ephemesh-signaling-auth-v1\x00" + nonce
    sig = alice.sign(message)
    return {
        "nonce_rng_seed": seed.hex(),
        "nonce": nonce.hex(),
        "nonce_b64u": b64u_encode(nonce),
        "message": message.hex(),
        "ed25519_public": alice.public_key.hex(),
        "signature": sig.hex(),
        "auth_frame": json.dumps(
            {"type": "auth", "pubkey": b64u_encode(alice.public_key), "sig": b64u_encode(sig)},
            separators=(",", ":"),
        ),
        "peer_id": alice.peer_id,
        "turn": _turn_vector(alice.peer_id),
    }


def _turn_vector(peer_id: str) -> dict[str, Any]:
    """TURN credentials in `welcome` (coturn's shared-secret scheme); computed here from the spec."""
    secret, now_s, ttl_s = "turn-shared-secret", NOW // 1000, 3600
    username = f"{now_s + ttl_s}:{peer_id}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {
        "secret": secret,
        "now_s": now_s,
        "ttl_s": ttl_s,
        "username": username,
        "credential": base64.b64encode(mac).decode("ascii"),
    }


def build_rng() -> dict[str, Any]:
    seed = b"rng"
    rng = DeterministicRng(seed)
    calls = [8, 32, 40, 1]
    return {"seed": seed.hex(), "calls": calls, "outputs": [rng(n).hex() for n in calls]}


def _timer_pin(
    alice: Identity, bob: Identity, member_key: bytes, room: str, bob_prekey: Any
) -> dict[str, Any]:
    """Item 13: bob tries to pin the room timer (version 2**32-1, then the next version placed last by a
    huge lamport); alice's next change wins in every order."""
    ops = [
        make_add(
            alice,
            member_key,
            room,
            1,
            alice.public_bundle(),
            generate_prekey(alice, NOW, DeterministicRng(b"pa")).signed,
        ),
        make_add(alice, member_key, room, 2, bob.public_bundle(), bob_prekey),
        make_set_timer(bob, member_key, room, 3, 1, 2**32 - 1),
        make_set_timer(alice, member_key, room, 4, 600, 1),
        make_set_timer(bob, member_key, room, 2**53 - 1, 1, 2),
        make_set_timer(alice, member_key, room, 10, 900, 3),
    ]
    state, rejected = MembershipState.from_ops(room, ops, member_key)
    assert not rejected
    assert state.timer is not None
    assert state.timer.version == 3
    return {"ops": [op.encode().hex() for op in ops], "state": state.to_dict()}


def _signed_envelope(
    ident: Identity, room: str, seq: int, lamport: int, sent_at: int, expires_at: int, payload: bytes
) -> str:
    """An unchained MEMBERSHIP envelope with any header integers (the sealers refuse out-of-range ones)."""
    env = Envelope(
        Kind.MEMBERSHIP,
        room,
        ident.peer_id,
        seq,
        lamport,
        sent_at,
        expires_at,
        bytes(8),
        0,
        bytes(12),
        payload,
        b"",
    )
    return (env.to_bytes() + ident.sign(env.signed_bytes())).hex()


def _int_range_cases(alice: Identity, member_key: bytes, room: str) -> dict[str, Any]:
    """Inputs at and just past the protocol's one integer range (0..2**53-1): both cores must accept the
    first kind and refuse the second with the same code."""
    top, over = 2**53 - 1, 2**53
    prekey = generate_prekey(alice, NOW, DeterministicRng(b"pa")).signed
    add = make_add(alice, member_key, room, 1, alice.public_bundle(), prekey).encode()
    cases: list[dict[str, Any]] = []

    def env(name: str, ok: bool, seq: int, lamport: int, sent_at: int, expires_at: int) -> None:
        hexed = _signed_envelope(alice, room, seq, lamport, sent_at, expires_at, add)
        cases.append({"name": name, "what": "envelope", "hex": hexed, "code": None if ok else "bad-envelope"})

    env("envelope at the top of the range", True, top, top, top, top)
    env("envelope seq 2**53", False, over, 1, NOW, NOW)
    env("envelope lamport 2**53", False, 1, over, NOW, NOW)
    env("envelope expires_at 2**53", False, 1, 1, NOW, over)
    env("envelope sent_at = expires_at = 2**63", False, 1, 1, 2**63, 2**63)
    env("envelope expires_at 2**64-1", False, 1, 1, NOW, 2**64 - 1)
    op = bytearray(make_add(alice, member_key, room, 1, alice.public_bundle(), prekey).encode())
    op[34:42] = over.to_bytes(8, "big")  # the MAC and signature no longer match: the range check comes first
    cases.append(
        {"name": "membership lamport 2**53", "what": "membership", "hex": op.hex(), "code": "bad-op"}
    )
    receipt = ErasureReceipt.create(alice, room, alice.peer_id, [5, over]).encode()
    cases.append(
        {"name": "receipt seq 2**53", "what": "receipt", "hex": receipt.hex(), "code": "bad-receipt"}
    )
    receipt = ErasureReceipt.create(alice, room, alice.peer_id, [5, top]).encode()
    cases.append({"name": "receipt seq 2**53-1", "what": "receipt", "hex": receipt.hex(), "code": None})
    seen = bytes([SEEN_TAG]) + (1).to_bytes(2, "big") + over.to_bytes(8, "big")
    cases.append({"name": "seen seq 2**53", "what": "seen", "hex": seen.hex(), "code": "bad-app-frame"})
    return {"max_int": top, "cases": cases}


def build_check(alice: Identity, bob: Identity) -> dict[str, Any]:
    """The equivocation check: DIGESTS / HASH_WANT / HASHES frames, bad ones, and the digest of a log."""
    from peer.core.log import DIGEST_BLOCK, Log, LogEntry
    from peer.core.sync_check import DIGEST_TAG, Check
    from peer.core.sync_events import SyncConfig

    a, b = alice.peer_id, bob.peer_id
    h1, h2 = sha256(b"digest one"), sha256(b"digest two")
    frames: list[tuple[str, bytes]] = [
        ("digests", _one(wire.encode_digests([(b, 7, h2), (a, 2**53 - 1, h1)]))),
        ("hash_want-seq", wire.encode_hash_want(a, wire.LEVEL_SEQ, 64, 127)),
        ("hash_want-block", wire.encode_hash_want(a, wire.LEVEL_BLOCK, 0, 2**53 - 1)),
        ("hashes-seq", wire.encode_hashes(a, wire.LEVEL_SEQ, 64, 127, [(64, h1), (100, h2)])),
        ("hashes-block", wire.encode_hashes(b, wire.LEVEL_BLOCK, 0, 3, [(0, h2), (3, h1)])),
        ("hashes-empty", wire.encode_hashes(b, wire.LEVEL_SEQ, 5, 9, [])),
    ]
    valid = []
    for name, data in frames:
        frame = wire.decode_frame(data)
        valid.append({"name": name, "type": data[0], "fields": _check_fields(frame), "hex": data.hex()})
    sa = bytes.fromhex(a)

    def u64(v: int) -> bytes:
        return v.to_bytes(8, "big")

    bad = [
        ("digests count 0", b"\x08\x00\x00", "empty"),
        ("digests truncated digest", b"\x08\x00\x01" + sa + u64(1) + bytes(31), "truncated"),
        ("digests senders not ascending", b"\x08\x00\x02" + (sa + u64(1) + h1) * 2, "bad-digests"),
        ("digests hi 2^53", b"\x08\x00\x01" + sa + u64(2**53) + h1, "bad-integer"),
        ("hash_want level 2", b"\x09" + sa + b"\x02" + u64(0) + u64(1), "bad-level"),
        ("hash_want lo > hi", b"\x09" + sa + b"\x00" + u64(5) + u64(4), "bad-range"),
        ("hash_want trailing byte", b"\x09" + sa + b"\x00" + u64(0) + u64(1) + b"\x00", "trailing-bytes"),
        (
            "hashes over 1024 items",
            b"\x0a" + sa + b"\x00" + u64(0) + u64(9) + (1025).to_bytes(2, "big"),
            "too-large",
        ),
        (
            "hashes index above hi",
            b"\x0a" + sa + b"\x00" + u64(0) + u64(9) + b"\x00\x01" + u64(10) + h1,
            "bad-hashes",
        ),
        (
            "hashes index repeated",
            b"\x0a" + sa + b"\x01" + u64(0) + u64(9) + b"\x00\x02" + (u64(3) + h1) * 2,
            "bad-hashes",
        ),
        (
            "hashes truncated item",
            b"\x0a" + sa + b"\x00" + u64(0) + u64(9) + b"\x00\x01" + u64(1),
            "truncated",
        ),
    ]
    for name, data, code in bad:
        assert _error_code(wire.decode_frame, data) == code, name
    # a digest: envelopes are opaque bytes here ("envelope <seq>"); seqs span three blocks
    seqs = [1, 2, 63, 64, 70, 130]
    log = Log()
    for q in seqs:
        log.add(LogEntry(a, q, q, NOW, NOW + 3_600_000, b"envelope %d" % q), NOW)
    check = Check(SyncConfig(), log)
    digest = check.digest(a, wire.MAX_INT)
    prefixes = [(hi, check.digest(a, hi)) for hi in (0, 63, 64, 69, 200)]
    assert digest is not None
    page, _ = check.page(a, wire.LEVEL_BLOCK, 0, 10, 1024)
    seq_page, _ = check.page(a, wire.LEVEL_SEQ, 0, 200, 1024)
    return {
        "block": DIGEST_BLOCK,
        "tag": DIGEST_TAG.decode(),
        "max_hash_page": wire.MAX_HASH_PAGE,
        "frames": valid,
        "bad": [{"name": n, "hex": d.hex(), "code": c} for n, d, c in bad],
        "digest": {
            "note": "sender alice holds (seq, envelope bytes) = (q, ASCII 'envelope <q>') for these seqs; "
            "digest is digest(2**53-1)",
            "sender": a,
            "seqs": seqs,
            "fps": [sha256(b"envelope %d" % q).hex() for q in seqs],
            "blocks": [[blk, h.hex()] for blk, h in page],
            "seq_hashes": [[q, h.hex()] for q, h in seq_page],
            "digest": digest.hex(),
            "prefix_note": "digest(hi) for these marks (null: nothing held at or below hi)",
            "prefixes": [[hi, None if d is None else d.hex()] for hi, d in prefixes],
        },
    }


def _check_fields(frame: wire.Frame) -> dict[str, Any]:
    if isinstance(frame, wire.Digests):
        return {"items": [[s, hi, d.hex()] for s, hi, d in frame.items]}
    if isinstance(frame, wire.HashWant):
        return {"sender": frame.sender, "level": frame.level, "lo": frame.lo, "hi": frame.hi}
    assert isinstance(frame, wire.Hashes)
    return {
        "sender": frame.sender,
        "level": frame.level,
        "lo": frame.lo,
        "hi": frame.hi,
        "items": [[i, h.hex()] for i, h in frame.items],
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# -- closed rooms with admin approval: ADMISSION (7) and admit (READMIT of a not-yet-member) ---------------


def build_admission() -> dict[str, Any]:
    """Closed-room scenarios (peer/core/membership.py): each op list resolves to one state, one set of
    rejected ops and one set of join requests in any arrival order; plus bad ADMISSION bodies."""
    from peer.core.membership import make_admission

    names = ["alice", "bob", "carol", "dave"]
    alice, bob, carol, dave = (_identity(n)[1] for n in names)
    owned = Invite.new(
        "https://chat.example", ttl_s=3600, rng=DeterministicRng(b"gov-invite"), owner=alice.peer_id
    )
    legacy = Invite(owned.server, owned.secret, owned.ttl_s)
    fakes = [Identity.generate(DeterministicRng(b"admission-fake:%d" % i)) for i in range(64)]
    low = next(f for f in fakes if f.peer_id < min(alice.peer_id, bob.peer_id))  # a ground low id
    pool = [alice, bob, carol, dave, low]
    prekeys = {
        i.peer_id: generate_prekey(i, NOW, DeterministicRng(b"adm-prekey:" + i.seed)).signed for i in pool
    }

    def add(who: Identity, lamport: int) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_add(who, mk, room, lamport, who.public_bundle(), prekeys[who.peer_id])

    def add_other(who: Identity, lamport: int, target: Identity) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_add(
            who, mk, room, lamport, target.public_bundle(), prekeys[target.peer_id]
        )

    def close(who: Identity, lamport: int, *ids: Identity) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_admission(who, mk, room, lamport, [i.peer_id for i in ids])

    def reopen(who: Identity, lamport: int) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_admission(who, mk, room, lamport, None)

    def admit(who: Identity, lamport: int, target: Identity) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_readmit(who, mk, room, lamport, target.peer_id)

    def remove(who: Identity, lamport: int, target: Identity) -> Callable[[bytes, str], MembershipOp]:
        return lambda mk, room: make_remove(who, mk, room, lamport, target.peer_id)

    def scenario(name: str, inv: Invite, steps: list[Callable[[bytes, str], MembershipOp]]) -> dict[str, Any]:
        ops = [step(inv.member_key, inv.room_id) for step in steps]
        state, rejected = MembershipState.from_ops(inv.room_id, ops, inv.member_key, inv.owner)
        return {
            "name": name,
            "room_id": inv.room_id,
            "member_key": inv.member_key.hex(),
            "owner": inv.owner,
            "ops": [op.encode().hex() for op in ops],
            "rejected": sorted(ops.index(op) for op in rejected),
            "state": state.to_dict(),
            "members": sorted(state.members),
            "requests": sorted(state.requests),
        }

    scenarios = [
        scenario(  # the backdated self-ADD attack: lamport 1, a ground low id, after the close
            "backdated-low-id",
            owned,
            [add(alice, 1), add(bob, 2), close(alice, 5, alice, bob), add(low, 1), add(carol, 6)],
        ),
        scenario(  # a concurrent joiner left out visibly, admitted by name; an admit ahead of an ADD
            "left-out-then-admitted",
            owned,
            [
                add(alice, 1),
                add(bob, 2),
                add(carol, 3),
                close(alice, 5, alice, bob),
                admit(alice, 6, carol),
                admit(alice, 7, dave),
                add(dave, 8),
                admit(bob, 9, low),  # a member cannot admit
            ],
        ),
        scenario(  # two closes: each replaces the list intersected with the members at that point
            "concurrent-closes",
            owned,
            [
                add(alice, 1),
                add(bob, 2),
                add(carol, 3),
                close(alice, 5, alice, bob, carol),
                close(alice, 5, alice, bob),
                add_other(bob, 6, dave),  # a member's ADD of another admits no one
                remove(alice, 7, bob),
            ],
        ),
        scenario(  # reopening: pending requests admitted, self-ADDs admit again
            "reopen",
            owned,
            [
                add(alice, 1),
                close(alice, 2, alice),
                add(bob, 3),
                close(bob, 4, bob),  # not an admin
                reopen(alice, 5),
                add(carol, 6),
                add_other(alice, 7, dave),
            ],
        ),
        scenario("legacy-cannot-close", legacy, [add(alice, 1), close(alice, 2, alice), add(bob, 3)]),
    ]
    good = make_admission(alice, owned.member_key, owned.room_id, 9, [alice.peer_id, bob.peer_id]).encode()
    ids = good[45:-96]
    bad = [
        ("mode 2", good[:42] + b"\x02" + good[43:]),
        ("not ascending", good[:45] + ids[16:] + ids[:16] + good[-96:]),
        ("count beyond body", good[:43] + b"\x00\x03" + good[45:]),
        ("open listing ids", good[:42] + b"\x00" + good[43:]),
        ("close listing none", good[:42] + b"\x01\x00\x00" + good[-96:]),
        ("truncated", good[:42] + b"\x01" + good[-96:]),
    ]
    return {
        "identities": {"low": {"identity_bytes": low.to_bytes().hex()}},
        "close_op": {"lamport": 9, "ids": sorted([alice.peer_id, bob.peer_id]), "hex": good.hex()},
        "open_op": {
            "lamport": 10,
            "hex": make_admission(alice, owned.member_key, owned.room_id, 10, None).encode().hex(),
        },
        "max_close_op": make_admission(
            alice, owned.member_key, owned.room_id, 11, [f"{i:032x}" for i in range(1024)]
        )
        .encode()
        .hex(),
        "room_id": owned.room_id,
        "member_key": owned.member_key.hex(),
        "bad": [{"name": n, "hex": d.hex()} for n, d in bad],
        "scenarios": scenarios,
    }


def build_files() -> dict[str, Any]:
    """Attachments (peer/core/files.py): a sealed 2,500-byte file in 1 KiB chunks with a thumbnail and a
    duration, its index and manifest blobs and content item; the transfer frames; bad manifests, content
    items and frames with their codes (``zero_fill_to``: the bytes padded with zeros to that length)."""
    import hashlib
    import json as _json

    from peer.core.crypto import aead_seal
    from peer.core.files import MANIFEST_INFO, Sealer, manifest_key
    from peer.core.files_transfer import BLOB, BUSY, NONE, WANT, encode_frame

    key = DeterministicRng(b"files/key")(32)
    plain = DeterministicRng(b"files/plaintext")(2500)
    s = Sealer(key, len(plain), 1024)
    chunks = [s.seal(i, plain[i * 1024 : (i + 1) * 1024]) for i in range(s.chunks)]
    sealed = s.finish(
        "café.png",
        "image/png",
        hashlib.sha256(plain).digest(),
        thumb=b"\x89thumb",
        thumb_mime="image/jpeg",
        duration_ms=1500,
    )
    good = sealed.manifest.to_obj()

    def reseal(obj: dict[str, Any]) -> str:
        data = _json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return aead_seal(manifest_key(key), bytes(12), data, MANIFEST_INFO).hex()

    content_obj = _json.loads(encode_content(sealed.content))
    bid = sha256(b"blob")
    return {
        "key": key.hex(),
        "plaintext": plain.hex(),
        "chunk_size": 1024,
        "chunks": [{"id": i.hex(), "blob": b.hex()} for i, b in chunks],
        "index": sealed.index_blobs[0].hex(),
        "manifest": {"blob": sealed.manifest_blob.hex(), "id": sealed.content.manifest.hex(), "fields": good},
        "content": {"plaintext": encode_content(sealed.content).hex(), "fields": content_obj},
        "frames": [
            {
                "name": "want",
                "kind": WANT,
                "req": 7,
                "id": bid.hex(),
                "data": "",
                "hex": encode_frame(WANT, 7, bid).hex(),
            },
            {
                "name": "blob",
                "kind": BLOB,
                "req": 2**32 - 1,
                "id": bid.hex(),
                "data": b"blob".hex(),
                "hex": encode_frame(BLOB, 2**32 - 1, bid, b"blob").hex(),
            },
            {
                "name": "none",
                "kind": NONE,
                "req": 0,
                "id": bid.hex(),
                "data": "",
                "hex": encode_frame(NONE, 0, bid).hex(),
            },
            {
                "name": "busy",
                "kind": BUSY,
                "req": 1,
                "id": bid.hex(),
                "data": "",
                "hex": encode_frame(BUSY, 1, bid).hex(),
            },
        ],
        "bad_frames": [
            {"name": "empty", "hex": "", "code": "bad-frame"},
            {"name": "short", "hex": "01" + "00" * 10, "code": "bad-frame"},
            {"name": "unknown type", "hex": "09" + "00" * 36, "code": "bad-frame"},
            {
                "name": "want with payload",
                "hex": encode_frame(WANT, 1, bid).hex() + "00",
                "code": "bad-frame",
            },
            {
                "name": "blob over 64 KiB + tag",
                "hex": "02",
                "zero_fill_to": 37 + 65536 + 17,
                "code": "bad-frame",
            },
        ],
        "bad_manifests": [
            {
                "name": "chunk count does not match the size",
                "blob": reseal({**good, "n": 9}),
                "code": "bad-manifest",
            },
            {"name": "index count", "blob": reseal({**good, "index": []}), "code": "bad-manifest"},
            {"name": "unknown version", "blob": reseal({**good, "v": 2}), "code": "bad-manifest"},
            {"name": "path in the name", "blob": reseal({**good, "name": "../x"}), "code": "bad-manifest"},
            {
                "name": "chunk below 1 KiB",
                "blob": reseal({**good, "chunk": 512, "n": 5}),
                "code": "bad-manifest",
            },
            {
                "name": "thumbnail without its mime",
                "blob": reseal({**good, "thumb_mime": None}),
                "code": "bad-manifest",
            },
            {"name": "not sealed under the key", "blob": "00" * 64, "code": "bad-manifest"},
            {"name": "over 48 KiB", "blob": "", "zero_fill_to": 48 * 1024 + 1, "code": "bad-manifest"},
        ],
        "mismatch": {"name": "other.png", "code": "bad-manifest"},
        "bad_content": [
            {"name": n, "plaintext": _json.dumps({**content_obj, f: v}).encode().hex(), "code": "bad-content"}
            for n, f, v in [
                ("name with a slash", "name", "a/b"),
                ("empty name", "name", ""),
                ("negative size", "size", -1),
                ("size not an int", "size", 1.5),
                ("mime without a slash", "mime", "png"),
                ("short key", "key", "AAAA"),
                ("manifest not base64url", "manifest", "!!"),
            ]
        ],
    }


def build_forward_files() -> dict[str, Any]:
    """A forwarded attachment's content item (PROTOCOL.md "Forwarded attachments"): ``"fwd"`` on a
    ``"file"`` content, present only when set (a plain file encodes as before), and its refusals."""
    from peer.core.content import searchable_text
    from peer.core.files import File

    manifest, key = bytes(range(32)), bytes(range(100, 132))
    plain = File("photo.jpg", 123_456, "image/jpeg", manifest, key)
    fwd = File("photo.jpg", 123_456, "image/jpeg", manifest, key, forwarded_from="Alice Ö")
    valid = [
        {
            "name": name,
            "file": {
                "name": f.name,
                "size": f.size,
                "mime": f.mime,
                "manifest": manifest.hex(),
                "key": key.hex(),
                "from_name": f.forwarded_from,
            },
            "plaintext": encode_content(f).hex(),
            "search": searchable_text(f),
        }
        for name, f in (("plain", plain), ("forwarded", fwd))
    ]
    base = json.loads(encode_content(plain))

    def bad(name: str, fwd_value: object) -> dict[str, str]:
        obj = {**base, "fwd": fwd_value}
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return {"name": name, "plaintext": data.hex(), "code": _error_code(decode_content, data)}

    return {
        "valid": valid,
        "bad": [
            bad("fwd not an object", "Alice"),
            bad("fwd extra key", {"from_name": "Alice", "key": "x"}),
            bad("fwd name with a control character", {"from_name": "Al\u0007ice"}),
            bad("fwd name too long", {"from_name": "a" * 65}),
            bad("fwd name not cleaned", {"from_name": " Alice"}),
        ],
    }


def build_keeping() -> dict[str, Any]:
    """KEEPER / KEEP_FILE APP bodies (PROTOCOL.md "Keepers hold attachments") and their refusals."""
    import struct

    from peer.core.room.keeping import (
        KEEP_FILE_TAG,
        MAX_KEEP_IDS,
        decode_keep_file,
        encode_keep_file,
        encode_keeper,
    )

    manifest = bytes(range(32))
    ids = [bytes([j % 256, j // 256]) * 16 for j in range(130)]  # 130 ids: two frames (126 + 4)
    frames = encode_keep_file(7, manifest, ids)
    one = frames[1]

    def head(seq: int, total: int, offset: int) -> bytes:
        return bytes([KEEP_FILE_TAG]) + struct.pack(">Q", seq) + manifest + struct.pack(">II", total, offset)

    def bad(name: str, data: bytes) -> dict[str, str]:
        return {"name": name, "body": data.hex(), "code": _error_code(decode_keep_file, data)}

    return {
        "keeper": encode_keeper().hex(),
        "keep_file": {
            "seq": 7,
            "manifest": manifest.hex(),
            "ids": [i.hex() for i in ids],
            "frames": [f.hex() for f in frames],
            "empty": encode_keep_file(9, manifest, [])[0].hex(),
        },
        "bad": [
            bad("too short", one[:48]),
            bad("ids not whole", one[:-1]),
            bad("seq 0", head(0, 4, 0) + ids[0]),
            bad("seq 2^53", head(2**53, 4, 0) + ids[0]),
            bad("past total", head(7, 4, 3) + ids[0] + ids[1]),
            bad("total too big", head(7, MAX_KEEP_IDS + 1, 0) + ids[0]),
            bad("no ids", head(7, 4, 0)),
            bad("too long", head(7, 200, 0) + b"".join(ids[:127])),
            bad("wrong tag", bytes([0x22]) + one[1:]),
        ],
        "bad_keeper": [b.hex() for b in (bytes([0x22]), bytes([0x22, 1]), bytes([0x22, 2, 0]))],
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    status = 0
    for name, doc in build().items():
        path = VECTOR_DIR / f"{name}.json"
        text = render(doc)
        if check:
            if not path.exists() or path.read_text() != text:
                print(f"differs: {path}")
                status = 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
