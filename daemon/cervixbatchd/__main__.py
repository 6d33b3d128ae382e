"""``python -m cervixbatchd [--config PATH] [--burst]``: the same service as ``cervixbatch run``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cervixbatch.config import load_config
from cervixbatch.errors import ConfigError
from cervixbatchd.service import serve

__all__ = ["main"]

EXIT_CONFIG = 2  # as `cervixbatch`: a configuration error is exit status 2


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, load the configuration and run the service."""
    parser = argparse.ArgumentParser(
        prog="cervixbatchd", description="Watch the inbox and segment what is dropped into it."
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="configuration file (default: $CERVIXBATCH_CONFIG, then ./config.toml)",
    )
    parser.add_argument(
        "--burst", action="store_true", help="process what is in the inbox now, then exit"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"cervixbatchd: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    return serve(config, config_path=args.config, burst=args.burst)


if __name__ == "__main__":
    sys.exit(main())
