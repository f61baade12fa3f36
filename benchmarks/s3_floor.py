"""What a plain aiobotocore loop gets from moto through the same link: the floor a client can reach there.

The dataset of ``remote_epoch.py`` (same ``--samples`` and ``--shard-mb``) is served by moto behind the
fault proxy (``--latency``, ``--bandwidth``, ``--connection-bandwidth``). For each ``--part-mb`` (0: whole
objects) the loop downloads every shard as byte ranges, ``--parallel`` requests at once, in shard order,
into memory, and reports the wall time against the link floor, the requests, and the CPU the serving
process (moto and the proxy) spent: no astreaming code on the client side, so what it cannot reach, no
client can reach on this server.

    python benchmarks/s3_floor.py --samples 40k --shard-mb 64 --bandwidth 100e6 \
        --connection-bandwidth 10e6 --part-mb 4 16 0 --json results/s3_floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import serve_proxy


async def fetch_all(env: dict[str, str], keys: list[tuple[str, int]], part: int, parallel: int) -> int:
    """Every ``(key, size)`` as ranges of ``part`` bytes (whole objects if 0), ``parallel`` at once."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    config = AioConfig(max_pool_connections=parallel, retries={"total_max_attempts": 1})
    async with session.create_client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=config,
    ) as client:
        slots = asyncio.Semaphore(parallel)
        got = 0

        async def one(key: str, start: int, end: int | None) -> None:
            nonlocal got
            async with slots:
                extra = {} if end is None else {"Range": f"bytes={start}-{end - 1}"}
                resp = await client.get_object(Bucket=serve_proxy.BUCKET, Key=key, **extra)
                async with resp["Body"] as body:
                    data = await body.read()
                got += len(data)

        jobs = []
        for key, size in keys:
            if part <= 0:
                jobs.append(one(key, 0, None))
            else:
                jobs += [one(key, s, min(s + part, size)) for s in range(0, size, part)]
        await asyncio.gather(*jobs)
        return got


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=_common.count, default=40_000)
    parser.add_argument("--shard-mb", type=float, default=64.0)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=100e6)
    parser.add_argument("--connection-bandwidth", type=float, default=10e6)
    parser.add_argument("--part-mb", type=float, nargs="+", default=[4.0, 16.0, 0.0])
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--server", choices=["s3", "s3rver"], default="s3", help="moto (s3) or s3rver")
    parser.add_argument("--data-dir", help="keep and reuse the dataset here")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-s3floor-"))
    rows = []
    try:
        data = root / f"large-{args.samples}-{int(args.shard_mb * 1e6)}"
        _common.ensure_dataset(data, args.samples, "large", size_limit=int(args.shard_mb * 1e6))
        index = json.loads((data / "index.json").read_text())
        keys = [(f"data/{s['raw_data']['basename']}", s["raw_data"]["bytes"]) for s in index["shards"]]
        total = sum(size for _, size in keys)
        with serve_proxy.serve(
            data, args.server, args.latency, args.bandwidth, connection_bandwidth=args.connection_bandwidth
        ) as served:
            for part_mb in args.part_mb:
                before = served.stats()
                began = time.perf_counter()
                got = asyncio.run(fetch_all(served.env, keys, int(part_mb * (1 << 20)), args.parallel))
                seconds = time.perf_counter() - began
                after = served.stats()
                if got != total:
                    raise RuntimeError(f"got {got} bytes, not {total}")
                floor = (after["bytes_sent"] - before["bytes_sent"]) / args.bandwidth
                rows.append(
                    {
                        "part_MB": part_mb or "whole",
                        "parallel": args.parallel,
                        "seconds": seconds,
                        "x floor": seconds / floor,
                        "requests": after["requests"] - before["requests"],
                        "server_cpu_s": after["cpu_s"] - before["cpu_s"],
                        "proxy_cpu_s": after["proxy_cpu_s"] - before["proxy_cpu_s"],
                        "load": os.getloadavg()[0],
                    }
                )
                print(rows[-1], flush=True)
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)
    _common.print_table(rows)
    out = {
        "server": args.server,
        "samples": args.samples,
        "shard_mb": args.shard_mb,
        "bytes": total,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
