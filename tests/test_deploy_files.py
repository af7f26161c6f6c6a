"""The deployment files hold together: every compose service has a healthcheck, every variable they use
is in .env.example, the image runs as a non-root user, Caddy proxies to the signaling service, and the
commands they run parse with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from peer.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_every_service_has_a_healthcheck_and_restarts() -> None:
    services = compose()["services"]
    assert {"caddy", "signaling", "coturn", "keeper"} <= set(services)
    for name, svc in services.items():
        assert "test" in svc.get("healthcheck", {}), name
        assert svc.get("restart") == "unless-stopped", name


def test_every_variable_is_in_the_env_example() -> None:
    env = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{(\w+)\}", (REPO / "docker-compose.yml").read_text()))
    used |= set(re.findall(r"\{\$(\w+)\}", (REPO / "Caddyfile.example").read_text()))
    assert used, "the files use no variable?"
    assert used <= set(env), used - set(env)
    assert env["EPHEMESH_PUBLIC_URL"].startswith("https://")


def test_the_image_runs_as_a_non_root_user() -> None:
    lines = [
        ln.split() for ln in (REPO / "Dockerfile").read_text().splitlines() if ln and not ln.startswith("#")
    ]
    users = [ln[1] for ln in lines if ln[0] == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(ln[0] == "HEALTHCHECK" for ln in lines)


def test_caddy_proxies_to_the_signaling_service() -> None:
    caddy = (REPO / "Caddyfile.example").read_text()
    assert "reverse_proxy signaling:8080" in caddy
    assert "respond /metrics 404" in caddy


@pytest.mark.parametrize("service", ["signaling"])
def test_service_commands_parse_with_the_cli(service: str) -> None:
    command = [
        c.replace("${EPHEMESH_TURN_HOST}", "turn.example") for c in compose()["services"][service]["command"]
    ]
    assert command[0] == "ephemesh"
    args = build_parser().parse_args(command[1:])
    assert args.metrics == "off"
    assert args.turn_url[0].endswith("?transport=udp")  # the Python peer uses the first TURN URL


def test_dockerfile_cmd_parses_with_the_cli() -> None:
    cmd = next(ln for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("CMD "))
    argv = yaml.safe_load(cmd[4:])
    assert argv[0] == "ephemesh"
    build_parser().parse_args(argv[1:])
    assert shlex.join(argv)
