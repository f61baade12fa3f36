"""``cache_limit`` at 25% of the dataset: bytes downloaded and throughput, astreaming vs mosaic.

A dataset of ``--samples`` large samples (~10 KB each, default 10k = ~100 MB, shards of ~3 MB) is served
over S3 (moto) behind the fault proxy (``serve_proxy.py``; default 20 ms per request, 50 MB/s). Both
libraries stream ``--epochs`` epochs (default 2) into an empty cache with ``cache_limit`` = ``--fraction``
(default 25%) of the dataset's bytes, in a plain loop (batch_size 256, no shuffle unless ``--shuffle``),
each in a fresh process. The proxy counts the bytes that crossed the link.

mosaic evicts the least recently used shard; astreaming the shard whose next use in the plan is
furthest away (so a cyclic epoch keeps part of the cache useful for the next one). DESIGN §8 target: no
more bytes re-downloaded than mosaic, at least its throughput.

    python benchmarks/cache_limit.py
    python benchmarks/cache_limit.py --samples 20k --epochs 3 --shuffle
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import remote_epoch
import serve_proxy


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both libraries and print the table; return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=_common.count, default=10_000, help="~10 KB samples")
    parser.add_argument("--shard-mb", type=float, default=3.0)
    parser.add_argument("--fraction", type=float, default=0.25, help="cache_limit / dataset bytes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=50e6, help="bytes/s")
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument("--data-dir", help="keep and reuse the dataset here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-cache-"))
    n = args.samples
    shard_limit = int(args.shard_mb * 1e6)
    rows: list[dict[str, Any]] = []
    try:
        data = root / f"large-{n}-{shard_limit}"
        info = _common.ensure_dataset(data, n, "large", size_limit=shard_limit)
        limit = int(info["bytes"] * args.fraction)
        print(
            f"dataset: {n:,} large samples, {info['shards']} shards, {info['bytes']:,} B; "
            f"cache_limit {limit:,} B ({args.fraction:.0%}); {args.epochs} epochs, shuffle={args.shuffle}"
        )
        runs: list[tuple[str, Any]] = [("astreaming", remote_epoch.run_astreaming)]
        if not args.skip_mosaic:
            runs.append(("mosaic", remote_epoch.run_mosaic))
        for name, run in runs:
            with serve_proxy.serve(data, "s3", args.latency, args.bandwidth) as served:
                out = remote_epoch.measured(
                    served, run, n, cache_limit=limit, epochs=args.epochs, shuffle=args.shuffle
                )
            seconds = sum(e["seconds"] for e in out["epochs"])
            rows.append(
                {
                    "name": name,
                    "downloaded_MB": out["link_bytes"] / 1e6,
                    "x dataset": out["link_bytes"] / info["bytes"],
                    "requests": out["requests"],
                    "seconds": seconds,
                    "samples_per_s": n * args.epochs / seconds,
                    **{f"epoch{i}_s": e["seconds"] for i, e in enumerate(out["epochs"])},
                }
            )
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)

    floor = n * args.epochs  # only to label the table
    print(
        f"\ncache_limit at {args.fraction:.0%}: {args.epochs} epochs = {floor:,} samples (times include init)"
    )
    _common.print_table(rows, ratio=("samples_per_s", "mosaic") if not args.skip_mosaic else None)
    if not args.skip_mosaic:
        ours, theirs = rows
        fewer = ours["downloaded_MB"] <= theirs["downloaded_MB"]
        faster = ours["samples_per_s"] >= theirs["samples_per_s"]
        print(
            f"\ntarget: bytes <= mosaic's: {'yes' if fewer else 'NO'} "
            f"({ours['downloaded_MB']:.1f} vs {theirs['downloaded_MB']:.1f} MB); "
            f"throughput >= mosaic's: {'yes' if faster else 'NO'}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"dataset": info, "cache_limit": limit, "rows": rows}, indent=2)
        )
    return {"dataset": info, "rows": rows}


if __name__ == "__main__":
    main()
