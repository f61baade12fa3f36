"""Entry point of the ``astreaming`` console script: wires the subcommands and maps errors to exit codes.

Each subcommand lives in its own module (``demo``, ``inspect``, ``merge``) with a ``register`` function
that adds its parser and a ``run(args) -> int`` handler. Exit codes: 0 success, 1 failure (the message
goes to stderr), 2 bad usage (argparse), 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from astreaming import __version__
from astreaming.cli import convert, demo, inspect, merge, plan, verify
from astreaming.errors import AstreamingError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="astreaming",
        description="Stream MDS/JSONL/CSV datasets from object storage into PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"astreaming {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.register(sub)
    inspect.register(sub)
    merge.register(sub)
    convert.register(sub)
    verify.register(sub)
    plan.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (``astreaming inspect ... | head``): not worth a message. Point stdout at
        # devnull so the interpreter's final flush does not raise again (Python docs, "SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        # The handlers clean up in their ``with``/``finally`` blocks while this propagates.
        print(f"astreaming {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (AstreamingError, OSError) as e:
        print(f"astreaming {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
