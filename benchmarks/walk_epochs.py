"""A cached walk's cost per sample without the side-by-side harness's check, epoch by epoch.

Each fresh process imports torch (as the side-by-side processes do), builds a ``StreamingDataset`` over
``DATA`` and walks it ``--epochs`` times in a plain loop that only counts samples; it reports µs per
sample (wall and CPU) and the garbage collections that ran in each epoch. The first epoch of a process
includes the plan's first chunk and opening every shard's reader; the later ones are the steady walk.
Comparing with the harness's CPU per sample (``cpu_us_per_sample`` in ``results/sidebyside-large-*.json``)
gives what the check inside the timed loop costs every library.

    python benchmarks/walk_epochs.py /tmp/astreaming-bench/large-20000-1000/astreaming --processes 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def child(data: str, epochs: int) -> list[dict[str, Any]]:
    """Walk ``data`` ``epochs`` times in this process; one record per epoch."""
    import gc

    import torch  # noqa: F401  (the side-by-side processes hold torch's heap too)

    from astreaming import StreamingDataset

    collections: list[int] = []
    gc.callbacks.append(
        lambda phase, info: collections.append(info["generation"]) if phase == "start" else None
    )
    gc.collect()
    ds = StreamingDataset(local=data, batch_size=256)
    out = []
    for _ in range(epochs):
        collections.clear()
        wall, cpu, count = time.perf_counter(), time.process_time(), 0
        for _sample in ds:
            count += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out.append(
            {
                "samples": count,
                "wall_us_per_sample": wall / count * 1e6,
                "cpu_us_per_sample": cpu / count * 1e6,
                "full_collections": collections.count(2),
                "collections": len(collections),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data", help="a cached local MDS dataset")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", help="write the records here as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.data, args.epochs)))
        return
    runs = []
    for _ in range(args.processes):
        done = subprocess.run(
            [sys.executable, __file__, args.data, "--epochs", str(args.epochs), "--child"],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    first = [run[0]["cpu_us_per_sample"] for run in runs]
    later = [epoch["cpu_us_per_sample"] for run in runs for epoch in run[1:]]
    summary = {
        "first_epoch_cpu_us": [
            round(min(first), 2),
            round(statistics.median(first), 2),
            round(max(first), 2),
        ],
        "later_epochs_cpu_us": [
            round(min(later), 2),
            round(statistics.median(later), 2),
            round(max(later), 2),
        ]
        if later
        else [],
        "full_collections": sum(epoch["full_collections"] for run in runs for epoch in run),
    }
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.data, "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
