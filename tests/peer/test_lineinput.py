"""The chat's line editor: no terminal line cap, editing keys, a bound that says so."""

from __future__ import annotations

from peer.lineinput import LineEditor, TooLong


def test_a_20000_character_paste_is_one_whole_line() -> None:
    echoed: list[bytes] = []
    ed = LineEditor(interactive=True, max_bytes=256_000, echo=echoed.append)
    text = ("zwanzigtausend " * 2000)[:20_000].encode()
    assert ed.feed(text[:4000]) == []
    assert ed.feed(text[4000:] + b"\r") == [text]
    assert b"".join(echoed) == text + b"\r\n"


def test_editing_keys_and_utf8_backspace() -> None:
    ed = LineEditor(interactive=True, max_bytes=100)
    assert ed.feed("héllo wörld".encode() + b"\x7f\x7f\n") == ["héllo wör".encode()]
    assert ed.feed(b"one two\x17three\n") == [b"one three"]
    assert ed.feed(b"gone\x15kept\n") == [b"kept"]
    assert ed.feed(b"\x1b[Aup\x04\n") == [b"[Aup"]  # ESC dropped; Ctrl-D mid-line ignored
    assert ed.feed(b"\x04") == [None]


def test_over_the_bound_is_refused_not_cut_and_the_next_line_is_fine() -> None:
    ed = LineEditor(interactive=False, max_bytes=10)
    assert ed.feed(b"x" * 25 + b"\nshort\n") == [TooLong(25), b"short"]
    assert ed.feed(b"tail") == []
    assert ed.end() == [b"tail", None]


def test_a_pipe_keeps_bytes_as_they_are() -> None:
    ed = LineEditor(interactive=False, max_bytes=100)
    assert ed.feed(b"a\x7fb\rc\n") == [b"a\x7fb\rc"]
