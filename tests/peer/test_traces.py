"""The recorded traces (tests/vectors/traces/) replay byte for byte against the Python core, and the
generator reproduces them exactly. The browser suite replays the same files against the JS core
(tests/browser/test_traces.py)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from peer.tracing import replay, replay_part

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests" / "vectors" / "traces"
NAMES = sorted(p.stem for p in TRACES.glob("*.json"))


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((TRACES / f"{name}.json").read_text())
    return doc


def test_the_traces_cover_the_contract() -> None:
    assert set(NAMES) >= {
        "links_handshake",
        "sync_frames",
        "parking",
        "late_joiner",
        "removal_rotation",
        "expiry_unsend",
        "edit_unsend",
        "receipts_typing_seen",
        "content_types",
        "restart_restore",
        "chain_windows",
        "part_timeline",
        "part_parking",
        "part_presence",
        "part_links",
        "part_admission",
        "part_distribution",
        "relay_reach",
        "relay_full_mesh",
    }


@pytest.mark.parametrize("name", NAMES)
def test_trace_replays_against_python(name: str) -> None:
    doc = _load(name)
    assert (replay_part(doc) if "part" in doc else replay(doc)) == []


def test_a_changed_output_is_caught() -> None:
    """The replay is not vacuous: flip one recorded output byte and it reports that step."""
    doc = _load("parking")
    tampered = copy.deepcopy(doc)
    step = next(s for s in tampered["steps"] if s["frames"])
    step["frames"][0][1] = step["frames"][0][1][:-2] + ("AA" if step["frames"][0][1][-2:] != "AA" else "BB")
    problems = replay(tampered)
    assert len(problems) == 1
    assert "frames differ" in problems[0]


def test_generator_reproduces_the_traces_exactly() -> None:
    spec = importlib.util.spec_from_file_location("gen_traces", ROOT / "scripts" / "gen_traces.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs = module.build()
    assert sorted(docs) == NAMES
    for name, doc in docs.items():
        assert (TRACES / f"{name}.json").read_text() == module.render(doc), name
