"""``python -m signaling``: run the signaling server.

Flags (see ``docs/deploy.md``)::

    --host H --port P [--web-root DIR | --no-web] [--public-url URL]
    [--stun-port P | --no-stun] [--stun-url URL ...] [--metrics same|off|HOST:PORT] [--test-pages]
    --redis URL [--redis-prefix P] [--redis-heartbeat S] [--redis-ttl S]   share rooms with other instances
    --turn-url URL (repeatable) --turn-secret S [--turn-ttl S]             mint coturn REST credentials

The TURN secret may come from the environment variable ``EPHEMESH_TURN_SECRET`` instead of the command
line (which other local users can read in the process list); ``EPHEMESH_PUBLIC_URL`` is the default of
``--public-url``. ``ephemesh serve`` takes the same network options (:func:`add_network_args`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from signaling.app import run, start_server
from signaling.config import SignalingConfig, TurnConfig, default_web_root

__all__ = ["add_network_args", "build_config", "main", "network_options", "run", "start_server"]

_DEFAULT_WEB = default_web_root()
TURN_SECRET_ENV = "EPHEMESH_TURN_SECRET"  # noqa: S105 - the name of a variable, not a secret
PUBLIC_URL_ENV = "EPHEMESH_PUBLIC_URL"


def add_network_args(parser: argparse.ArgumentParser) -> None:
    """Options about how peers reach this server (shared with ``ephemesh serve``)."""
    net = parser.add_argument_group("reachability (see docs/deploy.md)")
    net.add_argument(
        "--public-url",
        metavar="URL",
        help=f"URL users reach this server by, for invites (or ${PUBLIC_URL_ENV})",
    )
    net.add_argument(
        "--stun-port", type=int, metavar="P", help="UDP port of the STUN responder (default: --port)"
    )
    net.add_argument("--no-stun", action="store_true", help="do not answer STUN binding requests")
    net.add_argument(
        "--stun-url",
        action="append",
        default=[],
        metavar="URL",
        help="STUN server to hand out instead (repeat)",
    )
    net.add_argument(
        "--metrics", default="same", metavar="WHERE", help="/metrics: same (main port), off, or HOST:PORT"
    )
    net.add_argument("--test-pages", action="store_true", help="also serve the in-browser test page")


def network_options(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The :class:`SignalingConfig` fields :func:`add_network_args` sets."""
    return {
        "public_url": (args.public_url or env.get(PUBLIC_URL_ENV) or "").rstrip("/") or None,
        "stun": not args.no_stun,
        "stun_port": args.stun_port,
        "stun_urls": tuple(args.stun_url),
        "metrics": args.metrics,
        "test_pages": args.test_pages,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m signaling", description="ephemesh signaling server")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080, 0 = any)")
    parser.add_argument(
        "--web-root",
        type=Path,
        default=_DEFAULT_WEB,
        help="directory served at / (default: the bundled web client)",
    )
    parser.add_argument("--no-web", action="store_true", help="serve no static files")
    scale = parser.add_argument_group("scale-out over Redis")
    scale.add_argument("--redis", metavar="URL", help="redis://host:port/db shared by all instances")
    scale.add_argument("--redis-prefix", default="ephemesh:sig:", help="key/channel prefix")
    scale.add_argument("--redis-heartbeat", type=float, default=1.0, metavar="S", help="presence refresh (s)")
    scale.add_argument("--redis-ttl", type=float, default=5.0, metavar="S", help="presence lifetime (s)")
    turn = parser.add_argument_group("TURN (coturn use-auth-secret)")
    turn.add_argument(
        "--turn-url", action="append", default=[], metavar="URL", help="turn:host:3478 (repeat)"
    )
    turn.add_argument("--turn-secret", help=f"coturn static-auth-secret (or ${TURN_SECRET_ENV})")
    turn.add_argument("--turn-ttl", type=int, default=3600, metavar="S", help="credential lifetime (s)")
    add_network_args(parser)
    return parser


def build_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> SignalingConfig:
    """Parse the command line into a :class:`SignalingConfig` (exits with a usage error if inconsistent)."""
    parser = _parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    secret = args.turn_secret or env.get(TURN_SECRET_ENV)
    turn = None
    if args.turn_url:
        if not secret:
            parser.error(f"--turn-url needs --turn-secret or ${TURN_SECRET_ENV}")
        turn = TurnConfig(urls=tuple(args.turn_url), secret=secret, ttl_s=args.turn_ttl)
    elif args.turn_secret:
        parser.error("--turn-secret needs --turn-url")
    try:
        return SignalingConfig(
            host=args.host,
            port=args.port,
            web_root=None if args.no_web else args.web_root,
            turn=turn,
            redis_url=args.redis,
            redis_prefix=args.redis_prefix,
            redis_heartbeat_s=args.redis_heartbeat,
            redis_ttl_s=args.redis_ttl,
            **network_options(args, env),
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    run(config=build_config(argv))


if __name__ == "__main__":
    main()
