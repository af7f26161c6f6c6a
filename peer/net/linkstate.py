"""What we know, locally, about our link to one neighbour, and how long to wait before dialling it again.

Link states (per neighbour, never sent to anyone; the web client computes the same from getStats()):

```
               dial / offer accepted                 room handshake done (MemberOnline)
 (absent) ──► connecting ──────────────────────────────────────────────► direct | relayed
                 │  ▲                                                         │
   attempt failed│  │next attempt (after the backoff)          link closed    │
                 ▼  │                                                         ▼
             unreachable (reason) ◄────────── attempt failed ─────────── connecting
```

- ``direct``: the selected ICE candidate pair has no relay candidate on either side (host or
  server-reflexive: a path punched through the NATs). ``relayed``: one side of the pair is a TURN relay.
- ``unreachable`` carries the reason of the last failure: ``no-route`` (ICE tried every candidate pair
  and none answered), ``timed-out`` (no answer, or no working path, within the connect timeout; or the
  peer stopped answering), ``handshake-refused`` (a channel opened but the room handshake failed or the
  peer closed it before the handshake finished).
- A member the signaling server does not list has no link state (it is offline).

Backoff (both sides, per neighbour): the k-th consecutive failure makes the next attempt wait
``min(cap, base * 2**(k-1))`` seconds times a jitter factor in ``[1 - jitter, 1 + jitter]``. The
count resets only once a link has stayed up ``stable_s`` seconds, so a peer that completes and then
drops every link cannot reset it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Link(StrEnum):
    CONNECTING = "connecting"
    DIRECT = "direct"
    RELAYED = "relayed"
    UNREACHABLE = "unreachable"


class Reason(StrEnum):
    NO_ROUTE = "no-route"
    TIMED_OUT = "timed-out"
    HANDSHAKE_REFUSED = "handshake-refused"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One neighbour's link as we see it. ``path`` is ``(local, remote)`` candidate types when known."""

    peer: str
    state: Link
    reason: Reason | None = None
    path: tuple[str, str] | None = None
    failures: int = 0
    retry_in_s: float | None = None

    @property
    def reachable(self) -> bool:
        return self.state in (Link.DIRECT, Link.RELAYED)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"peer": self.peer, "state": str(self.state)}
        if self.reason is not None:
            out["reason"] = str(self.reason)
        if self.path is not None:
            out["path"] = list(self.path)
        if self.retry_in_s is not None:
            out["retry_in_s"] = round(self.retry_in_s, 1)
        return out

    def describe(self) -> str:
        """``direct``, ``relayed``, ``connecting…`` or ``unreachable (timed-out)``."""
        if self.state == Link.UNREACHABLE:
            return f"unreachable ({self.reason})" if self.reason else "unreachable"
        return "connecting…" if self.state == Link.CONNECTING else str(self.state)


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """Room event: our link to ``link.peer`` changed state (local knowledge, see ``RoomHandle.links``)."""

    link: LinkInfo

    @property
    def peer(self) -> str:
        return self.link.peer

    def to_json(self) -> dict[str, Any]:
        return {"event": "link", **self.link.to_json()}

    def __str__(self) -> str:
        return f"* link to {self.peer[:8]}: {self.link.describe()}"


def path_state(path: tuple[str, str] | None) -> Link:
    """``relayed`` when either end of the selected pair is a TURN relay, else ``direct``."""
    return Link.RELAYED if path is not None and "relay" in path else Link.DIRECT


@dataclass(frozen=True, slots=True)
class RedialPolicy:
    base_s: float = 1.0
    cap_s: float = 60.0
    jitter: float = 0.25
    stable_s: float = 30.0
    #: an answerer accepts a neighbour's next offer this fraction of the nominal delay after a failure
    #: (the offerer's own jitter can make it early; a lower bound that still caps a hostile offerer)
    accept_factor: float = 0.5

    def nominal(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.cap_s, self.base_s * 2.0 ** (failures - 1)))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        r = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return float(self.nominal(failures) * r)

    def max_attempts(self, window_s: float) -> int:
        """An upper bound of the attempts one side can make in ``window_s`` seconds of back-to-back
        failures, each attempt failing instantly and each delay at its shortest (tests, figures)."""
        t, attempts, failures = 0.0, 0, 0
        shortest = min(1 - self.jitter, self.accept_factor)
        while t <= window_s:
            attempts += 1
            failures += 1
            if failures == 1:  # an answerer does not gate after a single failure (a restart, a blip)
                continue
            step = self.nominal(failures) * shortest
            if step <= 0:
                return 10**9
            t += step
        return attempts
