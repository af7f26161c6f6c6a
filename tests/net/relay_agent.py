"""The NAT-suite agent (``tests/net/agent.py``) plus the commands the relay test needs.

Extra commands (JSON lines on stdin)::

    {"cmd": "state", "room": ID}                -> {"ev": "state", "server_present": [...], "online": [...],
                                                    "relayed_out": N, "relayed_in": N}
    {"cmd": "forget", "room": ID, "peer": P}    -> {"ev": "forgot"}   (as if the server never listed P)
    {"cmd": "drop", "room": ID, "peer": P}      -> {"ev": "dropped"}  (close the link, as a timeout would)
    {"cmd": "pair", "room": ID, "peer": P}      -> {"ev": "pair", "local": [ip, port], "remote": [ip, port]}
    {"cmd": "wait-server-gone", "room": ID}     -> {"ev": "server-gone"} once the server no longer lists anyone

``pair`` is the ICE pair aioice nominated for the link to P (the addresses its data uses).
"""

from __future__ import annotations

import asyncio
from typing import Any

from peer.node import Peer
from tests.net.agent import emit, main


def _pair(peer: Peer, room: str, other: str) -> dict[str, Any]:
    mesh = peer.rooms[room].mesh
    link = mesh.links.get(other) if mesh is not None else None
    conn = getattr(
        getattr(getattr(getattr(link, "_pc", None), "sctp", None), "transport", None), "transport", None
    )
    nominated = getattr(getattr(conn, "_connection", None), "_nominated", {}) or {}
    pair = nominated.get(1)
    if pair is None:
        return {"ev": "pair", "local": None, "remote": None}
    local, remote = pair.local_candidate, pair.remote_candidate
    return {"ev": "pair", "local": [local.host, local.port], "remote": [remote.host, remote.port]}


async def relay_commands(peer: Peer, cmd: dict[str, Any]) -> bool:
    what = cmd["cmd"]
    if what == "state":
        h = peer.rooms[cmd["room"]]
        emit(
            {
                "ev": "state",
                "server_present": sorted(h.server_present),
                "online": h.online_members(),
                "relayed_out": h.signals_relayed,
                "relayed_in": h.signals_received_relayed,
            }
        )
    elif what in ("forget", "drop"):
        mesh = peer.rooms[cmd["room"]].mesh
        assert mesh is not None
        if what == "forget":
            mesh.peer_left(cmd["peer"])
        else:
            mesh.drop_link(cmd["peer"])
        emit({"ev": "forgot" if what == "forget" else "dropped"})
    elif what == "wait-server-gone":
        h = peer.rooms[cmd["room"]]
        await h.wait_for(lambda h=h: not h.server_present, 30)
        emit({"ev": "server-gone"})
    elif what == "pair":
        emit(_pair(peer, cmd["room"], cmd["peer"]))
    else:
        return False
    return True


if __name__ == "__main__":
    asyncio.run(main(relay_commands))
