"""The sync core stays sans-IO: no event loop, network, database or wall clock imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"asyncio", "aiortc", "aiohttp", "sqlite3", "socket", "time", "threading", "random"}
CORE = Path(__file__).resolve().parents[2] / "peer" / "core"


@pytest.mark.parametrize("module", ["clock.py", "log.py", "sync.py", "wire.py"])
def test_core_module_imports_nothing_io(module: str) -> None:
    tree = ast.parse((CORE / module).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
