"""ICE while the signaling server is down (signaling through the mesh, PROTOCOL.md).

``ephemesh serve`` answers STUN itself, on its own host: when its signaling connection is lost, that
responder is most likely gone too, and aioice would spend its whole STUN timeout (~5 s, per connection
and per side) gathering against it before an offer or an answer can leave. While the server is down we
therefore drop the ``stun:``/``stuns:`` URLs on the signaling server's host; TURN entries stay (coturn
usually runs apart and may still be up). The full configuration comes back with the next ``welcome``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from peer.net.rtc import IceConfig


def _stun_host(url: str) -> str | None:
    if not url.startswith(("stun:", "stuns:")):
        return None
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("["):
        return rest[1 : rest.find("]")].lower() if "]" in rest else None
    return rest.rsplit(":", 1)[0].lower() if rest.count(":") == 1 else rest.lower()


def without_server_stun(ice: IceConfig, server: str) -> IceConfig:
    """``ice`` minus the STUN URLs on ``server``'s host (entries left with no URL are dropped)."""
    host = (urlsplit(server).hostname or "").lower()
    entries = [ice] if isinstance(ice, dict) else list(ice or [])
    out: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list):
            continue
        kept = [u for u in urls if not (isinstance(u, str) and _stun_host(u) == host)]
        if kept:
            out.append({**entry, "urls": kept})
    return out
