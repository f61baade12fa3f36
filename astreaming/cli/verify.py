"""``astreaming verify URL``: check every shard of a dataset (sizes, every listed hash, decoding).

Every file a reader would download is stat'ed (missing files and wrong sizes are named without reading
them), then read front to back by range requests, hashed and decompressed as it streams by, with the
first and last samples of each shard decoded (``--decode-all``: every sample). Nothing is written to
disk; memory stays at about two read chunks per shard checked at once. ``--quick`` checks sizes and
decodes sampled samples only, by range requests, without hashing: seconds for a dataset of terabytes.
Exit 0 when every shard is good, 1 naming each bad one.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import sys
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from astreaming._units import bytes_to_int
from astreaming.cli._fmt import fmt_bytes, plural
from astreaming.cli.inspect import index_location, read_index
from astreaming.cli.remote import BlockingRemote
from astreaming.cli.shardcheck import CheckSettings, ShardReport, check_shard
from astreaming.errors import ConfigError
from astreaming.format.index import ShardEntry, parse_index
from astreaming.storage import RetryPolicy, backend_for, redact

__all__ = ["VerifyResult", "register", "run", "verify"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` subcommand to ``sub``."""
    p = sub.add_parser(
        "verify",
        help="check every shard of a dataset: sizes, hashes, decompression, decoding",
        description=(
            "Check every shard of the dataset at URL (a directory or any storage URL): its files exist "
            "with the sizes the index lists; streamed by range requests (nothing written to disk), every "
            "hash the index lists matches, compressed files decompress to their raw size and hashes, and "
            "the first and last samples decode. --quick: sizes and sampled decoding by range requests, "
            "no hashes. Exit 1 naming each bad shard."
        ),
    )
    p.add_argument("location", help="dataset directory or URL, or its index.json")
    p.add_argument("--quick", action="store_true", help="sizes and sampled decoding only, no hashes")
    p.add_argument("--jobs", type=int, default=8, metavar="N", help="shards checked at once (default 8)")
    p.add_argument("--decode-all", action="store_true", help="decode every sample, not two per shard")
    p.add_argument(
        "--chunk-size", default="8mb", metavar="SIZE", help="bytes per range request (default 8mb)"
    )
    p.add_argument(
        "--allow-unsafe-types",
        action="store_true",
        help="decode pkl columns too (unpickling runs code from the dataset)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per request attempt (default 60)"
    )
    p.add_argument("--retries", type=int, default=2, metavar="N", help="retries per request (default 2)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=run)


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found: the index URL, its entries, one report per shard, bytes read."""

    url: str
    entries: list[ShardEntry]
    reports: list[ShardReport]
    bytes_read: int
    quick: bool


async def verify(
    location: str,
    *,
    jobs: int = 8,
    settings: CheckSettings | None = None,
    timeout: float = 60.0,
    retries: int = 2,
    progress: bool | None = None,
) -> VerifyResult:
    """Check every shard of the dataset at ``location`` (see the module docstring).

    Raises:
        StorageError: The index cannot be read (the dataset is unreachable or absent).
        FormatError: The index is invalid.
    """
    settings = settings or CheckSettings()
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    if settings.chunk < 1:
        raise ConfigError(f"--chunk-size: must be >= 1 byte, got {settings.chunk}")
    url = index_location(location)
    entries = parse_index(await read_index(url, timeout=timeout, retries=retries), source=redact(url))
    trimmed = location.rstrip("/") or location
    # The shards sit next to the index; a directory URL keeps its query string (a SAS token) this way.
    root = trimmed if url != trimmed else (url.rsplit("/", 1)[0] if "/" in url else ".")
    policy = RetryPolicy.from_download_retry(download_retry=retries, download_timeout=timeout)
    show = progress if progress is not None else sys.stderr.isatty()
    loop = asyncio.get_running_loop()
    # Threads of their own: each blocks on the loop while its reads are in flight.
    pool = concurrent.futures.ThreadPoolExecutor(jobs, thread_name_prefix="astreaming-verify")
    with tqdm(total=len(entries), unit=" shards", disable=not show, desc="verifying") as bar:
        async with backend_for(url, timeout=timeout) as backend:
            remote = BlockingRemote(backend, loop, policy)

            def one(position: int, entry: ShardEntry) -> ShardReport:
                report = check_shard(remote, root, position, entry, settings)
                bar.update(1)
                return report

            try:
                reports = await asyncio.gather(
                    *(loop.run_in_executor(pool, one, i, e) for i, e in enumerate(entries))
                )
            finally:
                # On an error or Ctrl-C the threads may wait on requests: cancel them, then join the
                # threads without blocking the loop (cancellations are delivered by it).
                remote.stop()
                pool.shutdown(wait=False, cancel_futures=True)
                await asyncio.to_thread(pool.shutdown, True)
    return VerifyResult(url, entries, list(reports), remote.bytes_read, settings.quick)


def _summary(result: VerifyResult) -> dict[str, Any]:
    reports = result.reports
    bad = [r for r in reports if not r.ok]
    skipped = [r.position for r in reports if r.skipped]
    return {
        "index": redact(result.url),
        "mode": "quick" if result.quick else "full",
        "shards": len(result.entries),
        "samples": sum(e.samples for e in result.entries),
        "bytes": result.bytes_read,
        "hashes": [] if result.quick else sorted({h for e in result.entries for h in e.hashes}),
        "decoded": sum(r.decoded for r in reports),
        "not_decoded": skipped,
        "ok": len(reports) - len(bad),
        "bad": [{"shard": r.position, "file": r.basename, "problems": r.problems} for r in bad],
    }


def run(args: argparse.Namespace) -> int:
    """Handle ``astreaming verify``."""
    settings = CheckSettings(
        quick=args.quick,
        decode_all=args.decode_all,
        chunk=bytes_to_int(args.chunk_size, name="--chunk-size"),
        allow_unsafe_types=args.allow_unsafe_types,
    )
    result = asyncio.run(
        verify(
            args.location,
            jobs=args.jobs,
            settings=settings,
            timeout=args.timeout,
            retries=args.retries,
            progress=args.progress,
        )
    )
    summary = _summary(result)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if result.quick:
            hashes = "not checked (--quick)"
        else:
            hashes = ", ".join(summary["hashes"]) or "none recorded: sizes and decoding only"
        print(
            f"verified {summary['index']}: {plural(summary['shards'], 'shard')}, "
            f"{plural(summary['samples'], 'sample')}, {fmt_bytes(summary['bytes'])} read; "
            f"hashes: {hashes}; {plural(summary['decoded'], 'sample')} decoded"
        )
        if summary["not_decoded"]:
            print(
                f"{plural(len(summary['not_decoded']), 'shard')} with pkl columns not decoded: "
                "pass --allow-unsafe-types to unpickle them (runs code from the dataset)"
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
