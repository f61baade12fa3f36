"""What an S3 reader's client costs in resident memory, part by part, in fresh processes.

Each run is a new interpreter that imports torch and numpy (the side-by-side baseline), then does one of:

- ``aiohttp``: imports aiohttp (the HTTP client every remote backend of astreaming uses);
- ``credentials``: resolves credentials through botocore's chain (``Session().get_credentials()``), all a
  client of astreaming's own would still need botocore for;
- ``client``: builds astreaming's S3 client (``S3Backend._client``: aiobotocore on the shared data loader),
  imports included.

It reports the resident set added (MB) and the time taken. Credentials come from the environment
(dummy keys if none are set); no endpoint is contacted.

    python benchmarks/s3_memory.py --runs 3 --json benchmarks/results/s3_memory_s16.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PARTS = ("aiohttp", "credentials", "client")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(part: str) -> dict[str, float]:
    """Measure ``part`` in this (fresh) process."""
    import numpy  # noqa: F401
    import torch  # noqa: F401

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    before, began = _rss_mb(), time.perf_counter()
    if part == "aiohttp":
        import aiohttp  # noqa: F401
    elif part == "credentials":
        import botocore.session

        if botocore.session.get_session().get_credentials() is None:
            raise RuntimeError("botocore found no credentials")
    else:
        from astreaming.storage.s3 import S3Backend

        async def build() -> None:
            async with S3Backend(endpoint_url="http://127.0.0.1:9", region="us-east-1") as backend:
                await backend._client(None)

        asyncio.run(build())
    return {"added_mb": _rss_mb() - before, "seconds": time.perf_counter() - began}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="write every run here")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return
    runs: dict[str, list[dict[str, float]]] = {part: [] for part in PARTS}
    for _ in range(args.runs):
        for part in PARTS:  # alternating: no part always runs first
            done = subprocess.run(
                [sys.executable, __file__, "--child", part], capture_output=True, text=True, check=True
            )
            runs[part].append(json.loads(done.stdout.splitlines()[-1]))
    summary: dict[str, Any] = {
        part: {
            "added_mb": round(statistics.median(r["added_mb"] for r in results), 1),
            "seconds": round(statistics.median(r["seconds"] for r in results), 3),
        }
        for part, results in runs.items()
    }
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
