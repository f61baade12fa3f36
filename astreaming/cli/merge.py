"""``astreaming merge <out> [partitions...]``: merge partition indexes with :func:`merge_index`.

Both call forms of ``merge_index`` are reachable:

- ``astreaming merge OUT P1 P2 ...``: the given partitions (directories, index.json files or URLs, each
  inside ``OUT``), in the given order, i.e. ``merge_index([P1, P2, ...], OUT)``;
- ``astreaming merge OUT``: every ``index.json`` below ``OUT``, i.e. ``merge_index(OUT)``.

``--local DIR`` makes the output the pair ``(DIR, OUT)``: a local twin of a remote ``OUT``.
"""

from __future__ import annotations

import argparse
import asyncio

from astreaming.cli.inspect import index_location, read_index
from astreaming.format.index import parse_index
from astreaming.output.merge import merge_index
from astreaming.storage import redact

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``merge`` subcommand to ``sub``."""
    p = sub.add_parser(
        "merge",
        help="merge partition index.json files into one (merge_index)",
        description=(
            "Write OUT/index.json listing the shards of every partition. With PARTITION arguments, merge "
            "those (in order; each must lie inside OUT); without, merge every index.json below OUT."
        ),
    )
    p.add_argument("out", help="output directory or URL (the dataset root)")
    p.add_argument("partitions", nargs="*", help="partition directories, index.json files or URLs")
    p.add_argument("--local", metavar="DIR", help="local twin of a remote OUT: out=(DIR, OUT)")
    p.add_argument(
        "--no-keep-local",
        dest="keep_local",
        action="store_false",
        help="with --local, do not keep the merged index in DIR",
    )
    p.add_argument(
        "--download-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds per download or upload attempt (default 60)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``astreaming merge``."""
    out: str | tuple[str, str] = args.out if args.local is None else (args.local, args.out)
    options = {"keep_local": args.keep_local, "download_timeout": args.download_timeout}
    if args.partitions:
        merge_index(list(args.partitions), out, **options)
    else:
        merge_index(out, **options)
    # Read the result back through the storage layer: what a reader of OUT will see.
    url = index_location(args.out)
    entries = parse_index(asyncio.run(read_index(url, timeout=args.download_timeout)), source=redact(url))
    parts = f"{len(args.partitions)} partitions" if args.partitions else "the partitions found"
    print(
        f"merged {parts} into {redact(url)}: "
        f"{len(entries):,} shards, {sum(e.samples for e in entries):,} samples"
    )
    return 0
