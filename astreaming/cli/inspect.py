"""``astreaming inspect <dir-or-url>``: describe a dataset from its index.json.

The index is read through the storage layer, so any location a dataset can be streamed from works: a
local directory, ``file://``, ``gs://``, ``s3://``, ``oci://``, ``azure://`` or ``http(s)://``. Only
index.json is read; no shard is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Iterable
from typing import Any

from astreaming.cli._fmt import fmt_bytes, table
from astreaming.errors import ObjectNotFound
from astreaming.format.index import JSONEntry, MDSEntry, ShardEntry, XSVEntry, parse_index
from astreaming.storage import RetryPolicy, backend_for, join, redact, with_retries
from astreaming.storage.urls import local_path, scheme_of

__all__ = ["index_location", "read_index", "register", "run", "summarize"]

INDEX = "index.json"
# Digests in the text table are abbreviated to this many hex digits (``--json`` prints them whole).
_DIGEST_CHARS = 12


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``inspect`` subcommand to ``sub``."""
    p = sub.add_parser(
        "inspect",
        help="describe a dataset (shards, samples, columns, sizes) from its index.json",
        description="Read index.json from a local directory or any storage URL and describe the dataset.",
    )
    p.add_argument("location", help="dataset directory or URL, or the index.json itself")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.add_argument(
        "--summary", action="store_true", help="omit the per-shard table (with --json: the shard_list)"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per download attempt (default 60)"
    )
    p.set_defaults(handler=run)


def index_location(location: str) -> str:
    """The index.json of a dataset given by its directory, URL, or the index itself."""
    trimmed = location.rstrip("/") or location
    if trimmed.rsplit("/", 1)[-1] == INDEX:
        return trimmed
    if scheme_of(trimmed) in ("", "file") and os.path.isfile(local_path(trimmed)):
        return trimmed
    return join(trimmed, INDEX)


async def read_index(url: str, *, timeout: float = 60.0, retries: int = 2) -> bytes:
    """The bytes of the index at ``url`` (retried like a dataset's own index download).

    Raises:
        ObjectNotFound: No index there (the message names the location).
        StorageError: The index could not be read.
    """
    policy = RetryPolicy.from_download_retry(download_retry=retries, download_timeout=timeout)
    async with backend_for(url, timeout=timeout) as backend:
        try:
            return await with_retries(policy, lambda: backend.read_bytes(url), url=url, what="download")
        except ObjectNotFound:
            raise ObjectNotFound(
                f"{redact(url)}: no index.json there (not a dataset?)", url=redact(url)
            ) from None


def _columns(entry: ShardEntry) -> dict[str, str]:
    if isinstance(entry, (MDSEntry, XSVEntry)):
        return dict(zip(entry.column_names, entry.column_encodings, strict=True))
    if isinstance(entry, JSONEntry):
        return dict(entry.columns)
    return {}


def _raw_bytes(entry: ShardEntry) -> int:
    return sum(raw.bytes for raw, _ in entry.file_pairs())


def _stored_bytes(entry: ShardEntry) -> int:
    return sum(f.bytes for f in entry.fetch_files())


def _shard_row(position: int, entry: ShardEntry) -> dict[str, Any]:
    return {
        "index": position,
        "format": entry.format,
        "samples": entry.samples,
        "compression": entry.compression,
        "raw_bytes": _raw_bytes(entry),
        "stored_bytes": _stored_bytes(entry),
        # The files a reader downloads (compressed when compression is set), with their digests.
        "files": [f.to_dict() for f in entry.fetch_files()],
    }


def _sorted_set(values: Iterable[str | None]) -> list[str]:
    return sorted({"none" if v is None else v for v in values})


def summarize(entries: list[ShardEntry], source: str) -> dict[str, Any]:
    """A JSON-ready description of a parsed index.

    Args:
        entries: The shard entries of the index.
        source: Where the index was read from (shown as is).
    """
    schemas = []
    for entry in entries:
        cols = _columns(entry)
        if cols not in schemas:
            schemas.append(cols)
    size_limits = sorted({e.size_limit for e in entries if e.size_limit is not None})
    return {
        "index": source,
        "shards": len(entries),
        "samples": sum(e.samples for e in entries),
        "formats": _sorted_set(e.format for e in entries),
        "compression": _sorted_set(e.compression for e in entries),
        "hashes": sorted({h for e in entries for h in e.hashes}),
        "columns": schemas[0] if schemas else {},
        # A merged index may join partitions written with different columns: show every schema.
        "column_schemas": len(schemas),
        "raw_bytes": sum(_raw_bytes(e) for e in entries),
        "stored_bytes": sum(_stored_bytes(e) for e in entries),
        "size_limits": size_limits,
        "shard_list": [_shard_row(i, e) for i, e in enumerate(entries)],
    }


def _digests(files: list[dict[str, Any]]) -> str:
    hashes = files[0]["hashes"] if files else {}
    return ", ".join(f"{algo}={digest[:_DIGEST_CHARS]}" for algo, digest in sorted(hashes.items())) or "-"


def render(summary: dict[str, Any], *, shards: bool = True) -> str:
    """The human-readable description of :func:`summarize`'s result."""
    raw, stored = summary["raw_bytes"], summary["stored_bytes"]
    ratio = f" ({stored / raw:.0%} of raw)" if raw and stored != raw else ""
    cols = ", ".join(f"{k}:{v}" for k, v in summary["columns"].items()) or "-"
    lines = [
        f"index:        {summary['index']}",
        f"shards:       {summary['shards']:,}",
        f"samples:      {summary['samples']:,}",
        f"formats:      {', '.join(summary['formats']) or '-'}",
        f"compression:  {', '.join(summary['compression']) or '-'}",
        f"hashes:       {', '.join(summary['hashes']) or 'none'}",
        f"columns:      {cols}",
        f"size:         {fmt_bytes(raw)} raw, {fmt_bytes(stored)} stored{ratio}",
    ]
    if summary["column_schemas"] > 1:
        lines.append(f"warning:      shards use {summary['column_schemas']} different column schemas")
    if summary["size_limits"]:
        lines.append(f"size_limit:   {', '.join(fmt_bytes(s) for s in summary['size_limits'])}")
    if shards and summary["shard_list"]:
        rows = [
            [
                str(s["index"]),
                s["files"][0]["basename"],
                f"{s['samples']:,}",
                fmt_bytes(s["raw_bytes"]),
                fmt_bytes(s["stored_bytes"]),
                _digests(s["files"]),
            ]
            for s in summary["shard_list"]
        ]
        lines.append("")
        lines.append(table(rows, header=["#", "file", "samples", "raw", "stored", "hashes"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handle ``astreaming inspect``."""
    url = index_location(args.location)
    data = asyncio.run(read_index(url, timeout=args.timeout))
    shown = redact(url)
    summary = summarize(parse_index(data, source=shown), shown)
    if args.json:
        if args.summary:
            del summary["shard_list"]
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary, shards=not args.summary))
    return 0
