"""Search that forgets: an in-memory index of the messages this member can read.

Rules:
- The index holds, per message key, the normalised ``searchable_text`` of the message as shown (its
  latest edit applied). It lives in memory only: nothing of it is ever persisted, so no plaintext index
  reaches the disk (the store keeps only ciphertext and keys; see THREAT_MODEL.md "Search").
- The timeline owns it: a message enters when shown, is re-indexed when edited, and leaves in the same
  call that erases it (expiry, unsend, equivocation), so a query never returns a message that is gone.
- A query is split on whitespace; a message matches when every term is a substring of its text
  (case-insensitive, NFKC-normalised). At most ``MAX_QUERY`` characters and ``MAX_TERMS`` terms.
"""

from __future__ import annotations

import unicodedata

from peer.core.log import Key

MAX_QUERY = 256
MAX_TERMS = 16


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def terms(query: str) -> list[str]:
    """The terms of a query; ``ValueError`` past the bounds."""
    if len(query) > MAX_QUERY:
        raise ValueError(f"a search is at most {MAX_QUERY} characters")
    words = normalize(query).split()
    if len(words) > MAX_TERMS:
        raise ValueError(f"a search has at most {MAX_TERMS} words")
    return words


class SearchIndex:
    def __init__(self) -> None:
        self._text: dict[Key, str] = {}

    def __len__(self) -> int:
        return len(self._text)

    def put(self, key: Key, text: str) -> None:
        if text:
            self._text[key] = normalize(text)
        else:
            self._text.pop(key, None)

    def drop(self, key: Key) -> None:
        self._text.pop(key, None)

    def query(self, query: str) -> set[Key]:
        words = terms(query)
        if not words:
            return set()
        return {k for k, text in self._text.items() if all(w in text for w in words)}
