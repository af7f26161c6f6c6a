"""Home directory, identity file permissions and the CLI's offline commands (real subprocesses)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from peer.cli import parse_duration
from peer.core.invite import Invite
from peer.home import HomeError, load_or_create_identity, resolve_home


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peer.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_identity_created_once_with_0600(tmp_path: Path) -> None:
    home = resolve_home(tmp_path / "h")
    ident = load_or_create_identity(home)
    mode = stat.S_IMODE(os.stat(home / "identity.key").st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert load_or_create_identity(home).peer_id == ident.peer_id


def test_corrupt_identity_is_a_clear_error(tmp_path: Path) -> None:
    home = resolve_home(tmp_path)
    (home / "identity.key").write_bytes(b"garbage")
    with pytest.raises(HomeError, match="corrupt"):
        load_or_create_identity(home)
    r = run_cli("id", home=home)
    assert r.returncode == 1
    assert r.stderr.startswith("ephemesh: ")
    assert "Traceback" not in r.stderr


def test_env_home_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPHEMESH_HOME", str(tmp_path / "env-home"))
    assert resolve_home(None) == tmp_path / "env-home"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("7d", 604800), ("45", 45), ("1.5m", 90)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "0s", "-5s", "400d"])
def test_parse_duration_rejects(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_cli_id_and_room_new(tmp_path: Path) -> None:
    r = run_cli("id", home=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("peer id:")
    assert len(lines[0].split()[-1]) == 32
    r2 = run_cli("id", home=tmp_path)
    assert r2.stdout == r.stdout
    r = run_cli("room", "new", "--server", "http://127.0.0.1:9999", "--ttl", "1h", home=tmp_path)
    assert r.returncode == 0, r.stderr
    invite = Invite.parse(r.stdout.strip())
    assert invite.server == "http://127.0.0.1:9999"
    assert invite.ttl_s == 3600
    assert invite.room_id not in r.stdout  # the fragment carries the secret, not the room id


def test_cli_bad_invite_is_one_line(tmp_path: Path) -> None:
    r = run_cli("send", "http://127.0.0.1:9/#nonsense", "hi", "--timeout", "1", home=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "invite" in r.stderr


def test_cli_usage_error_exits_2(tmp_path: Path) -> None:
    r = run_cli("send", home=tmp_path)
    assert r.returncode == 2
