"""Display names, edits and reactions: content codec and room semantics (sans-IO, real crypto)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.core.content import Edit, Profile, Reaction, Text, clean_name, decode_content, encode_content
from peer.core.errors import ProtocolError
from peer.core.events import MessageUpdated, ProfileChanged, RemoteError
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import Room
from peer.testing import FakeClock
from tests.peer.room_net import Net, snapshot_of

MID = "ab" * 16 + ":7"


@pytest.mark.parametrize(
    "content",
    [
        Text("hi", None),
        Text("re", MID),
        Profile("Ada L."),
        Edit(MID, "fixed"),
        Reaction(MID, "👍🏽"),
        Reaction(MID, "👨‍👩‍👧", False),
    ],
)
def test_content_round_trips(content: object) -> None:
    assert decode_content(encode_content(content)) == content  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"t":"profile","name":"a\\u0000b"}',
        b'{"t":"profile","name":"' + b"x" * 65 + b'"}',
        b'{"t":"edit","target":"nope","body":"x"}',
        b'{"t":"react","target":"' + MID.encode() + b'","emoji":"","on":true}',
        b'{"t":"react","target":"' + MID.encode() + b'","emoji":"x","on":1}',
        b'{"t":"text","body":"x","reply_to":5}',
        b'{"t":"poll"}',
        b"[]",
        b"\xff",
    ],
)
def test_bad_content_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_content(raw)


@given(st.binary(max_size=300))
def test_decode_content_fuzz_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_content(data)


def test_clean_name() -> None:
    assert clean_name("  Ada\u200b \n Lovelace\x07 ") == "Ada Lovelace"


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def pair(net: Net) -> tuple[Room, Room]:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(1000)
    return a, b


def test_display_names_latest_wins_everywhere(net: Net) -> None:
    a, b = pair(net)
    a.set_profile("Alice", net.clock.now)
    a.set_profile("  Alice   Smith ", net.clock.now)
    net.pump()
    assert b.display_name(a.peer_id) == a.display_name(a.peer_id) == "Alice Smith"
    assert ProfileChanged(a.peer_id, "Alice Smith") in net.events[b.peer_id]


def test_edit_own_message_and_reactions_converge(net: Net) -> None:
    a, b = pair(net)
    msg = a.send_text("helo", net.clock.now, ttl_s=60)
    net.pump()
    a.edit(msg.id, "hello", net.clock.now)
    b.react(msg.id, "👍", net.clock.now)
    a.react(msg.id, "👍", net.clock.now)
    a.react(msg.id, "🎉", net.clock.now)
    net.pump()
    a.react(msg.id, "🎉", net.clock.now, on=False)
    net.pump()
    for room in (a, b):
        (shown,) = room.messages()
        assert shown.text == "hello"
        assert shown.edited
        assert shown.reactions == (("👍", tuple(sorted((a.peer_id, b.peer_id)))),)
    assert any(isinstance(e, MessageUpdated) for e in net.events[b.peer_id])
    with pytest.raises(ValueError, match="own"):
        b.edit(msg.id, "not yours", net.clock.now)


def test_forged_edit_of_someone_elses_message_is_ignored(net: Net) -> None:
    a, b = pair(net)
    msg = a.send_text("original", net.clock.now)
    net.pump()
    # b crafts an edit of a's message by hand (the API refuses to)
    b._send_content(Edit(msg.id, "forged"), net.clock.now, msg.expires_at)
    net.pump()
    assert [m.text for m in a.messages()] == ["original"]
    assert a.error_counts(b.peer_id).get("bad-edit") == 1


def test_edits_and_reactions_expire_with_their_message_and_survive_restart(net: Net) -> None:
    a, b = pair(net)
    short = a.send_text("short", net.clock.now, ttl_s=5)
    keep = a.send_text("keep", net.clock.now, ttl_s=3600)
    net.pump()
    a.edit(keep.id, "kept", net.clock.now)
    b.react(short.id, "👀", net.clock.now)
    b.react(keep.id, "❤️", net.clock.now)
    net.pump()
    net.tick(6000)
    assert [(m.text, m.reactions) for m in b.messages()] == [("kept", (("❤️", (b.peer_id,)),))]
    assert len(b.sync.log.ordered()) == len(a.sync.log.ordered())
    ident = b.identity
    net.remove(b)
    b2 = net.add(ident, snapshot=snapshot_of(net.persisted[ident.peer_id]))
    assert [(m.text, m.edited, m.reactions) for m in b2.messages()] == [
        ("kept", True, (("❤️", (b.peer_id,)),))
    ]


def test_typing_indicator_and_seen_receipts(net: Net) -> None:
    from peer.core.events import MessageSeen, Typing
    from peer.core.presence import decode_presence

    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    for x, y in ((a, b), (b, c), (a, c)):
        net.link(x, y)
    net.pump()
    net.tick(1000)
    a.set_typing(True, net.clock.now)
    a.set_typing(True, net.clock.now)  # rate-limited: one frame
    net.pump()
    assert b.typing_members(net.clock.now) == [a.peer_id]
    assert net.events[b.peer_id].count(Typing(a.peer_id, True)) == 1
    net.tick(7000)  # no renewal: it stops by itself
    assert b.typing_members(net.clock.now) == []
    assert Typing(a.peer_id, False) in net.events[b.peer_id]

    msg = a.send_text("did you see this?", net.clock.now)
    net.pump()
    b.mark_seen([msg.id], net.clock.now)
    b.mark_seen([msg.id], net.clock.now)  # once per message
    c.mark_seen([msg.id], net.clock.now)
    net.pump()
    assert a.seen_by(msg.id) == {b.peer_id, c.peer_id}
    seen = [e for e in net.events[a.peer_id] if isinstance(e, MessageSeen)]
    assert [(e.count, e.of) for e in seen] == [(1, 2), (2, 2)]
    with pytest.raises(ProtocolError):
        decode_presence(b"\x03\x00\x00")
    events = b.receive(a.peer_id, b"\x12\x02\x07", net.clock.now)  # APP frame with a bad typing body
    assert events == [RemoteError(a.peer_id, "bad-app-frame", 1)]
