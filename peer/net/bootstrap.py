"""Several bootstraps per room: which signaling servers a room uses and who each one lists.

Rules:
- A room's servers are, in order and without duplicates: the invite's (``Invite.servers``), our own
  endpoints (``keep --serve``, the LAN endpoint), then those learned later (LAN discovery, members'
  announcements through :meth:`RoomServers.add`). At most ``MAX_ROOM_SERVERS`` are kept; later ones
  are refused (counted), so a peer that announces 1,000 URLs costs nothing.
- We join the room on **every** server of that list we reach, not on one: two members can exchange
  signaling payloads only through a server both are on, and members may each reach a different subset
  (one server down for some, a LAN endpoint only local members see). Joining all of a short list
  makes any common server enough. Each server gets its own connection and reconnect loop with
  backoff; a server that is down costs one connection attempt per backoff period.
- Presence is kept per server: a peer is *present* (the mesh dials it) while at least one server lists
  it; ``peer-left`` on one server does not drop a peer another server still lists. A server whose
  connection drops lists nobody until we are back in the room there (its ``joined`` list), so a member
  that left while that server was down is not dialled for ever.
- ICE servers (STUN/TURN) come from one server of the room (the first of the list that has us in the
  room). When that server's connection drops, the room switches to another connected server's; with
  none left it drops the STUN URLs on that server's host (``peer.net.reach.without_server_stun``: a dead
  server's embedded STUN would make every gathering wait for its timeout, about 5 s per connection).
- A signaling payload to a peer goes through ONE connected server that lists it (first in list
  order), else through any connected server of the room (a hello may precede the listing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MAX_ROOM_SERVERS: Final = 6


class RoomServers:
    """The ordered, bounded server list of one room and the per-server presence."""

    def __init__(self, servers: Iterable[str] = (), max_servers: int = MAX_ROOM_SERVERS) -> None:
        self._max = max_servers
        self.servers: list[str] = []
        self.refused = 0
        self._present: dict[str, set[str]] = {}
        self.add(servers)

    def add(self, servers: Iterable[str]) -> list[str]:
        """Add servers (kept in order, bounded); return those that are new."""
        new = []
        for s in servers:
            url = s.rstrip("/")
            if url in self.servers:
                continue
            if len(self.servers) >= self._max:
                self.refused += 1
                continue
            self.servers.append(url)
            new.append(url)
        return new

    def remove(self, server: str) -> list[str]:
        """Stop using ``server``; return the peers no other server lists any more."""
        if server not in self.servers:
            return []
        self.servers.remove(server)
        listed = self._present.pop(server, set())
        return sorted(p for p in listed if not self._listed_anywhere(p))

    # -- presence ----------------------------------------------------------------------------------

    def present(self) -> set[str]:
        out: set[str] = set()
        for peers in self._present.values():
            out |= peers
        return out

    def joined(self, server: str, peer: str) -> bool:
        """``peer`` is listed by ``server``; True if it was present nowhere before."""
        was = self._listed_anywhere(peer)
        self._present.setdefault(server, set()).add(peer)
        return not was

    def left(self, server: str, peer: str) -> bool:
        """``server`` no longer lists ``peer``; True if no other server does."""
        self._present.get(server, set()).discard(peer)
        return not self._listed_anywhere(peer)

    def listing(self, server: str, peers: Iterable[str]) -> tuple[list[str], list[str]]:
        """``server`` (re)joined and lists ``peers``: (peers new overall, peers gone overall)."""
        before = self.present()
        self._present[server] = set(peers)
        after = self.present()
        return sorted(after - before), sorted(before - after)

    def route(self, peer: str, connected: Iterable[str]) -> list[str]:
        """Servers to try for a payload to ``peer``: those listing it first, then the others."""
        up = [s for s in self.servers if s in set(connected)]
        listing = [s for s in up if peer in self._present.get(s, ())]
        return listing + [s for s in up if s not in listing]

    def _listed_anywhere(self, peer: str) -> bool:
        return any(peer in peers for peers in self._present.values())
