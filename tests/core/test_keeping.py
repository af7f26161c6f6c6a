"""The keeping part (peer/core/room/keeping.py) on its own: wire codec, bad input, and the rules that
bound what a neighbour can make us send or hold."""

from __future__ import annotations

import pytest

from peer.core.errors import ProtocolError
from peer.core.files import File
from peer.core.room.keeping import (
    KEEP_FILE_TAG,
    KEEPER_TAG,
    MAX_KEPT,
    MAX_OFFER,
    MAX_PENDING,
    Keeping,
    KeptFile,
    KeptFileGone,
    decode_keep_file,
    encode_keep_file,
    encode_keeper,
)

A, B = "a" * 32, "b" * 32


def ref(n: int) -> File:
    return File(f"f{n}.bin", 1000 + n, "application/octet-stream", bytes([n % 256]) * 32, bytes([7]) * 32)


def keeper() -> Keeping:
    k = Keeping(keeper=True)
    k.holds_files = True
    return k


def test_codec_round_trip_and_bad_bodies_are_refused() -> None:
    f = ref(1)
    assert decode_keep_file(encode_keep_file(5, f)) == (5, f)
    body = encode_keep_file(5, f)
    bad = [
        b"",
        bytes([KEEP_FILE_TAG]) + bytes(8),  # no content
        bytes([KEEP_FILE_TAG]) + bytes(8) + b'{"t":"text","body":"x","reply_to":null}',  # not a file
        bytes([KEEP_FILE_TAG]) + (0).to_bytes(8, "big") + body[9:],  # seq 0
        bytes([KEEP_FILE_TAG]) + (2**53).to_bytes(8, "big") + body[9:],  # past 2^53
        body[:-1],  # truncated JSON
        body + b" " * 5000,  # over MAX_KEEP_BODY
    ]
    for b in bad:
        with pytest.raises(ProtocolError) as err:
            decode_keep_file(b)
        assert err.value.code == "bad-app-frame"
    k = Keeping(keeper=False)
    with pytest.raises(ProtocolError):
        k.on_keeper(B, bytes([KEEPER_TAG, 9]), [])


def test_a_member_offers_its_files_once_per_link_and_only_to_keepers() -> None:
    m = Keeping(keeper=False)
    assert m.on_sent(3, ref(3)) == []  # no keeper linked: nothing sent
    own = [(1, ref(1)), (4, ref(4))]
    frames = m.on_keeper(B, encode_keeper(), own)
    assert [(p, decode_keep_file(b)) for p, b in frames] == [(B, (1, ref(1))), (B, (4, ref(4)))]
    assert m.on_keeper(B, encode_keeper(), own) == []  # a KEEPER flood re-offers nothing
    assert [p for p, _ in m.on_sent(5, ref(5))] == [B]
    m.on_down(B)
    assert m.on_sent(6, ref(6)) == []
    assert len(m.on_keeper(B, encode_keeper(), own)) == 2  # a new link: offered again
    assert m.on_ready(B) == []  # a member never says KEEPER
    m.on_down(B)
    many = [(seq, ref(seq)) for seq in range(1, MAX_OFFER + 20)]
    offered = [decode_keep_file(b)[0] for _, b in m.on_keeper(B, encode_keeper(), many)]
    assert offered == list(range(20, MAX_OFFER + 20))  # the newest MAX_OFFER only


def test_a_keeper_holds_only_its_authors_live_chat_and_forgets_it_with_the_envelope() -> None:
    k = keeper()
    assert k.on_ready(A) == [(A, encode_keeper())]
    live = {(A, 1): 9_000}
    k.on_keep_file(A, encode_keep_file(1, ref(1)), live.get)
    k.on_keep_file(A, encode_keep_file(1, ref(2)), live.get)  # a second offer for the message: ignored
    k.on_keep_file(B, encode_keep_file(1, ref(3)), live.get)  # B names (B, 1): not a live CHAT of B's
    assert k.take() == [KeptFile(A, 1, 9_000, ref(1))]
    k.on_chat((B, 1), 5_000)  # B's envelope arrives after its offer: taken then
    assert k.take() == [KeptFile(B, 1, 5_000, ref(3))]
    k.erased((A, 1), "expired")
    k.erased((A, 1), "expired")  # once
    k.erased((A, 2), "unsent")  # never kept: nothing
    assert k.take() == [KeptFileGone(f"{A}:1", "expired")]
    off = Keeping(keeper=True)  # a keeper that does not hold files says nothing and keeps nothing
    assert off.on_ready(A) == []
    off.on_keep_file(A, encode_keep_file(1, ref(1)), live.get)
    assert off.take() == []
    member = Keeping(keeper=False)
    member.holds_files = True
    member.on_keep_file(A, encode_keep_file(1, ref(1)), live.get)
    assert member.take() == []


def test_what_a_keeper_holds_for_offers_is_bounded() -> None:
    k = keeper()
    for seq in range(1, MAX_PENDING + 50):  # offers for envelopes that never come
        k.on_keep_file(A, encode_keep_file(seq, ref(seq)), lambda _key: None)
    assert len(k._pending) == MAX_PENDING
    k.on_chat((A, 1), 10)  # the oldest were dropped
    assert k.take() == []
    for seq in range(1, MAX_KEPT + 10):
        k.on_keep_file(B, encode_keep_file(seq, ref(seq)), lambda _key: 10)
    assert len(k.take()) == MAX_KEPT
