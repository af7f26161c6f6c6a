"""Short-lived TURN credentials in coturn's REST API shared-secret scheme.

Rules (coturn ``use-auth-secret`` / draft-uberti-behave-turn-rest):
- ``username = "<expiry unix seconds>:<peer id>"``;
- ``credential = base64(HMAC-SHA1(secret, username))`` (standard base64 with padding, as coturn expects);
- the TURN server refuses the pair once the expiry has passed, so the signaling server never stores it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TypedDict

from signaling.config import TurnConfig


class TurnCredentials(TypedDict):
    """The ``turn`` member of the ``welcome`` frame."""

    urls: list[str]
    username: str
    credential: str
    ttl_s: int


def turn_credentials(config: TurnConfig, peer_id: str, now: float) -> TurnCredentials:
    """Mint credentials for ``peer_id`` valid ``config.ttl_s`` seconds from ``now`` (Unix seconds)."""
    expiry = int(now) + config.ttl_s
    username = f"{expiry}:{peer_id}"
    mac = hmac.new(config.secret.encode(), username.encode(), hashlib.sha1).digest()
    return {
        "urls": list(config.urls),
        "username": username,
        "credential": base64.b64encode(mac).decode("ascii"),
        "ttl_s": config.ttl_s,
    }
