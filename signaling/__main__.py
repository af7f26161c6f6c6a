"""``python -m signaling [--host H] [--port P] [--web-root DIR]``: run the signaling server."""

from __future__ import annotations

import argparse
from pathlib import Path

from signaling.app import run, start_server

__all__ = ["main", "run", "start_server"]

_DEFAULT_WEB = Path(__file__).resolve().parent.parent / "web"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m signaling", description="ephemesh signaling server")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080, 0 = any)")
    parser.add_argument(
        "--web-root",
        type=Path,
        default=_DEFAULT_WEB if _DEFAULT_WEB.is_dir() else None,
        help="directory served at / (default: the repository's web/ when present)",
    )
    parser.add_argument("--no-web", action="store_true", help="serve no static files")
    args = parser.parse_args(argv)
    run(args.host, args.port, None if args.no_web else args.web_root)


if __name__ == "__main__":
    main()
