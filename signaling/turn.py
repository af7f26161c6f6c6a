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
from typing import Any, TypedDict

from signaling.config import SignalingConfig, TurnConfig


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


class IceServer(TypedDict, total=False):
    """One entry of ``welcome.ice_servers``: the shape of WebRTC's ``RTCIceServer``."""

    urls: list[str]
    username: str
    credential: str


def welcome_ice(config: SignalingConfig, peer_id: str, now: float) -> dict[str, Any]:
    """The ICE members of ``welcome`` for ``peer_id``: ``ice_servers`` (STUN, then TURN) and ``turn``.

    ``turn`` (the TURN entry alone, with ``ttl_s``) stays for clients that predate ``ice_servers``.
    Nothing is added when there is no STUN and no TURN to offer.
    """
    servers: list[IceServer] = []
    out: dict[str, Any] = {}
    stun_urls = config.ice_stun_urls
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if config.turn is not None:
        creds = turn_credentials(config.turn, peer_id, now)
        servers.append(
            {"urls": creds["urls"], "username": creds["username"], "credential": creds["credential"]}
        )
        out["turn"] = dict(creds)
    if servers:
        out["ice_servers"] = servers
    return out
