"""peer/core crypto modules import no I/O or clock module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"asyncio", "aiortc", "aiohttp", "sqlite3", "socket", "time"}
MODULES = [
    "crypto",
    "ids",
    "identity",
    "invite",
    "signal",
    "handshake",
    "chains",
    "envelope",
    "membership",
    "safety",
]
CORE = Path(__file__).resolve().parents[2] / "peer" / "core"


@pytest.mark.parametrize("name", MODULES)
def test_no_io_imports(name: str) -> None:
    tree = ast.parse((CORE / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
