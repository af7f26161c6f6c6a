"""Generate tests/vectors/*.json from fixed seeds (shared by pytest and the browser suite).

Randomness comes from ``DeterministicRng(seed)``: block_i = SHA-256(seed || u32be(i)), concatenated; each
file records the seeds it used, so another implementation can reproduce the sealing as well as the opening.

Usage: ``python scripts/gen_vectors.py [--check]`` (``--check`` exits 1 if the committed files differ).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from peer.core.chains import SenderChain, SenderKeyMessage
from peer.core.crypto import DeterministicRng
from peer.core.envelope import Envelope, Kind, encode_text, message_key_to_aead_key, seal_envelope
from peer.core.erasure import ErasureReceipt
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
from peer.core.membership import MembershipState, make_add, make_remove, make_set_timer
from peer.core.presence import SEEN_TAG
from peer.core.safety import key_digits, safety_number
from peer.core.signal import seal_signal

VECTOR_DIR = Path(__file__).resolve().parents[1] / "tests" / "vectors"
NOW = 1_700_000_000_000
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
        plaintext = encode_text(f"message {i}", None if i == 0 else f"{alice.peer_id}:0")
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
    aad = bytes.fromhex(room) + (0).to_bytes(4, "big")
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
    out["ranges"] = _ranges(alice, member_key, room)
    return out


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


def _ranges(alice: Identity, member_key: bytes, room: str) -> dict[str, Any]:
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


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


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
