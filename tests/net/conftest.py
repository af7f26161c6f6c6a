"""Session fixtures of the network suites.

The LAN hosts (``lans``): one topology of hosts on bridges (``tests/net/lan_topology.py``) for every test
that needs plain hosts on a segment: LAN discovery, several bootstraps, signaling relayed through the
mesh. Hosts h1-h5 on bridge 1 (10.77.0.0/24), h9 alone on bridge 2 (10.78.0.0/24). Built once per
session, removed at its end (also on failure); each test starts its own processes (``procs``) and they
are stopped at the end of that test, so tests share the wires and nothing else.

The NAT suite (``net``): one topology, one coturn, two signaling servers, one agent per home.

Rules:
- Everything runs inside network namespaces the fixture builds (``tests/net/topology.py``) and removes at
  the end of the session, also when a test fails; processes are stopped before the namespaces go.
- Servers in the ``server`` namespace: ``ephemesh serve`` with TURN (port 8080, STUN on udp 8080, coturn's
  REST credentials) and the plain default ``ephemesh serve`` (port 8081, STUN only). coturn on 3478.
- Readiness is probed (a printed line, an HTTP answer), never slept for.
- Root is needed (namespaces, iptables); without it, or without ``ip``/``iptables``, the suite is skipped.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.net.lan_topology import Lans, build_lans, skip_reason
from tests.net.topology import SERVER_IP, Topology, build, missing_tools

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TURN_PORT = 3478
WITH_TURN = f"http://{SERVER_IP}:8080"
PLAIN = f"http://{SERVER_IP}:8081"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = missing_tools()
    if missing:
        return f"missing {', '.join(missing)} (Debian packages iproute2, iptables)"
    return None


class Proc:
    """A process whose stdout lines are read by a thread into a queue (JSON lines or text).

    ``seen`` holds the JSON events a reader (``tests.net.test_lan.event``) read past without taking them;
    it lives and dies with this object, never in a table keyed by ``id()`` (a later object can get the
    same id: tests/net/test_harness.py)."""

    def __init__(self, popen: subprocess.Popen[str], name: str) -> None:
        self.popen = popen
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: nothing matching within {timeout}s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(line):
                return line

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


#: bridge -> host numbers of the session's LAN hosts (``lans``)
LAN_HOSTS = {"1": [1, 2, 3, 4, 5], "2": [9]}


@pytest.fixture(scope="session")
def lans() -> Iterator[Lans]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with build_lans(LAN_HOSTS) as topo:
        yield topo


class Procs:
    """Processes of one test on the LAN hosts, stopped at its end (also on failure)."""

    def __init__(self, lans: Lans, tmp: Path) -> None:
        self.lans = lans
        self.tmp = tmp
        self.all: list[Proc] = []

    def start(self, host: str, name: str, args: list[str], *, merge_stderr: bool = False) -> Proc:
        """``args`` on ``host``; stdout is read by line, stderr goes to ``<tmp>/<name>.err``."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("EPHEMESH_PUBLIC_URL", None)
        err = subprocess.STDOUT if merge_stderr else (self.tmp / f"{name}.err").open("w")
        popen = self.lans.popen(
            host,
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=REPO,
        )
        return self.add(Proc(popen, name))

    def add(self, proc: Proc) -> Proc:
        """Stop ``proc`` (started some other way) with the others at the end of the test."""
        self.all.append(proc)
        return proc

    def ephemesh(
        self, host: str, name: str, *args: str, merge_stderr: bool = False, home: str | None = None
    ) -> Proc:
        """``ephemesh ARGS`` on ``host`` with the home ``home-<home or name>``."""
        home = str(self.tmp / f"home-{home or name}")
        return self.start(
            host, name, [str(BIN / "ephemesh"), "--home", home, *args], merge_stderr=merge_stderr
        )

    def capture(self, host: str) -> Proc:
        proc = self.start(
            host,
            f"capture-{host}",
            [str(BIN / "python"), "-m", "tests.net.mdns_capture", self.lans.hosts[host]],
        )
        proc.expect(lambda line: '"ready"' in line, 20)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.all):
            proc.stop()


@pytest.fixture
def procs(lans: Lans, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(lans, tmp_path)
    try:
        yield p
    finally:
        p.stop()


@dataclass
class Agent(Proc):
    """A Python peer in a home (``tests/net/agent.py``), commanded with JSON lines."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def __init__(self, popen: subprocess.Popen[str], name: str) -> None:
        Proc.__init__(self, popen, name)
        self.events = []
        ready = self.next(lambda e: e["ev"] == "ready", 30)
        self.peer_id: str = ready["peer"]

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(cmd) + "\n")
        self.popen.stdin.flush()

    def next(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event (seen before or arriving within ``timeout``) matching ``predicate``."""
        for seen in self.events:
            if predicate(seen):
                self.events.remove(seen)
                return seen
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.name}: no matching event within {timeout}s; seen {self.events[-8:]}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            try:
                ev: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if predicate(ev):
                return ev
            self.events.append(ev)
            del self.events[:-500]

    def join(self, invite: str) -> str:
        self.send({"cmd": "join", "invite": invite})
        return str(self.next(lambda e: e["ev"] == "joined", 30)["room"])


@dataclass
class Net:
    topo: Topology
    turn_secret: str
    servers: list[Proc]
    agents: dict[str, Agent]
    figures: dict[str, float]

    def new_invite(self, server: str = WITH_TURN) -> str:
        from peer.core.invite import Invite

        return Invite.new(server).url()

    def nat(self, mode: str, *, udp_blocked: bool = False) -> None:
        self.topo.set_nat("symmetric" if mode == "symmetric" else "cone")
        self.topo.block_udp_between_homes(udp_blocked)


_PROBE = """
import os, socket, sys
for _ in range(100):
    tx = os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(b"\\x00\\x01\\x00\\x00\\x21\\x12\\xa4\\x42" + tx, (sys.argv[1], int(sys.argv[2])))
        try:
            if s.recv(2048)[8:20] == tx:
                sys.exit(0)
        except OSError:
            pass
sys.exit(1)
"""


def stun_probe(topo: Topology, port: int, role: str = "home-a") -> None:
    """Block until ``SERVER_IP:port`` answers a STUN Binding request sent from ``role`` (20 s at most)."""
    res = subprocess.run(
        topo.cmd(role, [str(BIN / "python"), "-c", _PROBE, SERVER_IP, str(port)]), check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"no STUN answer from {SERVER_IP}:{port}")


def start_agent(topo: Topology, home: str) -> Agent:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("EPHEMESH_ICE_POLICY", None)
    popen = topo.popen(
        home,
        [str(BIN / "python"), "-m", "tests.net.agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=env,
    )
    return Agent(popen, home)


@pytest.fixture(scope="session")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("nat")
    secret = secrets.token_hex(16)
    procs: list[Proc] = []

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (e.g. `timeout`): unwind, so the namespaces are removed

    previous = signal.signal(signal.SIGTERM, interrupted)
    with build() as topo:
        atexit.register(topo.close)  # and if unwinding stops short, at interpreter exit
        try:
            turn = topo.popen(
                "server",
                [
                    "turnserver",
                    "-n",
                    f"--listening-ip={SERVER_IP}",
                    f"--relay-ip={SERVER_IP}",
                    f"--listening-port={TURN_PORT}",
                    "--min-port=49160",
                    "--max-port=49400",
                    "--use-auth-secret",
                    f"--static-auth-secret={secret}",
                    "--realm=ephemesh.test",
                    "--fingerprint",
                    "--no-tls",
                    "--no-dtls",
                    "--no-cli",
                    f"--log-file={work / 'turn.log'}",
                    "--simple-log",
                    f"--userdb={work / 'turndb'}",
                    # what docs/deploy.md tells admins: never relay into private networks
                    "--denied-peer-ip=10.0.0.0-10.255.255.255",
                    "--denied-peer-ip=192.168.0.0-192.168.255.255",
                    "--no-multicast-peers",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            procs.append(Proc(turn, "coturn"))
            env = dict(os.environ, EPHEMESH_TURN_SECRET=secret)
            env.pop("EPHEMESH_PUBLIC_URL", None)
            serve = str(BIN / "ephemesh")
            for port, extra in (
                (8080, ["--turn-url", f"turn:{SERVER_IP}:{TURN_PORT}?transport=udp"]),
                (8081, []),
            ):
                popen = topo.popen(
                    "server",
                    [serve, "serve", "--host", "0.0.0.0", "--port", str(port), "--no-invite", *extra],  # noqa: S104
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                    cwd=work,
                )
                proc = Proc(popen, f"serve:{port}")
                procs.append(proc)
                line = proc.expect(lambda s: "web client on" in s, 30)
                assert f"http://{SERVER_IP}:{port}" in line, line  # never 127.0.0.1 for a wildcard bind
            for port in (TURN_PORT, 8080, 8081):  # coturn and both embedded STUN responders answer
                stun_probe(topo, port)
            agents = {home: start_agent(topo, home) for home in ("home-a", "home-b")}
            procs += agents.values()
            figures: dict[str, float] = {}
            yield Net(topo, secret, procs, agents, figures)
            if figures:
                out = REPO / "test-artifacts"
                out.mkdir(exist_ok=True)
                (out / "nat-figures.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
                print("\ntime to first message across two NATs (s):")
                for key, value in sorted(figures.items()):
                    print(f"  {key:48s} {value:6.2f}")
        finally:
            for proc in reversed(procs):
                proc.stop()
            signal.signal(signal.SIGTERM, previous)
            atexit.unregister(topo.close)
