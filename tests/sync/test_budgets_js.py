"""The JS sync engine keeps the same per-neighbour budgets as the Python one (issue 13 items 4 and 7).

Runs ``tests/sync/js/budgets.mjs`` (the hostile-neighbour floods of test_budgets.py against
web/js/core/sync.js) with node and checks what it measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "sync" / "js" / "budgets.mjs"


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    run = subprocess.run(
        [node, "--no-warnings", str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def test_js_hello_flood_keeps_wants_bounded(measured: dict[str, Any]) -> None:
    hello = measured["hello"]
    assert hello["maxInflight"] <= hello["cap"]
    assert hello["afterEmptyHello"] == 0


def test_js_want_flood_serves_once_per_window(measured: dict[str, Any]) -> None:
    assert measured["want"] == {"total": 500, "retry": 500}


def test_js_tombstone_flood_is_refused_and_bounded(measured: dict[str, Any]) -> None:
    tombs = measured["tombs"]
    assert tombs["stored"] == tombs["cap"]  # only tombstones of the member's keys, and only up to the cap
    assert tombs["foreign"] == tombs["cap"]
    assert tombs["helloSenders"] == [tombs["real"]]
    assert tombs["unservable"] == 0
    assert tombs["remoteHaveRanges"] <= 1
    assert tombs["newcomer"] == 5


def test_js_tombstones_of_our_own_unused_seqs_are_dropped(measured: dict[str, Any]) -> None:
    """As test_budgets.py::test_tombstones_of_our_own_unused_seqs_are_dropped."""
    assert measured["ownTombs"] == {"stored": 0, "published": 3}


def test_js_check_floods_stay_bounded(measured: dict[str, Any]) -> None:
    """As tests/sync/test_equivocation_check.py: bogus digests start one check at most per sender and
    window, hash requests are served within the page and item budgets."""
    check = measured["check"]
    assert check["asked"] == 1
    assert check["maxChecks"] <= check["capChecks"]
    assert 0 < check["pages"] <= check["capPages"]
    assert check["items"] == check["capItems"]
    assert check["computed"] == check["capDigests"]


def test_js_membership_recompute_checks_each_op_once() -> None:
    """web/js/core/membership.js: the room recomputes from every op on each new op; before, each
    recompute checked every op's crypto again (20 ops: 420 WebCrypto verifies, O(n²))."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    script = ROOT / "tests" / "sync" / "js" / "membership.mjs"
    run = subprocess.run(
        [node, "--no-warnings", str(script), "30"], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["members"] == 30
    assert got["verifies"] <= 2 * 30  # the signature and the prekey, once per op


def test_js_fake_members_get_sender_keys_paced() -> None:
    """web/js/core/room/distribution.js: 40 fake self-ADDs relayed by A's neighbour: A seals its chain to
    ``PER_WINDOW`` (32) of them at once (was all 40), the other 8 in the next window; a rotation reaches
    the served ones at once."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    script = ROOT / "tests" / "sync" / "js" / "fake_members.mjs"
    run = subprocess.run(
        [node, "--no-warnings", str(script), "40"], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    # then a rotation: b and the 32 served at once; the next window: the 8 others, each both chains
    assert got == {"members": 42, "sealed": 32, "waiting": 8, "atRotation": 33, "sealedLater": 32 + 33 + 16}
