"""Composing mentions: ``@name`` in a typed message -> the peer ids it names (sans-IO, no state).

Rules (the web client's ``web/js/core/mentions.js`` is the same):
- ``@`` starts a mention at the start of the text or after whitespace or an opening bracket.
- It names the member whose display name follows it, case-insensitively, ending at the end of the text,
  whitespace or punctuation; of several names that fit (``@Ann`` and ``@Ann Lee``) the longest wins.
- ``@`` followed by at least 4 hex digits that start exactly one member's peer id names that member.
- Each member is mentioned once, in order of first appearance, at most ``MAX_MENTIONS``; an ``@`` that
  names nobody is left as text.
"""

from __future__ import annotations

from collections.abc import Mapping

from peer.core.content import MAX_MENTIONS

_BEFORE = " \t\n\r([{\"'"
_AFTER_OK = set(" \t\n\r.,;:!?)]}\"'")


def find_mentions(text: str, names: Mapping[str, str | None]) -> list[str]:
    """``names``: member peer id -> display name (or None). Returns the mentioned peer ids."""
    found: list[str] = []
    lowered = text.lower()
    candidates = sorted(
        ((n.lower(), p) for p, n in names.items() if n), key=lambda item: (-len(item[0]), item[1])
    )
    i = lowered.find("@")
    while i != -1 and len(found) < MAX_MENTIONS:
        if i == 0 or lowered[i - 1] in _BEFORE:
            rest = lowered[i + 1 :]
            hit = next(
                (
                    p
                    for n, p in candidates
                    if rest.startswith(n) and (len(rest) == len(n) or rest[len(n)] in _AFTER_OK)
                ),
                None,
            )
            if hit is None:
                word = "" if not rest or rest[0].isspace() else rest.split(None, 1)[0]
                word = word.rstrip("".join(_AFTER_OK))
                if len(word) >= 4 and all(c in "0123456789abcdef" for c in word):
                    ids = [p for p in names if p.startswith(word)]
                    hit = ids[0] if len(ids) == 1 else None
            if hit is not None and hit not in found:
                found.append(hit)
        i = lowered.find("@", i + 1)
    return found
