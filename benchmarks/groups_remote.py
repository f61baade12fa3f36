"""A remote dataset read again from a full cache by a 2-worker StreamingDataLoader: two checkouts.

The dataset (small samples, ``_common.make_sample``) is served over HTTP from 127.0.0.1; one cold epoch
fills the cache, then each round runs one epoch of a new ``StreamingDataset`` over that cache (a new
job: no byte is downloaded but the index) with each checkout in its own process, interleaved, the order
alternating by round. Each figure: samples/s of the whole epoch (from ``iter`` to its last batch,
workers' start included), the items the workers sent (groups or single batches), the load average
before the run, and a hash of the batches' ids in order (the checkouts must agree).

    python benchmarks/groups_remote.py --before /work/main --after . --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402


def child(url: str, cache: str, batch: int, workers: int) -> dict[str, Any]:
    """One epoch in this process (the checkout on ``PYTHONPATH``)."""
    import numpy as np

    import astreaming
    import astreaming.dataloader as dl
    from astreaming import StreamingDataLoader, StreamingDataset

    items = [0]
    original = dl.ungroup

    def counted(inner: Any, *args: Any) -> Any:
        def count(source: Any) -> Any:
            for item in source:
                items[0] += 1
                yield item

        return original(count(inner), *args)

    dl.ungroup = counted  # type: ignore[assignment]
    ds = StreamingDataset(remote=url, local=cache, batch_size=batch)
    loader = StreamingDataLoader(ds, batch_size=batch, num_workers=workers)
    crc, samples, batches = 0, 0, 0
    began = time.perf_counter()
    for b in loader:
        ids = b["id"]
        crc = zlib.crc32(np.ascontiguousarray(ids.numpy()).tobytes(), crc)
        samples += len(ids)
        batches += 1
    seconds = time.perf_counter() - began
    stats = ds.stats()
    ds.close()
    return {
        "package": str(Path(astreaming.__file__).parent.parent),
        "samples": samples,
        "batches": batches,
        "items": items[0],
        "seconds": round(seconds, 4),
        "samples_per_s": round(samples / seconds, 1),
        "ids_crc32": crc,
        "bytes_downloaded": stats["bytes_downloaded"],
    }


def run(tree: Path, url: str, cache: Path, batch: int, workers: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--url", url, "--cache", str(cache),
            "--batch", str(batch), "--workers", str(workers)]  # fmt: skip
    load = os.getloadavg()[0]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: exited {proc.returncode}\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load_before"] = round(load, 2)
    if Path(out["package"]).resolve() != tree.resolve():
        raise RuntimeError(f"imported {out['package']}, not {tree}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--before", type=Path, default=Path("/work/main"))
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--samples", default="200k")
    parser.add_argument("--size-limit", type=int, default=400_000, help="shard bytes (~10k small samples)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="dataset and cache directory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.url, args.cache, args.batch, args.workers)), flush=True)
        return

    from astreaming.testing.servers import StaticHTTPServer

    work = args.work or Path(tempfile.mkdtemp(prefix="groups-remote-"))
    num = _common.count(args.samples)
    info = _common.ensure_dataset(work / "site" / "ds", num, "small", "astreaming", args.size_limit)
    cache = work / "cache"
    server = StaticHTTPServer(work / "site")
    server.start()
    try:
        url = f"{server.url}/ds"
        fill = run(args.after, url, cache, args.batch, args.workers)  # the cold epoch fills the cache
        trees = {"before": args.before, "after": args.after}
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            got = {name: run(trees[name], url, cache, args.batch, args.workers) for name in order}
            if got["before"]["ids_crc32"] != got["after"]["ids_crc32"]:
                raise RuntimeError(f"round {r}: the checkouts' batches differ")
            ratio = got["after"]["samples_per_s"] / got["before"]["samples_per_s"]
            rounds.append({"round": r, "order": order, **got, "after_over_before": round(ratio, 3)})
            before, after = got["before"], got["after"]
            print(
                f"round {r}: before {before['samples_per_s']:,.0f}/s ({before['items']} items), "
                f"after {after['samples_per_s']:,.0f}/s ({after['items']} items), x{ratio:.2f}, "
                f"load {got[order[0]]['load_before']}",
                flush=True,
            )
    finally:
        server.stop()
    ratios = [x["after_over_before"] for x in rounds]
    loads = [x[name]["load_before"] for x in rounds for name in ("before", "after")]
    result = {
        "benchmark": "groups_remote",
        "what": "remote dataset (HTTP, 127.0.0.1) read again from a full cache: a new StreamingDataset, "
        f"StreamingDataLoader {args.workers} workers, batch {args.batch}, small samples",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "dataset": info,
        "before": str(args.before),
        "after": str(args.after),
        "cache_fill": fill,
        "rounds": rounds,
        "median_after_over_before": round(statistics.median(ratios), 3),
        "median_samples_per_s": {
            name: round(statistics.median(x[name]["samples_per_s"] for x in rounds), 1)
            for name in ("before", "after")
        },
        "load_range": [min(loads), max(loads)],
    }
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
