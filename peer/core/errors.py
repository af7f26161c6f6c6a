"""The one error type that remote input may raise.

A parser or verifier of anything that came from the network either returns a value or raises
:class:`ProtocolError`. Anything else escaping a parser is a bug (and a hypothesis test holds us to it).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Remote input was malformed, forged, replayed, stale or otherwise unacceptable.

    ``code`` is a short stable identifier (``"bad-signature"``, ``"too-large"``...), ``message`` a human
    sentence. Neither ever contains plaintext, keys or room secrets.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
