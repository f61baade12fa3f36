"""Event-loop stall while a StreamingDataset is constructed inside a running loop (issue 11).

The indexes of ``--streams`` streams are served over HTTP behind the fault proxy (20 ms latency,
50 MB/s by default). A ticker task sleeps 1 ms at a time and records the longest gap between its wake-ups
while the dataset is built, either with the blocking constructor called from a coroutine or with
``await StreamingDataset.open(...)``. Prints the construction time and the longest stall of each.

    python benchmarks/loop_lag.py [--streams 8] [--latency 0.02] [--bandwidth 50e6] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_dataset

from astreaming import Stream, StreamingDataset
from astreaming.testing.faults import FaultPlan
from astreaming.testing.servers import StaticHTTPServer
from astreaming.testing.threadedproxy import ThreadedFaultProxy


async def measure(build: Callable[[], Awaitable[StreamingDataset]]) -> tuple[float, float]:
    """``(construction seconds, longest gap between ticker wake-ups beyond its 1 ms sleep)``."""
    done = False
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is running before construction starts
    began = time.perf_counter()
    await build()
    seconds = time.perf_counter() - began
    done = True
    await task
    return seconds, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--bandwidth", type=float, default=50e6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="astreaming-looplag-") as tmp:
        root = Path(tmp) / "served"
        for s in range(args.streams):
            write_dataset(root / f"s{s}", 2000, writer="astreaming", size_limit=4096)
        plan = FaultPlan(latency=args.latency, bandwidth=args.bandwidth)
        with StaticHTTPServer(root) as server, ThreadedFaultProxy(server.url, plan) as proxy:
            counter = iter(range(1_000_000))

            def kwargs() -> dict[str, object]:
                run = next(counter)
                streams = [
                    Stream(remote=f"{proxy.url}/s{s}", local=f"{tmp}/cache{run}/s{s}")
                    for s in range(args.streams)
                ]
                return {"streams": streams, "batch_size": 8}

            async def blocking() -> StreamingDataset:
                return StreamingDataset(**kwargs())  # type: ignore[arg-type]

            async def awaited() -> StreamingDataset:
                return await StreamingDataset.open(**kwargs())

            rows = []
            for name, build in (
                ("StreamingDataset(...) in a coroutine", blocking),
                ("await StreamingDataset.open(...)", awaited),
            ):
                runs = [asyncio.run(measure(build)) for _ in range(args.repeat)]
                rows.append(
                    {
                        "name": name,
                        "construct_s (median)": statistics.median(r[0] for r in runs),
                        "max_loop_stall_ms (median)": 1000 * statistics.median(r[1] for r in runs),
                        "max_loop_stall_ms (worst)": 1000 * max(r[1] for r in runs),
                    }
                )
    print(
        f"{args.streams} streams, latency {args.latency * 1000:.0f} ms, {args.bandwidth / 1e6:.0f} MB/s, "
        f"{args.repeat} runs each"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
