"""``astreaming verify URL``: check every shard of a dataset (sizes, every listed hash, decoding).

Every file a reader would download is fetched (the compressed one when the shard is compressed), its
size and every digest the index records are checked, compressed files are decompressed (checking the
raw size and digests), and the first and last samples of each shard are decoded (``--decode-all``:
every sample). Exit 0 when every shard is good, 1 naming each bad one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from astreaming.cli._fmt import fmt_bytes, plural
from astreaming.cli.inspect import index_location, read_index
from astreaming.cli.shardcheck import ShardReport, check_shard
from astreaming.errors import ConfigError
from astreaming.format.index import ShardEntry, parse_index
from astreaming.storage import RetryPolicy, backend_for, redact

__all__ = ["register", "run", "verify"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` subcommand to ``sub``."""
    p = sub.add_parser(
        "verify",
        help="check every shard of a dataset: sizes, hashes, decompression, decoding",
        description=(
            "Download every shard of the dataset at URL (a directory or any storage URL), check its size "
            "and every hash its index lists, decompress it, and decode its first and last samples. "
            "Exit 1 naming each bad shard."
        ),
    )
    p.add_argument("location", help="dataset directory or URL, or its index.json")
    p.add_argument("--jobs", type=int, default=8, metavar="N", help="shards checked at once (default 8)")
    p.add_argument("--decode-all", action="store_true", help="decode every sample, not two per shard")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per download attempt (default 60)"
    )
    p.add_argument("--retries", type=int, default=2, metavar="N", help="retries per download (default 2)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=run)


async def verify(
    location: str,
    *,
    jobs: int = 8,
    decode_all: bool = False,
    timeout: float = 60.0,
    retries: int = 2,
    progress: bool | None = None,
) -> tuple[str, list[ShardEntry], list[ShardReport]]:
    """Check every shard of the dataset at ``location``; returns (index URL, entries, reports).

    Raises:
        StorageError: The index cannot be read (the dataset is unreachable or absent).
        FormatError: The index is invalid.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    url = index_location(location)
    entries = parse_index(await read_index(url, timeout=timeout, retries=retries), source=redact(url))
    trimmed = location.rstrip("/") or location
    # The shards sit next to the index; a directory URL keeps its query string (a SAS token) this way.
    root = trimmed if url != trimmed else (url.rsplit("/", 1)[0] if "/" in url else ".")
    policy = RetryPolicy.from_download_retry(download_retry=retries, download_timeout=timeout)
    slots = asyncio.Semaphore(jobs)
    show = progress if progress is not None else sys.stderr.isatty()
    with (
        tempfile.TemporaryDirectory(prefix="astreaming-verify-") as tmp,
        tqdm(total=len(entries), unit=" shards", disable=not show, desc="verifying") as bar,
    ):
        async with backend_for(url, timeout=timeout) as backend:

            async def one(position: int, entry: ShardEntry) -> ShardReport:
                async with slots:
                    workdir = Path(tmp) / str(position)
                    report = await check_shard(
                        backend, root, position, entry, workdir, policy, decode_all=decode_all
                    )
                bar.update(1)
                return report

            reports = await asyncio.gather(*(one(i, e) for i, e in enumerate(entries)))
    return url, entries, list(reports)


def _summary(url: str, entries: list[ShardEntry], reports: list[ShardReport]) -> dict[str, Any]:
    bad = [r for r in reports if not r.ok]
    return {
        "index": redact(url),
        "shards": len(entries),
        "samples": sum(e.samples for e in entries),
        "bytes": sum(r.fetched_bytes for r in reports),
        "hashes": sorted({h for e in entries for h in e.hashes}),
        "decoded": sum(r.decoded for r in reports),
        "ok": len(reports) - len(bad),
        "bad": [{"shard": r.position, "file": r.basename, "problems": r.problems} for r in bad],
    }


def run(args: argparse.Namespace) -> int:
    """Handle ``astreaming verify``."""
    url, entries, reports = asyncio.run(
        verify(
            args.location,
            jobs=args.jobs,
            decode_all=args.decode_all,
            timeout=args.timeout,
            retries=args.retries,
            progress=args.progress,
        )
    )
    summary = _summary(url, entries, reports)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        hashes = ", ".join(summary["hashes"]) or "none recorded: sizes and decoding only"
        print(
            f"verified {summary['index']}: {plural(summary['shards'], 'shard')}, "
            f"{plural(summary['samples'], 'sample')}, {fmt_bytes(summary['bytes'])} fetched; "
            f"hashes: {hashes}; {plural(summary['decoded'], 'sample')} decoded"
        )
        print(f"{summary['ok']:,} ok, {len(summary['bad']):,} bad")
        for bad in summary["bad"]:
            for problem in bad["problems"]:
                problem = problem.removeprefix(f"{bad['file']}: ")  # the shard's own file: named already
                print(f"bad shard {bad['shard']} ({bad['file']}): {problem}")
    if summary["bad"]:
        names = ", ".join(f"{b['shard']} ({b['file']})" for b in summary["bad"])
        print(f"astreaming verify: {plural(len(summary['bad']), 'bad shard')}: {names}", file=sys.stderr)
        return 1
    return 0
