"""Hosts on Ethernet segments ("LANs") in network namespaces, for LAN discovery tests (no router).

```
 lan 1 (10.77.0.0/24): host-1 .1, host-2 .2, host-3 .3 ... ── bridge br1 ─┐
                                                                         ├ namespace em<tag>-sw
 lan 2 (10.78.0.0/24): host-9 .9 ────────────────────────── bridge br2 ─┘ (two bridges, not joined)
```

Rules:
- Namespaces ``em<tag>-sw`` (the switch: one Linux bridge per LAN) and ``em<tag>-h<n>`` (a host with one
  veth ``eth0``, its peer enslaved to its LAN's bridge). The tag holds the pid (``new_tag``), so parallel
  runs never collide and ``python -m tests.net.topology --clean-stale`` finds leftovers.
- Each host routes ``224.0.0.0/4`` on ``eth0`` (mDNS needs a multicast route or a default route). Bridges
  forward multicast between their ports (no IGMP snooping), never between the two bridges.
- :meth:`Lans.close` deletes every namespace; :func:`build_lans` runs it on every exit path.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.net.topology import _die_with_parent, _run, new_tag


@dataclass
class Lans:
    tag: str
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> IPv4 address
    _created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"em{self.tag}-{role}"

    def cmd(self, host: str, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *args]

    def popen(self, host: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` in ``host``'s namespace; killed if this process dies first."""
        return subprocess.Popen(self.cmd(host, args), preexec_fn=_die_with_parent, **kwargs)

    def _add_ns(self, role: str) -> None:
        name = self.ns(role)
        _run(["ip", "netns", "add", name])
        self._created.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def build(self, lans: dict[str, list[int]]) -> None:
        """``lans``: bridge name -> host numbers, e.g. ``{"1": [1, 2, 3], "2": [9]}``."""
        self._add_ns("sw")
        sw = self.ns("sw")
        for lan, numbers in lans.items():
            _run(["ip", "-n", sw, "link", "add", f"br{lan}", "type", "bridge"])
            _run(["ip", "-n", sw, "link", "set", f"br{lan}", "type", "bridge", "mcast_snooping", "0"])
            _run(["ip", "-n", sw, "link", "set", f"br{lan}", "up"])
            for n in numbers:
                host = f"h{n}"
                self._add_ns(host)
                addr = f"10.{76 + int(lan)}.0.{n}"
                port = f"p{n}"
                _run(
                    [
                        "ip",
                        "-n",
                        sw,
                        "link",
                        "add",
                        port,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        "eth0",
                        "netns",
                        self.ns(host),
                    ]
                )
                _run(["ip", "-n", sw, "link", "set", port, "master", f"br{lan}"])
                _run(["ip", "-n", sw, "link", "set", port, "up"])
                _run(["ip", "-n", self.ns(host), "addr", "add", f"{addr}/24", "dev", "eth0"])
                _run(["ip", "-n", self.ns(host), "link", "set", "eth0", "up"])
                _run(["ip", "-n", self.ns(host), "route", "add", "224.0.0.0/4", "dev", "eth0"])
                self.hosts[host] = addr

    def close(self) -> None:
        while self._created:
            name = self._created.pop()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def skip_reason() -> str | None:
    import os
    import shutil

    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "missing ip (Debian package iproute2)"
    return None


@contextlib.contextmanager
def build_lans(lans: dict[str, list[int]]) -> Iterator[Lans]:
    topo = Lans(new_tag())
    try:
        topo.build(lans)
        yield topo
    finally:
        topo.close()
