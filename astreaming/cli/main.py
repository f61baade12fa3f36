"""Entry point of the ``astreaming`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from astreaming import __version__


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="astreaming",
        description="Stream MDS/JSONL/CSV datasets from object storage into PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"astreaming {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
