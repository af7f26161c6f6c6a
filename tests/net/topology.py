"""Two homes behind two NAT routers and a server on the "internet", in Linux network namespaces.

```
 home A 10.1.0.2 ── router A ──(198.51.100.2)── inet ──(203.0.113.2)── router B ── home B 10.2.0.2
                    MASQUERADE                   │                     MASQUERADE
                                             server 192.0.2.10  (signaling + STUN, coturn)
```

Rules:
- Six namespaces named ``em<tag>-<role>`` (the tag holds the pid and a random part, so parallel runs never
  collide). veth pairs are created directly inside the namespaces (no name ever exists in the root
  namespace). Only addresses inside these namespaces are used: RFC 5737 documentation ranges for the
  "internet", RFC 1918 for the homes.
- ``inet`` routes between the three public segments; the routers forward for their home and masquerade
  on their WAN side; inbound traffic to a home is accepted only for connections the home opened
  (``conntrack ESTABLISHED,RELATED``), like a home router.
- NAT behaviour is switched at run time without rebuilding: ``cone`` (plain ``MASQUERADE``: Linux keeps
  the source port, so a mapping does not depend on the destination and hole punching works) or
  ``symmetric`` (``MASQUERADE --random-fully``: a fresh random port per destination, so a server-reflexive
  address is useless towards the other home). ``block_udp_between_homes`` drops UDP between the two WAN
  segments in ``inet``, so only a relay through the server segment can carry the data.
- :meth:`Topology.close` deletes every namespace (which deletes the veths); it runs on every exit path of
  :func:`build` and is idempotent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NatMode = Literal["cone", "symmetric"]

SERVER_IP = "192.0.2.10"
HOME_IP = {"a": "10.1.0.2", "b": "10.2.0.2"}
WAN_IP = {"a": "198.51.100.2", "b": "203.0.113.2"}
_WAN_NET = {"a": "198.51.100.0/24", "b": "203.0.113.0/24"}


def missing_tools() -> list[str]:
    """Binaries the harness needs that are not installed (Debian: iproute2, iptables)."""
    return [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]


def _run(args: Sequence[str]) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")


@dataclass
class Topology:
    tag: str
    mode: NatMode = "cone"
    udp_blocked: bool = False
    _created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        """The namespace name of ``role``: ``inet``, ``server``, ``router-a``, ``home-a``, ..."""
        return f"em{self.tag}-{role}"

    @property
    def home_a(self) -> str:
        return self.ns("home-a")

    @property
    def home_b(self) -> str:
        return self.ns("home-b")

    @property
    def server(self) -> str:
        return self.ns("server")

    # -- running things inside ---------------------------------------------------------------------

    def cmd(self, role_or_ns: str, args: Sequence[str]) -> list[str]:
        """``args`` prefixed to run inside a namespace (a role name or a full namespace name)."""
        ns = role_or_ns if role_or_ns.startswith(f"em{self.tag}-") else self.ns(role_or_ns)
        return ["ip", "netns", "exec", ns, *args]

    def sh(self, role: str, *args: str) -> None:
        _run(self.cmd(role, args))

    def popen(self, role: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` inside ``role``'s namespace; it is killed if this process dies first."""
        return subprocess.Popen(self.cmd(role, args), preexec_fn=_die_with_parent, **kwargs)

    # -- building -------------------------------------------------------------------------------

    def _add_ns(self, role: str) -> None:
        name = self.ns(role)
        _run(["ip", "netns", "add", name])
        self._created.append(name)
        self.sh(role, "ip", "link", "set", "lo", "up")

    def _veth(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        _run(
            [
                "ip",
                "-n",
                self.ns(a),
                "link",
                "add",
                a_if,
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                self.ns(b),
            ]
        )
        for role, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            self.sh(role, "ip", "addr", "add", addr, "dev", ifname)
            self.sh(role, "ip", "link", "set", ifname, "up")

    def build(self) -> None:
        for role in ("inet", "server", "router-a", "router-b", "home-a", "home-b"):
            self._add_ns(role)
        self._veth("inet", "srv0", "192.0.2.1/24", "server", "eth0", f"{SERVER_IP}/24")
        self.sh("server", "ip", "route", "add", "default", "via", "192.0.2.1")
        self.sh("inet", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for side in ("a", "b"):
            router, home = f"router-{side}", f"home-{side}"
            wan_gw = WAN_IP[side].rsplit(".", 1)[0] + ".1"
            lan_net = HOME_IP[side].rsplit(".", 1)[0]
            self._veth("inet", f"wan{side}0", f"{wan_gw}/24", router, "wan", f"{WAN_IP[side]}/24")
            self._veth(router, "lan", f"{lan_net}.1/24", home, "eth0", f"{HOME_IP[side]}/24")
            self.sh(router, "ip", "route", "add", "default", "via", wan_gw)
            self.sh(home, "ip", "route", "add", "default", "via", f"{lan_net}.1")
            self.sh(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # a home router: only replies come in from the WAN. Unsolicited packets to the router itself
            # are dropped too, which also keeps them out of conntrack (an entry is confirmed only when
            # its packet survives the filter): otherwise a peer's first hole-punching packet would claim
            # the NAT port the home is about to use, and Linux would remap the home's next packet.
            self.sh(
                router,
                "iptables",
                "-A",
                "INPUT",
                "-i",
                "wan",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            )
            self.sh(router, "iptables", "-A", "INPUT", "-i", "wan", "-j", "DROP")
            self.sh(router, "iptables", "-P", "FORWARD", "DROP")
            self.sh(router, "iptables", "-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT")
            self.sh(
                router,
                *("iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan"),
                *("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
            )
        self.set_nat("cone")

    def set_nat(self, mode: NatMode) -> None:
        """Make both routers ``cone`` or ``symmetric`` NATs (affects new mappings only)."""
        for side in ("a", "b"):
            router = f"router-{side}"
            self.sh(router, "iptables", "-t", "nat", "-F", "POSTROUTING")
            extra = ["--random-fully"] if mode == "symmetric" else []
            self.sh(
                router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", *extra
            )
        self.mode = mode

    def block_udp_between_homes(self, blocked: bool) -> None:
        """Drop (or stop dropping) every UDP datagram between the two WAN segments."""
        self.sh("inet", "iptables", "-F", "FORWARD")
        if blocked:
            for src, dst in ((_WAN_NET["a"], _WAN_NET["b"]), (_WAN_NET["b"], _WAN_NET["a"])):
                self.sh("inet", "iptables", "-A", "FORWARD", "-p", "udp", "-s", src, "-d", dst, "-j", "DROP")
        self.udp_blocked = blocked

    def close(self) -> None:
        while self._created:
            name = self._created.pop()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent (the test run) dies, so a killed run (a CI
    timeout's SIGKILL) leaves no coturn or server behind; ``ip netns exec`` keeps it across exec."""
    _PRCTL(1, 9)  # PR_SET_PDEATHSIG, SIGKILL (resolved before fork: no dlopen in the child)


def stale_namespaces() -> list[str]:
    """Namespaces of this harness whose creating process is gone (a run killed before its teardown)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    stale = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        tag = name[2:].split("-", 1)[0] if name.startswith("em") and "-" in name else ""
        pid = tag[:-4]
        if pid.isdigit() and not any(Path(f"/proc/{p}").exists() for p in _pids_ending(int(pid))):
            stale.append(name)
    return stale


def _pids_ending(pid_mod: int) -> list[int]:
    return [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) % 100000 == pid_mod
    ]


def clean_stale() -> list[str]:
    """Kill what runs in stale namespaces and delete them; returns their names. Run by hand:
    ``python -m tests.net.topology --clean-stale`` (never automatically: they may hold someone's
    processes)."""
    names = stale_namespaces()
    for name in names:
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return names


def new_tag() -> str:
    """A short tag unique to this process and run (namespace names stay well under the limits)."""
    return f"{os.getpid() % 100000}{secrets.token_hex(2)}"


@contextlib.contextmanager
def build() -> Iterator[Topology]:
    """Build the topology; always tear it down (also when building fails half way)."""
    topo = Topology(new_tag())
    try:
        topo.build()
        yield topo
    finally:
        topo.close()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--clean-stale"]:
        print("\n".join(clean_stale()) or "nothing stale")
    else:
        print("usage: python -m tests.net.topology --clean-stale")
