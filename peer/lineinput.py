"""Lines typed (or pasted) into ``ephemesh chat``, without the terminal's line cap.

In canonical mode the Linux tty keeps at most 4,095 bytes of a line (N_TTY_BUF_SIZE) and silently drops
the rest: a 20,000-character paste arrived cut to 4,095. So on a terminal ``chat`` turns canonical mode
and echo off (signals stay on: Ctrl-C works), and :class:`LineEditor` assembles lines itself, with the
editing keys people expect: Backspace, Ctrl-U (erase the line), Ctrl-W (erase a word), Ctrl-D on an
empty line (quit). From a pipe, bytes are taken as they are and lines end at ``\\n``.

A line is bounded (``max_bytes``); past the bound the rest of it is dropped and the caller gets a
:class:`TooLong` marker for it, to say so (never a silent cut).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TooLong:
    size: int


Item = bytes | TooLong | None  # a line, a refused line, end of input


class LineEditor:
    def __init__(
        self, *, interactive: bool, max_bytes: int, echo: Callable[[bytes], None] | None = None
    ) -> None:
        self.interactive = interactive
        self.max_bytes = max_bytes
        self._echo = echo if echo is not None else (lambda _b: None)
        self._buf = bytearray()
        self._dropped = 0  # bytes of the current line dropped past the bound

    def feed(self, data: bytes) -> list[Item]:
        out: list[Item] = []
        for byte in data:
            ch = bytes([byte])
            if ch == b"\n" or (self.interactive and ch == b"\r"):
                self._echo(b"\r\n" if self.interactive else b"")
                out.append(self._finish())
            elif self.interactive and byte in (0x7F, 0x08):
                self._erase(1)
            elif self.interactive and byte == 0x15:  # Ctrl-U
                self._erase(len(self._text()))
            elif self.interactive and byte == 0x17:  # Ctrl-W
                text = self._text()
                stripped = text.rstrip()
                kept = stripped[: stripped.rfind(" ") + 1]  # up to the space before the last word
                self._erase(len(text) - len(kept))
            elif self.interactive and byte == 0x04:  # Ctrl-D
                if not self._buf and not self._dropped:
                    out.append(None)
                    return out
            elif self.interactive and byte < 0x20 and ch != b"\t":
                continue  # other control keys (arrows send ESC sequences: their ESC is dropped here)
            elif len(self._buf) >= self.max_bytes:
                self._dropped += 1
            else:
                self._buf += ch
                self._echo(ch)
        return out

    def end(self) -> list[Item]:
        """End of input: a last line without its newline still counts, then the end."""
        pending: list[Item] = [self._finish()] if self._buf or self._dropped else []
        return [*pending, None]

    def _text(self) -> str:
        return self._buf.decode(errors="replace")

    def _erase(self, chars: int) -> None:
        """Erase ``chars`` characters (whole UTF-8 sequences) from the end of the line."""
        for _ in range(chars):
            if not self._buf:
                return
            i = len(self._buf) - 1
            while i > 0 and self._buf[i] & 0xC0 == 0x80:
                i -= 1
            del self._buf[i:]
            self._echo(b"\b \b")

    def _finish(self) -> bytes | TooLong:
        line, dropped = bytes(self._buf), self._dropped
        self._buf.clear()
        self._dropped = 0
        return TooLong(len(line) + dropped) if dropped else line


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """Canonical mode and echo off on ``fd`` if it is a terminal (restored on exit); yields whether it is."""
    if not os.isatty(fd) or sys.platform == "win32":
        yield False
        return
    import termios

    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
