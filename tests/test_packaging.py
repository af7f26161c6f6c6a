"""``pip install .`` outside the checkout serves the web client (``web/`` ships as ``ephemesh_web``).

A wheel is built from the checkout and installed into a fresh venv in a temporary directory (its
dependencies are borrowed from this venv through a ``.pth`` path, so nothing is downloaded); then
``ephemesh serve`` runs from that directory, away from the sources, and must serve ``index.html`` at ``/``
and the JavaScript modules it loads. The test page is not served by ``serve`` (production default).
"""

from __future__ import annotations

import site
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

import pytest

from tests.fixtures_services import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_installed_wheel_serves_the_web_client(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheel = next(wheels.glob("ephemesh-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # dependencies (aiortc, aiohttp, ...) from this venv; the ephemesh package itself from the wheel only
    (Path(purelib) / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import peer, ephemesh_web; print(peer.__file__); print(list(ephemesh_web.__path__)[0])",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert all(str(env_dir) in p for p in where), where  # not the checkout

    port = free_port()
    proc = subprocess.Popen(
        [str(env_dir / "bin" / "ephemesh"), "serve", "--port", str(port), "--no-invite", "--no-stun"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        assert f"http://127.0.0.1:{port}" in line, line
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/", timeout=10) as r:  # noqa: S310 - our own loopback server
            page = r.read().decode()
        assert "<title>ephemesh</title>" in page
        with urllib.request.urlopen(base + "/js/main.js", timeout=10) as r:  # noqa: S310
            assert b"App" in r.read()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "/test.html", timeout=10)  # noqa: S310
    finally:
        proc.terminate()
        proc.wait(timeout=10)
