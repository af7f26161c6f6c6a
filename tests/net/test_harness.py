"""The network suites' own harness: what a test reads of a process is that process's output only.

``event(proc, pred)`` keeps the JSON events it read past (they did not match) for later calls. That
state used to live in a module-level dict keyed by ``id(proc)``; CPython reuses a freed object's
address, so a process started in a later test could inherit a dead process's leftovers. In a full run,
``tests/net/test_bootstraps.py`` leaves listeners' ``ready`` events unread; the first LAN test then took
one as alice's and waited 40 s for bob to see a peer id from another test ("alice saw bob online, bob
never saw alice"). Needs no root: the processes are ``printf``.
"""

from __future__ import annotations

import json
import subprocess

from tests.net.conftest import Proc
from tests.net.test_lan import event


def _printing(*events: dict[str, object]) -> Proc:
    text = "".join(json.dumps(e) + "\n" for e in events)
    popen = subprocess.Popen(["printf", "%s", text], stdout=subprocess.PIPE, text=True)
    proc = Proc(popen, "printer")
    popen.wait(timeout=30)
    proc._thread.join(timeout=30)  # every line is queued
    return proc


def test_a_process_never_sees_events_a_dead_process_left_unread() -> None:
    for i in range(20):  # CPython gives a new object a freed one's address most of the time
        proc = _printing({"event": "ready", "peer": f"p{i}"}, {"event": "online", "peer": "x"})
        got = event(proc, lambda e: e["event"] == "online", 5)  # "ready" is read past and kept
        assert got["peer"] == "x"
        proc.popen.stdout.close()  # type: ignore[union-attr]
        del proc, got
        fresh = _printing({"event": "ready", "peer": f"q{i}"})
        assert event(fresh, lambda e: e["event"] == "ready", 5)["peer"] == f"q{i}"
        fresh.popen.stdout.close()  # type: ignore[union-attr]
        del fresh


def test_events_read_past_are_still_returned_later() -> None:
    proc = _printing({"event": "ready", "peer": "a"}, {"event": "online", "peer": "b"})
    assert event(proc, lambda e: e["event"] == "online", 5)["peer"] == "b"
    assert event(proc, lambda e: e["event"] == "ready", 5)["peer"] == "a"  # kept, in order
    assert proc.popen.stdout is not None
    proc.popen.stdout.close()
