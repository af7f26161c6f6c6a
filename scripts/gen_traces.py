"""Record the room traces in tests/vectors/traces/ (the behavioural contract with the JS core).

    .venv/bin/python scripts/gen_traces.py        # (re)write every trace
    make traces                                   # the same

Each scenario drives a few sans-IO rooms over an in-order in-memory network at fixed ``now`` values
(starting at ``peer.tracing.T0``, moved only by ``advance``). Randomness is injected: the invite secret
comes from ``DeterministicRng("<seed>/invite")``, each identity from ``DeterministicRng("<seed>/<label>/
identity")`` and each room draws every random byte from ``DeterministicRng("<seed>/<label>/room")``
(``DeterministicRng``: block_i = SHA-256(seed || u32be(i)), see peer/core/crypto.py). The output is
therefore byte-identical on every run; ``tests/peer/test_traces.py`` checks that too. Never edit a
trace by hand: change the code, re-run this script, and review the diff.

Format and replay: see ``peer/tracing.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peer.core import wire  # noqa: E402
from peer.core.content import Content, Edit, Profile, Reaction, Text, encode_content  # noqa: E402
from peer.tracing import T0, Trace, run_part  # noqa: E402

OUT = ROOT / "tests" / "vectors" / "traces"


def _mesh(t: Trace, peers: tuple[str, ...], links: str = "", settle: bool = True) -> None:
    """The usual opening: ``peers`` join one room, ``links`` (pairs of one-letter names, "AB BC") come
    up in that order and, with ``settle``, every frame is delivered and 1 s passes."""
    for p in peers:
        t.peer(p)
    t.create(*peers)
    for pair in links.split():
        t.link(pair[0], pair[1])
    if settle:
        t.deliver()
        t.advance(1000)


def links_handshake() -> Trace:
    """Links: handshake on the data channel (0x10 wrapper: hello, finish), then the sync HELLO; a bad
    frame during a handshake kills that link; garbage on a ready link is counted until the budget closes
    it; a link down takes the member offline."""
    t = Trace("links_handshake", links_handshake.__doc__ or "", "links")
    _mesh(t, ("A", "B", "C"), "AB")
    # C links with A but answers with garbage instead of a handshake
    t.step("A", "learn", of="C")
    t.step("A", "link_up", **{"with": "C"})
    t.step("A", "receive", **{"from": "C", "frame": _b64(b"\x10\x09nonsense")})
    # B's link to A gets junk frames until its budget is exhausted
    for _ in range(66):
        t.step("A", "receive", **{"from": "B", "frame": _b64(b"\xee junk")})
    t.unlink("A", "B")
    return t


def sync_frames() -> Trace:
    """Sync: HELLO with have-ranges, ENVELOPES pushed and ACKed, lazy relay (an entry from its author
    is announced by HELLO, not re-pushed), WANT after a reconnect, TOMBSTONES for an expired message,
    a duplicate skipped before validation, PING/PONG."""
    t = Trace("sync_frames", sync_frames.__doc__ or "", "sync")
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    t.step("A", "send_text", text="one", ttl_s=5)
    t.step("A", "send_text", text="two", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    t.unlink("A", "C")
    t.step("B", "send_text", text="while C is away from A", ttl_s=3600)
    t.deliver()
    t.advance(6000)  # "one" expires everywhere: tombstones
    t.link("A", "C")
    t.deliver()
    t.advance(2000)
    # a duplicate of an envelope C already holds: acked, not validated again
    env = t.room("A").sync.log.ordered()[-1].data
    t.step("C", "receive", **{"from": "A", "frame": _b64(wire.encode_envelopes([env])[0])})
    return t


def parking() -> Trace:
    """Parking: C links to B only; its sender key and message (sealed for A) reach A through B before
    C's ADD does: A parks them (a transient, not an error), then offers them back once the ADD arrives
    and reads the message. D and E, whose bundles A learned from signaling but whose ADDs A lacks, stay
    unknown: their parked envelopes are not re-validated per frame; D's ADD arriving 24 s later brings
    D's parked envelopes back into the log, E's arriving after 31 s finds them expired (30 s)."""
    t = Trace("parking", parking.__doc__ or "", "parking")
    _mesh(t, ("A", "B", "C", "D", "E"), "AB")
    t.link("C", "B")
    t.deliver()  # C pulls the room from B; B will announce C's ADD to A by HELLO (lazy relay)
    c = t.room("C")
    t.step("C", "send_text", text="early bird", ttl_s=3600)
    t.deliver()
    overtaking = [e.data for e in c.sync.log.ordered() if e.seq > 1]
    t.step("A", "receive", **{"from": "B", "frame": _b64(wire.encode_envelopes(overtaking)[0])})
    adds = {}
    for p in ("D", "E"):
        t.step(p, "send_text", text=f"{p} was here", ttl_s=3600)
        t.step("A", "learn", of=p)  # a bundle from signaling does not make a sender known
        envs = [e.data for e in t.room(p).sync.log.ordered()]
        adds[p] = envs[0]
        t.step("A", "receive", **{"from": "B", "frame": _b64(wire.encode_envelopes(envs[1:])[0])})
    for nonce in range(1, 4):
        t.step("A", "receive", **{"from": "B", "frame": _b64(wire.encode_ping(nonce))})
    t.advance(1000)  # B's announce: A pulls C's ADD, and C's parked envelopes go back in
    t.advance(23_000)
    t.step("A", "receive", **{"from": "B", "frame": _b64(wire.encode_envelopes([adds["D"]])[0])})
    t.advance(7_000)  # E's parked envelopes are past 30 s now
    t.step("A", "receive", **{"from": "B", "frame": _b64(wire.encode_envelopes([adds["E"]])[0])})
    return t


def equivocation_split() -> Trace:
    """Equivocation check: M gives A "meet at 10:00" and B "meet at 18:00" under one (sender, seq), both
    sealed with its current chain and sent straight from the author, in a full mesh (nobody relays, the
    HELLO marks agree). After the next HELLOs the DIGESTS differ; A and B exchange block hashes, then seq
    hashes (HASH_WANT / HASHES), WANT the differing envelope, find both versions and void the key: neither
    text is shown, each reports M's equivocation. A bogus DIGESTS and an unsolicited HASHES from M are
    ignored; a HASH_WANT from M is served from the window budget."""
    from peer.core.content import Text
    from peer.core.crypto import DeterministicRng
    from peer.core.envelope import Kind, seal_chained

    t = Trace("equivocation_split", equivocation_split.__doc__ or "", "equivocation")
    _mesh(t, ("A", "B", "M"), "AB AM BM")
    t.step("M", "send_text", text="hello", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    m = t.room("M")
    chain = m.keys._chain  # the hostile client seals two texts at one chain position and one seq
    assert chain is not None
    seq = max(q for s, q in (e.key for e in m.sync.log.ordered()) if s == m.peer_id) + 1
    lamport = max(t.room(p).sync.lamport for p in ("A", "B", "M")) + 1
    rng = DeterministicRng(b"equivocation/nonces")
    versions = [
        seal_chained(
            m.identity, m.room_id, chain, Kind.CHAT, seq, lamport, t.now, t.now + 3_600_000,
            encode_content(Text(text)), rng,
        )[0]
        for text in ("meet at 10:00", "meet at 18:00")
    ]  # fmt: skip
    t.step("A", "receive", **{"from": "M", "frame": _b64(wire.encode_envelopes([versions[0]])[0])})
    t.step("B", "receive", **{"from": "M", "frame": _b64(wire.encode_envelopes([versions[1]])[0])})
    t.deliver()
    # hostile frames from M: a bogus digest (its mark is not A's), unsolicited hashes, a hash request
    t.step(
        "A", "receive", **{"from": "M", "frame": _b64(wire.encode_digests([(t.id("B"), 9, bytes(32))])[0])}
    )
    t.step("A", "receive", **{"from": "M", "frame": _b64(wire.encode_hashes(t.id("M"), 0, 0, 9, []))})
    t.step("A", "receive", **{"from": "M", "frame": _b64(wire.encode_hash_want(t.id("M"), 1, 0, 10))})
    t.deliver()
    t.advance(6000)  # the next HELLOs: digests, hashes, WANT, void
    return t


def late_joiner() -> Trace:
    """A member joining late: C links after A and B chatted; it pulls the history (HELLO/WANT/ENVELOPES),
    gets every current chain (pairwise and sealed to its prekey) and reads everything."""
    t = Trace("late_joiner", late_joiner.__doc__ or "", "late")
    for p in ("A", "B", "C"):
        t.peer(p)
    t.create("A", "B")
    t.link("A", "B")
    t.deliver()
    t.advance(1000)
    t.step("A", "send_text", text="before C", ttl_s=3600)
    t.step("B", "send_text", text="also before C", ttl_s=3600)
    t.deliver()
    t.advance(500)
    t.create("C")
    t.link("C", "A")
    t.deliver()
    t.advance(3000)
    t.link("C", "B")
    t.deliver()
    t.advance(3000)
    t.step("C", "send_text", text="hello, I am new", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    return t


def removal_rotation() -> Trace:
    """Removal and rotation: A removes C; everyone drops C's link and C's receiver chains (persisted as
    deletions); B's next message starts a new chain that C never receives."""
    t = Trace("removal_rotation", removal_rotation.__doc__ or "", "removal")
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    t.step("C", "send_text", text="from C", ttl_s=3600)
    t.step("B", "send_text", text="before removal", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    t.step("A", "remove", member="C")
    t.deliver()
    t.advance(1000)
    t.step("B", "send_text", text="after removal", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    return t


def governance() -> Trace:
    """Governance in a room whose invite names A as owner: A appoints B admin (roles event); B removes C
    (epoch, rotation: C never gets B's next chain); A readmits C (a join again, and a new epoch: every
    sender rotates and hands C its new chain); A turns announcement mode on; B demotes itself; D leaves."""
    t = Trace("governance", governance.__doc__ or "", "governance", owner="A")
    _mesh(t, ("A", "B", "C", "D"), "AB BC AC AD BD CD")
    t.step("A", "set_admin", member="B", admin=True)
    t.deliver()
    t.step("B", "remove", member="C")
    t.deliver()
    t.advance(1000)
    t.step("B", "send_text", text="while C is out", ttl_s=3600)
    t.deliver()
    t.step("A", "readmit", member="C")
    t.deliver()
    for x in ("A", "B", "D"):
        t.link(x, "C")
    t.deliver()
    t.advance(1000)
    t.step("A", "send_text", text="welcome back", ttl_s=3600)
    t.step("C", "send_text", text="thanks", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    t.step("A", "set_announce", on=True)
    t.deliver()
    t.step("B", "send_text", text="admins still post", ttl_s=3600)
    t.deliver()
    t.step("B", "set_admin", member="B", admin=False)
    t.deliver()
    t.step("D", "leave")
    t.deliver()
    t.advance(1000)
    return t


def _low_label(t: Trace, below: str) -> str:
    """A peer label whose identity's id sorts below ``below`` (what an attacker grinds)."""
    for i in range(1000):
        label = f"F{i}"
        if t._identity(label).peer_id < below:
            return label
    raise AssertionError("no low id")


def admission_closed() -> Trace:
    """Closed room with admin approval (issue 13 item 8): A (owner) closes the room listing A, B, C; a
    fake F with a ground low id joins after the close (its self-ADD at lamport 1, the lowest there is):
    it is a join request, admitted by no one, gets no SENDER_KEY; A sends; D joins after the close and
    asks to join: A admits D (a member, gets A's chain); A reopens: F, still asking, is admitted."""
    t = Trace("admission_closed", admission_closed.__doc__ or "", "admission", owner="A")
    for p in ("A", "B", "C", "D"):
        t.peer(p)
    fake = _low_label(t, min(t.id("A"), t.id("B"), t.id("C")))
    t.peer(fake)
    t.create("A", "B", "C")
    for x, y in (("A", "B"), ("B", "C"), ("A", "C")):
        t.link(x, y)
    t.deliver()
    t.advance(1000)
    t.step("A", "close_admission")
    t.deliver()
    t.advance(1000)
    t.create(fake)
    t.link(fake, "A")
    t.link(fake, "B")
    t.deliver()
    t.step("A", "join_requests")
    t.step("B", "join_requests")
    t.step("A", "send_text", text="members only", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    t.create("D")
    t.link("D", "A")
    t.deliver()
    t.step("A", "admit", member="D")
    t.deliver()
    t.link("D", "B")
    t.deliver()
    t.advance(1000)
    t.step("A", "send_text", text="welcome D", ttl_s=3600)
    t.deliver()
    t.step("D", "join_requests")
    t.step("A", "open_admission")
    t.deliver()
    t.advance(1000)
    t.step("B", "join_requests")
    return t


def expiry_unsend() -> Trace:
    """Expiry and unsend: a 3 s message expires everywhere (tombstones, erasure receipts "erased on N
    of M"); an unsend is a signed TOMBSTONE envelope applied by every member; the room timer is set."""
    t = Trace("expiry_unsend", expiry_unsend.__doc__ or "", "expiry", ttl_s=600)
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    t.step("A", "send_text", text="gone in 3 s", ttl_s=3)
    regret = t.step("A", "send_text", text="I regret this")
    t.step("B", "set_timer", ttl_s=120)
    t.deliver()
    t.advance(1000)
    t.step("A", "unsend", target=regret["id"])
    t.deliver()
    t.advance(4000)
    return t


def edit_unsend() -> Trace:
    """Erasure of what refers to a message (issue 13 items 2, 6): A edits its message, B reacts, A unsends
    it: the TOMBSTONE names A's edit too and every member erases the edit and B's reaction (envelopes
    and keys). A newer message of A's chain unsent while an older one lives: A's chain retires (its
    stored initial state is deleted) and the next message starts a new chain."""
    t = Trace("edit_unsend", edit_unsend.__doc__ or "", "expiry")
    _mesh(t, ("A", "B"), "AB")
    old = t.step("A", "send_text", text="stays an hour", ttl_s=3600)
    msg = t.step("A", "send_text", text="meet at 10:00", ttl_s=3600)
    t.deliver()
    t.step("A", "edit", target=msg["id"], body="meet at 18:00")
    t.step("B", "react", target=msg["id"], emoji="👍", on=True)
    t.deliver()
    t.step("A", "unsend", target=msg["id"])
    t.deliver()
    t.advance(1000)
    t.step("A", "send_text", text="on a new chain", ttl_s=3600)
    t.deliver()
    t.step("B", "react", target=old["id"], emoji="🔥", on=True)
    t.deliver()
    t.advance(500)
    return t


def receipts_typing_seen() -> Trace:
    """Receipts, typing and seen: delivery per neighbour (ACK), typing on/off and its 6 s expiry, SEEN
    once per message to its sender only."""
    t = Trace("receipts_typing_seen", receipts_typing_seen.__doc__ or "", "presence")
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    msg = t.step("A", "send_text", text="did you see this?", ttl_s=3600)
    t.deliver()
    t.step("B", "typing", typing=True)
    t.step("B", "typing", typing=True)  # rate-limited: nothing sent
    t.deliver()
    t.step("B", "typing", typing=False)
    t.step("C", "typing", typing=True)
    t.deliver()
    t.step("B", "seen", ids=[msg["id"]])
    t.step("B", "seen", ids=[msg["id"]])  # once per message
    t.step("C", "seen", ids=[msg["id"], "not-an-id"])
    t.deliver()
    t.advance(7000)  # C's typing indicator lapses at A and B
    return t


def content_types() -> Trace:
    """Every content type: text (non-ASCII), a reply, profile (display name, cleaned), edit of our own
    message, reactions on and off by two members."""
    t = Trace("content_types", content_types.__doc__ or "", "content")
    _mesh(t, ("A", "B"), "AB")
    t.step("A", "set_profile", name="Alice")
    t.step("B", "set_profile", name="  Bob\u0007 ")
    first = t.step("A", "send_text", text="héllo 👋", ttl_s=3600)
    t.deliver()
    t.step("B", "send_text", text="a reply", ttl_s=3600, reply_to=first["id"])
    t.step("A", "edit", target=first["id"], body="hello (edited)")
    t.step("B", "react", target=first["id"], emoji="👍", on=True)
    t.step("A", "react", target=first["id"], emoji="👍", on=True)
    t.deliver()
    t.step("B", "react", target=first["id"], emoji="👍", on=False)
    t.step("A", "set_profile", name="Alice B.")
    t.deliver()
    t.advance(500)
    return t


def features() -> Trace:
    """Issue 15 (mentions, location, forward, search, last seen, long text): A mentions B (and C) in a
    text; a location; a 16,510-character text (over the old 16 KiB cap) arrives whole; B forwards A's text (marked forwarded, its
    expiry capped by the original's) and the location; search finds text and forwarded name, follows an
    edit and loses an unsent message at once; a message expires and is then refused for forwarding (gone)
    and leaves the results (a copy held past its expiry is refused too); C opts out of last seen (LASTSEEN 0 on its links, and again after relinking),
    so when B and C go down A shows B's last seen only, and the room timer forgets it."""
    t = Trace("features", features.__doc__ or "", "features", ttl_s=60)
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    t.step("A", "set_profile", name="Alice")
    hello = t.step("A", "send_text", text="hi @Bob and @Carol, lunch?", ttl_s=3600, mentions=["B", "C"])
    t.step("A", "send_location", lat_e6=52_520_008, lon_e6=-13_404_954, acc_m=25, ttl_s=3600)
    t.step("A", "send_text", text="x" * 16_500 + " long tail", ttl_s=3600)
    short = t.step("A", "send_text", text="soon gone lunch", ttl_s=5)
    t.deliver()
    t.step("B", "forward", source=hello["id"], from_name="Alice", ttl_s=7200)
    t.step("B", "forward", source=f"{t.id('A')}:{hello['seq'] + 1}", from_name="Alice")
    t.deliver()
    t.step("C", "search", q="LUNCH")
    t.step("C", "search", q="alice lunch")
    t.step("A", "edit", target=hello["id"], body="hi all, dinner instead?")
    t.deliver()
    t.step("C", "search", q="lunch")
    t.step("C", "search", q="dinner")
    t.step("C", "share_last_seen", share=False)
    t.deliver()
    t.step("B", "forward", source=short["id"], from_name="Alice", later_ms=6000)  # a held copy, past expiry
    t.advance(6000)  # the 5 s message expires everywhere
    t.step("B", "forward", source=short["id"], from_name="Alice")
    t.step("C", "search", q="gone")
    t.step("A", "unsend", target=hello["id"])
    t.deliver()
    t.step("C", "search", q="dinner")
    t.unlink("A", "C")
    t.link("A", "C")  # C says again that it opts out
    t.deliver()
    t.unlink("A", "B")
    t.unlink("A", "C")
    t.step("A", "last_seen")
    t.advance(61_000, step=5000)  # past the room timer (60 s): forgotten
    t.step("A", "last_seen")
    return t


def forward_files() -> Trace:
    """Forwarding an attachment (PROTOCOL.md "Forwarded attachments"): A sends a file; B forwards it
    re-sealed under a fresh key (a new content item: marked forwarded, its expiry capped by the
    original's, found by search under the original author's name); a forward that reuses the
    original's key or manifest is refused, so is one naming another file; a file that has expired is
    refused (a copy held past its expiry), then gone; unsending the original leaves the forward alone."""
    from peer.core.crypto import b64u_encode

    def ref(
        name: str, manifest: int, key: int, size: int = 70_000, mime: str = "image/jpeg"
    ) -> dict[str, Any]:
        return {
            "name": name,
            "size": size,
            "mime": mime,
            "manifest": b64u_encode(bytes([manifest]) * 32),
            "key": b64u_encode(bytes([key]) * 32),
        }

    t = Trace("forward_files", forward_files.__doc__ or "", "forward_files", ttl_s=60)
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    t.step("A", "set_profile", name="Alice")
    photo = t.step("A", "send_file", file=ref("photo.jpg", 1, 2), ttl_s=3600)
    short = t.step("A", "send_file", file=ref("soon.bin", 3, 4, 100, "application/octet-stream"), ttl_s=5)
    t.deliver()
    fwd = t.step(
        "B", "forward_file", source=photo["id"], sealed=ref("photo.jpg", 5, 6), from_name="Alice", ttl_s=7200
    )
    t.step("B", "forward_file", source=photo["id"], sealed=ref("photo.jpg", 1, 7), from_name="Alice")
    t.step("B", "forward_file", source=photo["id"], sealed=ref("photo.jpg", 8, 2), from_name="Alice")
    t.step("B", "forward_file", source=photo["id"], sealed=ref("other.jpg", 9, 10), from_name="Alice")
    t.deliver()
    t.step("C", "forward_file", source=fwd["id"], sealed=ref("photo.jpg", 11, 12), from_name="Bob", ttl_s=60)
    t.deliver()
    t.step("C", "search", q="alice")
    t.step("C", "search", q="photo")
    t.step(
        "B",
        "forward_file",
        source=short["id"],
        sealed=ref("soon.bin", 13, 14, 100, "application/octet-stream"),
        from_name="Alice",
        later_ms=6000,
    )
    t.advance(6000)
    t.step(
        "B",
        "forward_file",
        source=short["id"],
        sealed=ref("soon.bin", 13, 14, 100, "application/octet-stream"),
        from_name="Alice",
    )
    t.step("A", "unsend", target=photo["id"])
    t.deliver()
    t.step("C", "search", q="photo")
    t.advance(61_000, step=5000)  # C's 60 s forward of the forward expires; B's lives on
    t.step("C", "search", q="photo")
    t.step("A", "search", q="alice")
    return t


def keep_files() -> Trace:
    """Keepers hold attachments (PROTOCOL.md "Keepers hold attachments"): K, a keeper that holds files,
    says KEEPER on each link; A's file messages are offered to it (KEEP_FILE: the manifest id and blob
    ids only, a 300-id list in 3 frames; at send time), bound to the envelopes' own expiry; B, also linked to K, offers nothing it did not author; a 5 s file expires
    and an unsent one goes (K drops them); a file A sends while unlinked from K is offered when they
    link again (every live file of A's, once per link)."""
    from peer.core.crypto import b64u_encode

    def ref(name: str, n: int, size: int = 50_000, count: int = 4) -> dict[str, Any]:
        m, k = b64u_encode(bytes([n]) * 32), b64u_encode(bytes([n + 100]) * 32)
        # its index and chunk ids (what A's adapter would look up): only ids go to K, never key or name
        blobs = [b64u_encode(bytes([n]) + j.to_bytes(2, "big") * 15 + bytes([7])) for j in range(count)]
        return {
            "name": name,
            "size": size,
            "mime": "application/pdf",
            "manifest": m,
            "key": k,
            "blobs": blobs,
        }

    t = Trace("keep_files", keep_files.__doc__ or "", "keep_files", ttl_s=60)
    t.peer("A")
    t.peer("B")
    t.peer("K", keeper=True)
    t.create("A", "B", "K")
    t.step("K", "keep_files", on=True)
    for x, y in (("A", "K"), ("B", "K"), ("A", "B")):
        t.link(x, y)
    t.deliver()
    t.advance(1000)
    one = t.step("A", "send_file", file=ref("one.pdf", 1), ttl_s=3600)
    t.step("A", "send_file", file=ref("short.pdf", 2), ttl_s=5)
    t.step("A", "send_file", file=ref("big.pdf", 4, size=5_000_000, count=300), ttl_s=3600)  # 3 frames
    t.step("B", "send_text", text="no file here", ttl_s=3600)
    t.deliver()
    t.step("K", "kept")
    t.advance(6000)  # the 5 s file expires everywhere
    t.step("K", "kept")
    t.step("A", "unsend", target=one["id"])
    t.deliver()
    t.step("K", "kept")
    t.unlink("A", "K")
    t.step("A", "send_file", file=ref("later.pdf", 3), ttl_s=3600)
    t.deliver()
    t.step("K", "kept")
    t.link("A", "K")
    t.deliver()
    t.step("K", "kept")
    return t


def restart_restore() -> Trace:
    """Restart from the store: B goes offline after C was removed; while B is away a 5 s message expires.
    B restarts from what it persisted (its own batches, deletions included): C's receiver chains are not
    restored, the expired message is erased at restore (and B owes A a receipt), the rest is shown again;
    relinked, B catches up and reports the erasure to A."""
    t = Trace("restart_restore", restart_restore.__doc__ or "", "restart")
    _mesh(t, ("A", "B", "C"), "AB BC AC")
    t.step("C", "send_text", text="from C", ttl_s=3600)
    t.step("A", "send_text", text="short", ttl_s=5)
    t.step("A", "send_text", text="long", ttl_s=3600)
    t.deliver()
    t.advance(1000)
    t.step("A", "remove", member="C")
    t.deliver()
    t.advance(1000)
    t.unlink("A", "B")  # B goes down
    t.unlink("B", "C")
    t.unlink("A", "C")
    t.now += 10_000  # B is down meanwhile (no timers fire in this stretch)
    t.restart("B")
    t.link("A", "B")
    t.deliver()
    t.advance(2000)
    return t


def chain_windows() -> Trace:
    """Sender keys over time: A's chains carry one expiry window each (a NEVER profile, a 60 s text, a 2 h
    text: three chains) and their SENDER_KEY envelopes expire with the window (NEVER for the profile
    chain); C joining late gets every live chain and reads all three. Everyone is away past the 60 s
    chain's window: its envelopes are erased everywhere and A retires that chain. Away a day: every
    prekey is due, each member publishes a fresh self-ADD with a new one; relinked, A's next chain is
    sealed to the new prekeys and read. Away another day: the old prekey private keys are erased (and
    the prekeys rotate again). K, a keeper, buffers everything and keeps no receiver chain."""
    t = Trace("chain_windows", chain_windows.__doc__ or "", "windows")
    for p in ("A", "B", "C"):
        t.peer(p)
    t.peer("K", keeper=True)
    t.create("A", "B", "K")
    t.link("A", "B")
    t.link("A", "K")
    t.deliver()
    t.advance(1000)
    t.step("A", "set_profile", name="alice")
    t.step("A", "send_text", text="one minute", ttl_s=60)
    t.step("A", "send_text", text="two hours", ttl_s=7200)
    t.deliver()
    t.advance(500)
    t.create("C")
    t.link("C", "A")
    t.deliver()
    t.advance(2000)
    t.link("C", "B")
    t.deliver()
    t.advance(1000)
    for x, y in (("A", "B"), ("A", "C"), ("B", "C"), ("A", "K")):
        t.unlink(x, y)
    t.advance(3_600_000 + 130_000, step=3_600_000 + 130_000)  # past the 60 s chain's window and skew
    t.advance(86_400_000, step=86_400_000)  # a day: every prekey is due
    for x, y in (("A", "B"), ("A", "C"), ("B", "C"), ("A", "K")):
        t.link(x, y)
    t.deliver()
    t.advance(1000)
    t.step("A", "send_text", text="after the rotation", ttl_s=60)
    t.deliver()
    t.advance(1000)
    for x, y in (("A", "B"), ("A", "C"), ("B", "C"), ("A", "K")):
        t.unlink(x, y)
    t.advance(86_400_000, step=86_400_000)  # old prekeys erased
    return t


# -- part traces: one part driven through its API --------------------------------------------------------

A, B, C = "a" * 32, "b" * 32, "c" * 32


def relay_reach() -> Trace:
    """Signaling through the mesh and reach gossip (issue 14): A - B - C linked in a chain announce their
    links and server hints (signed REACH 0x21); A learns C is reachable and the servers B and C use
    (persisted: reach/servers); A's sealed offer goes to C through B (RELAY 0x20, hop limit 3 -> 2) and
    C's answer comes back; a duplicate is dropped, a frame with a wrong id, hops 0, a forged "from us"
    and a REACH with a bad signature are blamed on the link; a relay flood is paced (relay-budget); a
    newcomer D linked to C only learns A and B (B's announcement, held until B's ADD arrived); after B-C
    is cut, B's next announcement drops C; alone, A lets every announcement expire; A restarts with the
    servers it learned."""
    from peer.core.crypto import DeterministicRng
    from peer.core.room import relay as rl
    from peer.core.signal import seal_signal

    t = Trace("relay_reach", relay_reach.__doc__ or "", "relay")
    _mesh(t, ("A", "B", "C", "D"), "AB")
    t.link("B", "C")
    t.deliver()
    t.advance(1000)
    for p in ("A", "B", "C"):
        t.step(p, "enable_reach", hints=[["server", f"https://{p.lower()}.example:8443"]])
    t.advance(3000)
    t.step("A", "relay_state")
    rng = DeterministicRng(b"relay/payloads")
    ident = {p: t.peers[p].identity for p in t.peers}
    offer = seal_signal(ident["A"], t.invite, t.id("C"), "offer", {"sdp": "v=0"}, t.now, rng)
    t.step("A", "relay_signal", to="C", payload=offer)
    t.deliver()
    t.step("C", "relay_state")
    answer = seal_signal(ident["C"], t.invite, t.id("A"), "answer", {"sdp": "v=0"}, t.now, rng)
    t.step("C", "relay_signal", to="A", payload=answer)
    t.deliver()
    t.step("A", "relay_state")
    # hostile or broken frames from B at C
    dup = rl.encode_relay(2, t.id("A"), t.id("C"), offer)
    bad_id = dup[:2] + bytes(16) + dup[18:]
    hops0 = bytes([rl.RELAY_TAG, 0]) + dup[2:]
    mine = rl.encode_relay(2, t.id("C"), t.id("A"), "v1.never-sent")
    for body in (dup, bad_id, hops0, mine):
        t.step("C", "receive", **{"from": "B", "frame": _b64(wire.encode_opaque(wire.FrameType.APP, body))})
    good = rl.encode_reach(ident["A"], t.invite.room_id, t.now + 1, 60, [t.id("B")], [])
    forged = good[:-64] + bytes(63) + b"\x01"
    t.step("C", "receive", **{"from": "B", "frame": _b64(wire.encode_opaque(wire.FrameType.APP, forged))})
    for i in range(rl.RELAY_BURST + 2):
        body = rl.encode_relay(2, t.id("A"), t.id("C"), f"v1.flood-{i}")
        t.step("C", "receive", **{"from": "B", "frame": _b64(wire.encode_opaque(wire.FrameType.APP, body))})
    t.step("C", "relay_state")
    t.step("D", "enable_reach", hints=[["server", "https://d.example"]])
    t.link("C", "D")
    t.deliver()
    t.advance(3000)
    t.step("D", "relay_state")
    t.unlink("B", "C")
    t.advance(3000)
    t.step("A", "relay_state")
    t.unlink("A", "B")  # alone, A only expires what it holds (and the trace stays small)
    t.unlink("C", "D")
    t.advance(rl.TTL_S * 1000, step=5000)
    t.step("A", "relay_state")
    t.restart("A")
    t.step("A", "relay_state")
    return t


def relay_full_mesh() -> Trace:
    """Reach gossip in a full mesh (A, B, C all linked): each announcement goes to the announcer's
    neighbours only, nobody forwards one (every receiver is named by it); then C's link to A drops and B
    forwards C's next announcement to A (A is no longer named); A's reachable goes from [] to [C]."""
    t = Trace("relay_full_mesh", relay_full_mesh.__doc__ or "", "relay-mesh")
    _mesh(t, ("A", "B", "C"), settle=False)
    for pair in ("AB", "BC", "AC"):
        t.link(pair[0], pair[1])
        t.deliver()
        t.advance(500)
    for p in ("A", "B", "C"):
        t.step(p, "enable_reach", hints=[["server", "https://s.example"]])
    t.advance(3000)
    t.step("A", "relay_state")
    t.unlink("A", "C")
    t.advance(3000)
    t.step("A", "relay_state")
    return t


def _meta(sender: str, seq: int, lamport: int, expires_at: int = T0 + 3_600_000) -> dict[str, int | str]:
    return {"sender": sender, "seq": seq, "lamport": lamport, "sent_at": T0 + seq, "expires_at": expires_at}


def part_timeline() -> dict[str, Any]:
    """Timeline (pure projection): text and reply, profile (latest by (lamport, seq) wins, an older one is
    ignored), an edit of one's own message (latest wins) and one of someone else's (bad-edit), a reaction
    arriving before its target, reactions on/off, erasing an edit and a message, delivery and seen
    receipts once each."""
    t = [
        {"op": "apply", "meta": _meta(B, 3, 7), "content": _c(Reaction(f"{A}:1", "🎉"))},
        {"op": "apply", "meta": _meta(A, 1, 5), "content": _c(Text("héllo"))},
        {"op": "track", "id": f"{A}:1"},
        {"op": "apply", "meta": _meta(B, 4, 8), "content": _c(Text("a reply", f"{A}:1"))},
        {"op": "apply", "meta": _meta(A, 2, 9), "content": _c(Edit(f"{A}:1", "hello"))},
        {"op": "apply", "meta": _meta(A, 5, 6), "content": _c(Edit(f"{A}:1", "older edit"))},
        {"op": "apply", "meta": _meta(B, 6, 10), "content": _c(Edit(f"{A}:1", "forged"))},
        {"op": "apply", "meta": _meta(C, 1, 11), "content": _c(Reaction(f"{A}:1", "🎉"))},
        {"op": "apply", "meta": _meta(B, 7, 12), "content": _c(Reaction(f"{A}:1", "🎉", on=False))},
        {"op": "apply", "meta": _meta(B, 8, 13, 2**52), "content": _c(Profile("Bob"))},
        {"op": "apply", "meta": _meta(B, 9, 2, 2**52), "content": _c(Profile("Old Bob"))},
        {"op": "ack", "neighbour": B, "sender": A, "seq": 1},
        {"op": "ack", "neighbour": B, "sender": A, "seq": 1},
        {"op": "seen", "member": C, "seqs": [1, 2, 99], "of": 2},
        {"op": "seen", "member": C, "seqs": [1], "of": 2},
        {"op": "erase", "sender": A, "seq": 2, "reason": "unsent"},
        {"op": "erase", "sender": A, "seq": 1, "reason": "expired"},
    ]
    doc: dict[str, Any] = {"part": "timeline", "params": {"self_id": A}, "ops": t}
    return doc


def part_parking() -> dict[str, Any]:
    """Parking: per-neighbour bound (the neighbour's oldest goes), total bound (the oldest overall goes),
    take in arrival order across neighbours, expiry TTL after arrival, a neighbour dropped with its link."""
    ops: list[dict[str, Any]] = [{"op": "defaults"}]  # the production bounds: 512, 2,048, 30 s
    for i, (n, sender) in enumerate([(B, C), (B, C), (B, A), (B, C), (C, C), (C, A), (A, C)]):
        ops.append(
            {
                "op": "park",
                "neighbour": n,
                "sender": sender,
                "data": _b64(bytes([i]) * 4),
                "now": T0 + 100 * i,
            }
        )
    ops += [
        {"op": "take", "sender": A},
        {"op": "expire", "now": T0 + 1250},
        {"op": "drop", "neighbour": A},
        {"op": "park", "neighbour": B, "sender": A, "data": _b64(b"late"), "now": T0 + 1300},
        {"op": "take", "sender": C},
        {"op": "expire", "now": T0 + 2300},
    ]
    return {"part": "parking", "params": {"per_neighbour": 3, "total": 5, "ttl_ms": 1000}, "ops": ops}


def part_presence() -> dict[str, Any]:
    """Presence: typing sent to the online members (sorted), renewals rate-limited (3 s), stop; a member's
    indicator lasts 6 s unless renewed; seen sent once per message, grouped per sender."""
    ops: list[dict[str, Any]] = [
        {"op": "set_typing", "typing": True, "now": T0, "online": [C, B]},
        {"op": "set_typing", "typing": True, "now": T0 + 1000, "online": [C, B]},
        {"op": "set_typing", "typing": True, "now": T0 + 3000, "online": [B]},
        {"op": "set_typing", "typing": False, "now": T0 + 3500, "online": [B]},
        {"op": "set_typing", "typing": False, "now": T0 + 3600, "online": [B]},
        {"op": "on_typing", "peer": B, "typing": True, "now": T0},
        {"op": "on_typing", "peer": C, "typing": True, "now": T0 + 1000},
        {"op": "on_typing", "peer": B, "typing": True, "now": T0 + 4000},
        {"op": "expire", "now": T0 + 7000},
        {"op": "on_typing", "peer": B, "typing": False, "now": T0 + 8000},
        {"op": "expire", "now": T0 + 10_000},
        {"op": "seen", "keys": [[B, 1], [C, 4], [B, 2]], "now": T0},
        {"op": "seen", "keys": [[B, 1], [B, 3]], "now": T0},
    ]
    return {"part": "presence", "params": {}, "ops": ops}


def part_links() -> dict[str, Any]:
    """Links (the per-neighbour state machine): an unknown peer is DEAD at once; HANDSHAKING -> READY
    through hello/finish both ways; the pairwise channel seals and opens both ways;
    faults are counted until the budget (64) closes the link; a junk handshake kills a HANDSHAKING link."""
    from peer.core.crypto import DeterministicRng
    from peer.core.identity import Identity
    from peer.core.invite import Invite

    ids = {label: Identity.generate(DeterministicRng(f"links/{label}".encode())) for label in ("X", "Y")}
    room = Invite.new("http://127.0.0.1:1", None, DeterministicRng(b"links/invite")).room_id
    ops: list[dict[str, Any]] = [
        {"op": "up", "at": "X", "known": False},
        {"op": "up", "at": "X", "known": True},
        {"op": "up", "at": "Y", "known": True},
        {"op": "deliver", "at": "X"},  # X's hello -> Y answers with finish
        {"op": "deliver", "at": "Y"},  # Y's hello and finish -> X is READY
        {"op": "deliver", "at": "X"},  # X's finish -> Y is READY
        {"op": "seal", "at": "X", "plaintext": "sender key"},
        {"op": "seal", "at": "Y", "plaintext": "and back"},
    ]
    ops += [{"op": "fault", "at": "X", "code": "bad-frame" if i % 2 else "bad-envelope"} for i in range(66)]
    ops += [
        {"op": "close", "at": "Y"},
        {"op": "down", "at": "Y"},
        {"op": "up", "at": "Y", "known": True},
        {"op": "handshake", "at": "Y", "frame": _b64(b"\x10\x09junk")},
    ]
    params = {
        "identities": {k: _b64(v.to_bytes()) for k, v in ids.items()},
        "room_id": room,
        "rng_seeds": {k: _b64(f"links/{k}/rng".encode()) for k in ids},
    }
    return {"part": "links", "params": params, "ops": ops}


def part_admission() -> dict[str, Any]:
    """Admission (new self-ADDs per neighbour per window): B gets 3 in its window, the 4th and 5th are
    refused, C has its own budget meanwhile; B's window ends 1,000 ms after its first charge and a new
    one starts; a clock that goes back starts a new window too."""
    ops: list[dict[str, Any]] = [{"op": "defaults"}]  # the production budget: 256 per 10 s
    for n, dt in [(B, 0), (B, 100), (B, 200), (B, 300), (C, 350), (B, 999), (B, 1000), (B, 1001), (C, 1300)]:
        ops.append({"op": "charge", "neighbour": n, "now": T0 + dt})
    ops += [
        {"op": "charge", "neighbour": B, "now": T0 + 1100},
        {"op": "charge", "neighbour": B, "now": T0 + 50},
    ]
    return {"part": "admission", "params": {"per_window": 3, "window_ms": 1000}, "ops": ops}


def part_timeline_files() -> dict[str, Any]:
    """Timeline with attachments: a file message (text empty, its file info shown, never its key), a
    caption by edit, a reaction, an announcement-free reply to it, then its erasure."""
    from peer.core.files import File

    ref = File("photo.jpg", 123_456, "image/jpeg", bytes(range(32)), bytes(range(32, 64)))
    t = [
        {"op": "apply", "meta": _meta(A, 1, 5), "content": _c(ref)},
        {"op": "track", "id": f"{A}:1"},
        {"op": "apply", "meta": _meta(A, 2, 6), "content": _c(Edit(f"{A}:1", "a caption"))},
        {"op": "apply", "meta": _meta(B, 1, 7), "content": _c(Reaction(f"{A}:1", "👍"))},
        {"op": "apply", "meta": _meta(B, 2, 8), "content": _c(Text("nice", f"{A}:1"))},
        {"op": "erase", "sender": A, "seq": 1, "reason": "expired"},
    ]
    return {"part": "timeline", "params": {"self_id": A}, "ops": t}


def part_files() -> dict[str, Any]:
    """Attachments (files engine): A seals a 5-chunk image with a thumbnail; B fetches it from A; C fetches
    from A and B at once and A leaves half way (B completes it); M holds nothing (NONE, then a retry
    after retry_ms), X serves damaged blobs (bad-hash, fetched elsewhere), a request timeout moves a
    blob to another holder; bad input: an unasked BLOB (chunk flood), a malformed frame, a WANT flood
    past serve_window (BUSY), a file over max_file refused."""
    from peer.core.crypto import sha256
    from peer.core.files_transfer import BLOB, WANT, encode_frame

    limits = {
        "max_file": 1_000_000,
        "window": 2,
        "serve_window": 3,
        "request_timeout_ms": 1000,
        "retry_ms": 500,
        "error_budget": 6,
    }
    thumb = _b64(bytes(range(40)))
    ops: list[dict[str, Any]] = [
        {
            "op": "seal",
            "at": "A",
            "label": "img",
            "name": "cat.png",
            "mime": "image/png",
            "size": 4500,
            "chunk": 1024,
            "seed": "files/img",
            "thumb": thumb,
            "thumb_mime": "image/jpeg",
        },
        {
            "op": "seal",
            "at": "A",
            "label": "voice",
            "name": "note.webm",
            "mime": "audio/webm",
            "size": 1500,
            "chunk": 1024,
            "seed": "files/voice",
            "duration_ms": 2500,
        },
        {
            "op": "seal",
            "at": "A",
            "label": "empty",
            "name": "empty.txt",
            "mime": "text/plain",
            "size": 0,
            "chunk": 1024,
            "seed": "files/empty",
        },
        {"op": "link", "a": "B", "b": "A"},
        {"op": "fetch", "at": "B", "label": "img"},
        {"op": "run"},
        {"op": "open", "at": "B", "label": "img"},
        {"op": "link", "a": "C", "b": "A"},
        {"op": "link", "a": "C", "b": "B"},
        {"op": "fetch", "at": "C", "label": "img"},
        {"op": "run", "frames": 6},
        {"op": "unlink", "a": "C", "b": "A"},
        {"op": "run"},
        {"op": "open", "at": "C", "label": "img"},
        {"op": "fetch", "at": "C", "label": "empty"},
        {"op": "run"},
        # M holds nothing: NONE, then everyone lacks it -> retry timer
        {"op": "unlink", "a": "C", "b": "B"},
        {"op": "link", "a": "C", "b": "M"},
        {"op": "fetch", "at": "C", "label": "voice"},
        {"op": "run"},
        {"op": "timer", "now": T0 + 500},
        {"op": "run"},
        # X holds damaged copies; A (relinked) the real ones
        {"op": "link", "a": "X", "b": "A"},
        {"op": "fetch", "at": "X", "label": "voice"},
        {"op": "run"},
        {"op": "link", "a": "C", "b": "X"},
        {"op": "run"},
        {"op": "link", "a": "C", "b": "A"},
        {"op": "run"},
        {"op": "open", "at": "C", "label": "voice"},
        # a request nobody answers times out and goes elsewhere: N swallows every frame
        {"op": "link", "a": "D", "b": "N"},
        {"op": "link", "a": "D", "b": "A"},
        {"op": "fetch", "at": "D", "label": "img"},
        {"op": "run"},
        {"op": "timer", "now": T0 + 1000},
        {"op": "run"},
        {"op": "timer", "now": T0 + 2000},
        {"op": "run"},
        {"op": "timer", "now": T0 + 3000},
        {"op": "run"},
        {"op": "timer", "now": T0 + 4000},
        {"op": "run"},
        {"op": "open", "at": "D", "label": "img"},
        # bad input at C
        {
            "op": "inject",
            "at": "C",
            "from": "Z",
            "frame": _b64(encode_frame(BLOB, 9, sha256(b"junk"), b"junk")),
        },
        {"op": "inject", "at": "C", "from": "Z", "frame": _b64(b"\x07" + bytes(40))},
    ]
    ops += [
        {
            "op": "inject",
            "at": "A",
            "from": "Z",
            "frame": _b64(encode_frame(WANT, i, sha256(bytes([i])))),
            "serve": False,
        }
        for i in range(5)
    ]
    ops += [{"op": "inject", "at": "C", "from": "Z", "frame": _b64(b"\x01")} for _ in range(5)]
    ops += [{"op": "inject", "at": "C", "from": "Z", "frame": _b64(b"\x01")}]
    params = {
        "nodes": ["A", "B", "C", "D", "M", "N", "X"],
        "corrupt": ["X"],
        "mute": ["N"],
        "limits": limits,
        "t0": T0,
    }
    return {"part": "files", "params": params, "ops": ops}


def part_distribution() -> dict[str, Any]:
    """Distribution (members we have not linked with, served our chains paced): 2 per 1,000 ms window; B
    and C are served at once, D, E (silent) and F wait; E shows life and moves ahead of D; F is dropped
    (it linked); the next window serves E then D; G is enqueued (a restart) and served after; a member
    already waiting is not queued twice."""
    d, e, f, g = "d" * 32, "e" * 32, "f" * 32, "0" * 32
    ops: list[dict[str, Any]] = [{"op": "defaults"}]  # the production pace: 32 per 60 s
    ops += [
        {"op": "offer", "peer": B, "now": T0},
        {"op": "offer", "peer": C, "now": T0 + 10},
        {"op": "offer", "peer": d, "now": T0 + 20},
        {"op": "offer", "peer": e, "now": T0 + 30},
        {"op": "offer", "peer": f, "now": T0 + 40},
        {"op": "offer", "peer": d, "now": T0 + 50},
        {"op": "shown_life", "peer": e},
        {"op": "drop", "peer": f},
        {"op": "due", "now": T0 + 999},
        {"op": "enqueue", "peer": g},
        {"op": "due", "now": T0 + 1000},
        {"op": "due", "now": T0 + 1500},
        {"op": "due", "now": T0 + 2000},
        {"op": "offer", "peer": f, "now": T0 + 2100},
    ]
    return {"part": "distribution", "params": {"per_window": 2, "window_ms": 1000}, "ops": ops}


PARTS: list[Callable[[], dict[str, Any]]] = [
    part_timeline,
    part_parking,
    part_presence,
    part_links,
    part_admission,
    part_files,
    part_timeline_files,
    part_distribution,
]


def _c(content: Content) -> str:
    return encode_content(content).decode()


SCENARIOS: list[Callable[[], Trace]] = [
    links_handshake,
    sync_frames,
    parking,
    late_joiner,
    removal_rotation,
    governance,
    admission_closed,
    expiry_unsend,
    edit_unsend,
    receipts_typing_seen,
    content_types,
    restart_restore,
    chain_windows,
    relay_reach,
    relay_full_mesh,
    features,
    equivocation_split,
    forward_files,
    keep_files,
]


def _b64(data: bytes) -> str:
    from peer.core.crypto import b64u_encode

    return b64u_encode(data)


def build() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        trace = scenario()
        trace.description = " ".join((scenario.__doc__ or "").split())
        out[trace.name] = trace.to_json()
    for part in PARTS:
        doc = part()
        doc = {"name": part.__name__, "description": " ".join((part.__doc__ or "").split()), **doc}
        for op, got in zip(doc["ops"], run_part(doc), strict=True):
            op["out"] = got
        out[part.__name__] = doc
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    docs = build()
    for old in OUT.glob("*.json"):
        if old.stem not in docs:
            old.unlink()
    for name, doc in docs.items():
        path = OUT / f"{name}.json"
        path.write_text(render(doc))
        print(f"wrote {path} ({len(doc.get('steps', doc.get('ops', [])))} steps)")


if __name__ == "__main__":
    main()
