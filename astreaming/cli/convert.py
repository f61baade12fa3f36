"""``astreaming convert SRC OUT``: an image folder, JSONL, CSV/TSV or Parquet into an MDS dataset."""

from __future__ import annotations

import argparse

from astreaming.cli._fmt import plural
from astreaming.convert import SOURCE_KINDS, ConvertOptions, convert, parse_columns
from astreaming.storage import redact

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``convert`` subcommand to ``sub``."""
    p = sub.add_parser(
        "convert",
        help="convert an image folder, JSONL, CSV/TSV or Parquet into MDS (local or remote)",
        description=(
            "Convert SRC (a file, a directory of files of one format, or an image folder with one "
            "sub-folder per class; local, or a gs://, s3://, oci://, azure:// URL read by range requests, "
            "or one http(s):// file) into the MDS dataset OUT (a directory or a gs://, s3://, oci://, "
            "azure:// or file:// URL). Columns are inferred; --columns overrides them. With --workers N, "
            "N processes each write a partition OUT/part-NNNNN, merged into OUT/index.json at the end; "
            "the rows keep the source order either way."
        ),
    )
    p.add_argument(
        "src", help="source file or directory: a local path or a URL (s3://, gs://, azure://, ...)"
    )
    p.add_argument("out", help="output directory or URL")
    p.add_argument(
        "--format", dest="kind", choices=sorted(SOURCE_KINDS), help="source format (default: detect)"
    )
    p.add_argument(
        "--columns",
        action="append",
        metavar="NAME:ENC,...",
        help="override inferred encodings, e.g. label:int32,emb:ndarray:float32 (repeatable)",
    )
    p.add_argument("--compression", metavar="ALGO", help="zstd, zstd:7, gz, bz2, br, snappy (default none)")
    p.add_argument("--hashes", metavar="A,B", default="", help="hashes to record, e.g. sha1,xxh64")
    p.add_argument("--size-limit", default="64mb", metavar="SIZE", help="shard size limit (default 64mb)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    p.add_argument(
        "--infer-rows", type=int, default=1000, metavar="N", help="rows read to infer columns (0 = all)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at OUT")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``astreaming convert``."""
    columns: dict[str, str] = {}
    for text in args.columns or []:
        columns.update(parse_columns(text))
    options = ConvertOptions(
        columns=columns,
        kind=args.kind,
        compression=args.compression,
        hashes=[h for h in args.hashes.split(",") if h],
        size_limit=args.size_limit,
        workers=args.workers,
        exist_ok=args.overwrite,
        infer_rows=args.infer_rows,
        progress=args.progress,
    )
    result = convert(args.src, args.out, options)
    cols = ", ".join(f"{k}:{v}" for k, v in sorted(result.columns.items()))
    parts = f" from {plural(result.partitions, 'partition')}" if result.partitions > 1 else ""
    print(
        f"wrote {redact(args.out)}: {plural(result.samples, 'sample')}, {plural(result.shards, 'shard')}"
        f"{parts} ({result.kind}; columns {cols})"
    )
    return 0
