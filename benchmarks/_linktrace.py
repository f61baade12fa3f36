"""Diagnostics for ``remote_epoch.py --trace FILE``: every request of a run, and what the link did.

:func:`install` (called in the measured child when ``$ASTREAMING_BENCH_LINK_TRACE`` names a file) wraps
``read_range_into`` and ``download`` of the HTTP, S3 and GCS backends and appends one JSON line per request:
``{"op", "name", "start", "end", "bytes", "t0", "t1", "ttfb"}`` (``t0``/``t1``: ``time.monotonic()`` when
the call began and returned; ``ttfb``: seconds to the answer's headers, as the backend reported them to
:mod:`astreaming.storage.firstbyte`, or null). :func:`summary` turns such a file into what the link saw:
requests in flight over time, range sizes, per-request rates, and the idle gaps between one request's end
and the next request's start. Reads private parts of the backends: a measuring aid, not an interface.

    python benchmarks/_linktrace.py /tmp/trace.jsonl --connections 10
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any


def install(path: str) -> None:
    """Log every ``read_range`` / ``download`` of the remote backends into ``path`` (JSON lines)."""
    from astreaming.storage.gcs import GCSBackend
    from astreaming.storage.http import HTTPBackend
    from astreaming.storage.s3 import S3Backend

    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    def log(record: dict[str, Any]) -> None:
        out.write(json.dumps(record) + "\n")

    for cls in (HTTPBackend, S3Backend, GCSBackend):
        _wrap(cls, log)


def _wrap(cls: Any, log: Any) -> None:
    from astreaming.storage import firstbyte

    # read_range of these backends goes through read_range_into: wrapping that one logs each range once.
    read_range_into, download = cls.read_range_into, cls.download

    @functools.wraps(read_range_into)
    async def traced_range(self: Any, url: str, start: int, end: int, sink: Any) -> int:
        t0 = time.monotonic()
        heard: list[float] = []
        with firstbyte.watch(lambda: heard.append(time.monotonic())):
            n: int = await read_range_into(self, url, start, end, sink)
        log({"op": "range", "name": url.rsplit("/", 1)[-1], "start": start, "end": end,
             "bytes": n, "t0": t0, "t1": time.monotonic(),
             "ttfb": heard[-1] - t0 if heard else None})  # fmt: skip
        return n

    @functools.wraps(download)
    async def traced_download(self: Any, url: str, dest: Any) -> int:
        t0 = time.monotonic()
        heard: list[float] = []
        with firstbyte.watch(lambda: heard.append(time.monotonic())):
            n: int = await download(self, url, dest)
        log({"op": "whole", "name": url.rsplit("/", 1)[-1], "start": 0, "end": n, "bytes": n,
             "t0": t0, "t1": time.monotonic(), "ttfb": heard[-1] - t0 if heard else None})  # fmt: skip
        return n

    cls.read_range_into = traced_range
    cls.download = traced_download


def summary(
    records: list[dict[str, Any]], connections: float | None = None, step: float = 0.01
) -> dict[str, Any]:
    """What the requests of one run did on the link.

    Args:
        records: The JSON lines of one run.
        connections: Connections the link needs to be full (link rate ÷ per-connection cap): the share
            of the time with fewer in flight is reported.
        step: Sampling step of the in-flight curve, seconds.
    """
    big = [r for r in records if r["bytes"] >= 1 << 20]
    if not big:
        return {"requests": len(records)}
    origin = min(r["t0"] for r in big)
    end = max(r["t1"] for r in big)
    samples: list[int] = []
    t = origin
    while t < end:
        samples.append(sum(1 for r in big if r["t0"] <= t < r["t1"]))
        t += step
    # A connection's idle gap: a request ended and no other began until the next one did. Counted as
    # the time from each end to the first start after it (0 when one began at once).
    starts = sorted(r["t0"] for r in big)
    gaps = []
    for r in big:
        later = [s for s in starts if s >= r["t1"]]
        if later:
            gaps.append(later[0] - r["t1"])
    rates = [r["bytes"] / (r["t1"] - r["t0"]) / 1e6 for r in big if r["t1"] > r["t0"]]
    out: dict[str, Any] = {
        "requests": len(records),
        "large_requests": len(big),
        "span_s": end - origin,
        "first_request_s": origin,
        "MB": sum(r["bytes"] for r in big) / 1e6,
        "range_MB": sorted({round(r["bytes"] / 1e6, 2) for r in big}),
        "in_flight_mean": statistics.fmean(samples),
        "in_flight_max": max(samples),
        "request_MBps_median": statistics.median(rates),
        "request_MBps_min": min(rates),
        "gap_to_next_start_median_ms": 1e3 * statistics.median(gaps) if gaps else None,
        "gap_to_next_start_max_ms": 1e3 * max(gaps) if gaps else None,
    }
    ttfbs = [r["ttfb"] for r in big if r.get("ttfb") is not None]
    if ttfbs:
        out["ttfb_median_ms"] = 1e3 * statistics.median(ttfbs)
        out["ttfb_max_ms"] = 1e3 * max(ttfbs)
    if connections:
        out[f"share_below_{connections:g}"] = sum(1 for s in samples if s < connections) / len(samples)
        # Second by second: requests in flight (how the window fills and drains).
    per_second = [
        round(statistics.fmean(samples[i : i + int(1 / step)]), 1)
        for i in range(0, len(samples), int(1 / step))
    ]
    out["in_flight_per_second"] = per_second
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("trace")
    parser.add_argument("--connections", type=float, default=None)
    args = parser.parse_args()
    records = [json.loads(line) for line in Path(args.trace).read_text().splitlines() if line.strip()]
    print(json.dumps(summary(records, args.connections), indent=2))


if __name__ == "__main__":
    main()
