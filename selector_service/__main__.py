"""``python -m selector_service --host H --port P``."""

from __future__ import annotations

import argparse
import sys

from selector_service.server import serve
from shared.errors import SaltError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m selector_service", description="Run the SALT selector service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port)
    except SaltError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
