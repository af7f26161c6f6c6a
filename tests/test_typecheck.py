"""The JS type check (``make tsc``, part of ``make lint``) covers web/js and is not vacuous.

tsc comes from node_modules (``npm ci``, run by ``make lint``); without it these tests skip, except in CI
where they fail (CI runs ``make test``, which installs it first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def _tsc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if not TSC.exists():
        if os.environ.get("CI"):
            pytest.fail("node_modules/.bin/tsc missing: make lint runs npm ci first")
        pytest.skip("typescript not installed (run make lint, which runs npm ci)")
    return subprocess.run(
        [str(TSC), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_web_module_is_type_checked() -> None:
    config = json.loads((ROOT / "tsconfig.json").read_text())
    assert config["compilerOptions"]["strict"] is True
    assert config["compilerOptions"]["checkJs"] is True
    assert config["compilerOptions"]["noEmit"] is True
    listed = _tsc("-p", "tsconfig.json", "--listFilesOnly")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    checked = {Path(line).resolve() for line in listed.stdout.splitlines() if "node_modules" not in line}
    modules = set((ROOT / "web" / "js").rglob("*.js"))
    unchecked = sorted(str(p.relative_to(ROOT)) for p in modules - checked)
    assert unchecked == []
    assert len(checked & modules) >= 35


def test_a_jsdoc_type_error_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "web" / "js").mkdir(parents=True)
    shutil.copy(ROOT / "tsconfig.json", tmp_path / "tsconfig.json")
    (tmp_path / "web" / "js" / "bad.js").write_text(
        "/** @param {Uint8Array} b @returns {number} */\nexport const first = (b) => b.at(0) ?? 'none';\n"
    )
    result = _tsc("-p", "tsconfig.json", cwd=tmp_path)
    assert result.returncode != 0
    assert "bad.js" in result.stdout
    assert "TS2322" in result.stdout
