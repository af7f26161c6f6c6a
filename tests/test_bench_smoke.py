"""Smoke test: every benchmark entry point runs end to end with tiny parameters, so the scripts cannot rot.

It asserts shapes (a result file with the expected keys, a rendered page), never times.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench import cost, fanout, mesh, report, sigcap, transfer, wan


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def read(results: Path, name: str) -> dict[str, object]:
    data = json.loads((results / f"{name}.json").read_text())
    assert isinstance(data, dict)
    assert data["name"] == name
    return data


def test_fanout_runs(results: Path) -> None:
    fanout.main(
        [
            "--sizes",
            "2",
            "--messages",
            "3",
            "--rate-peers",
            "2",
            "--rate-messages",
            "5",
            "--out",
            str(results),
            "--profile",
            str(results / "profile.txt"),
        ]
    )
    data = read(results, "fanout")
    lat = data["latency"]
    assert isinstance(lat, dict)
    assert set(lat) == {"ephemesh", "ws-relay", "raw-aiortc"}
    assert all(lat[s]["2"]["n"] == 3 for s in lat)
    assert data["profile"]
    assert (results / "profile.txt").exists()


def test_mesh_runs(results: Path) -> None:
    mesh.main(["--sizes", "2", "--backlog", "3", "--repeat", "1", "--out", str(results)])
    data = read(results, "mesh")
    assert "2" in data["formation"]  # type: ignore[operator]
    assert data["catch_up"]["backlog"] == 3  # type: ignore[index]


def test_cost_runs(results: Path) -> None:
    cost.main(["--peers", "2", "--out", str(results)])
    data = read(results, "cost")
    assert data["ephemesh"]["connections"] == 1  # type: ignore[index]


def test_sigcap_runs(results: Path) -> None:
    sigcap.main(
        ["--connections", "10", "--pairs", "1", "--seconds", "0.2", "--no-netns", "--out", str(results)]
    )
    data = read(results, "sigcap")
    assert data["ephemesh"]["held"]["held"] == 10  # type: ignore[index]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and ip netns")
def test_wan_runs(results: Path) -> None:
    wan.main(["--peers", "2", "--messages", "4", "--interval", "0.01", "--out", str(results)])
    data = read(results, "wan")
    assert "ephemesh" in data or "skipped" in data


def test_transfer_runs(results: Path) -> None:
    transfer.main(["--size-mb", "0.2", "--pings", "3", "--interval-ms", "1", "--out", str(results)])
    data = read(results, "transfer")
    assert data["size_bytes"] == 200_000
    assert data["chat_rtt_idle"]["n"] == 3  # type: ignore[index]
    assert data["chat_rtt_during_transfer"]["n"] >= 1  # type: ignore[index]
    assert data["throughput_MBps"] > 0  # type: ignore[operator]


def test_report_renders(results: Path, tmp_path: Path) -> None:
    page = report.main(["--results", str(results), "--docs", str(tmp_path)])
    text = page.read_text()
    assert "| room latency, 2 peers" in text
    assert "How the processes were laid out" in text
