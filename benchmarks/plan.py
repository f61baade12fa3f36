"""Time and peak memory of one worker's epoch plan (astreaming.order): its first batches, fresh and resumed.

Layout: py1e shuffle, 8 canonical nodes, 2 nodes x 8 ranks x 4 workers, batch 32, shards of 10,000 samples;
two streams of half the samples each for the per-stream batching methods. "fresh" and "resume" (at half
the epoch) are what the engine runs: a :class:`LazyWorkerPlan` (process-private store, so the worker also
pays the node's shared artefacts) and its first 64 batches. "eager" is the reference plan of the whole
worker epoch (``plan_worker_epoch``: the whole epoch array for the non-random methods); ``--full`` adds
the whole (P, R, W, batches, B) array (mosaic's way). Each measurement runs in a fresh subprocess so that
peak RSS belongs to it alone.

    python benchmarks/plan.py                 # 10M and 30M samples, random batching
    python benchmarks/plan.py --sizes 10M 100M --methods random stratified per_stream device_per_stream
    python benchmarks/plan.py --eager --full  # also the eager plan and the whole-epoch array
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

SHARD = 10_000
NODES, RANKS, WORKERS, BATCH, NCN = 2, 8, 4, 32, 8


def _count(text: str) -> int:
    units = {"k": 10**3, "m": 10**6, "b": 10**9}
    return int(float(text[:-1]) * units[text[-1].lower()]) if text[-1].lower() in units else int(text)


def measure(num_samples: int, mode: str, method: str) -> dict[str, float | int | str]:
    """Run one measurement in this process: ``mode`` is fresh, resume, eager or full."""
    import numpy as np

    from astreaming.order import EpochSpec, World, generate_work, plan_worker_epoch
    from astreaming.order.lazy import LazyWorkerPlan

    def shards(n: int) -> np.ndarray:
        return np.array([SHARD] * (n // SHARD) + ([n % SHARD] if n % SHARD else []))

    streams = [shards(num_samples)] if method == "random" else [shards(num_samples // 2)] * 2
    spec = EpochSpec.build(
        streams,
        batch_size=BATCH,
        num_nodes=NODES,
        num_canonical_nodes=NCN,
        shuffle=True,
        shuffle_algo="py1e",
        batching_method=method,
    )
    # The last worker of the job: its canonical nodes are the last to be generated.
    world = World(NODES, RANKS, WORKERS, NODES * RANKS * WORKERS - 1)
    global_batch = BATCH * NODES * RANKS
    start_sample = num_samples // 2 // global_batch * global_batch if mode != "fresh" else 0
    tracemalloc.start()
    began = time.perf_counter()
    if mode == "full":
        out = generate_work(method, spec, world, 0, start_sample)
        held = out.nbytes
        count = int((out != -1).sum())
    elif mode == "eager":
        plan = plan_worker_epoch(spec, world, 0, start_sample)
        held = (
            plan.work.nbytes + plan.sample_ids.nbytes + plan.shard_first_need.nbytes + plan.shard_order.nbytes
        )
        count = plan.num_samples
    else:
        lazy = LazyWorkerPlan(spec, world, 0, start_sample)
        first = lazy.batches(0, 64)
        held, count = first.nbytes, int((first != -1).sum())
    seconds = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "samples": num_samples,
        "method": method,
        "mode": mode,
        "seconds": round(seconds, 3),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
        "max_rss_mb": round(rss_kib / 1024, 1),
        "plan_mb": round(held / 2**20, 2),
        "worker_samples": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["10M", "30M"])
    parser.add_argument("--methods", nargs="+", default=["random"], help="batching methods")
    parser.add_argument("--eager", action="store_true", help="also the eager plan of the worker's epoch")
    parser.add_argument("--full", action="store_true", help="also time the whole (P,R,W,b,B) epoch array")
    parser.add_argument("--one", nargs=3, metavar=("N", "MODE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(_count(args.one[0]), args.one[1], args.one[2])))
        return
    modes = ["fresh", "resume"] + (["eager"] if args.eager else []) + (["full"] if args.full else [])
    print(
        f"py1e, C={NCN}, {NODES} nodes x {RANKS} ranks x {WORKERS} workers, batch {BATCH}, shards of {SHARD}"
    )
    print(
        f"{'samples':>12} {'method':>18} {'mode':>7} {'seconds':>8} {'tracemalloc MB':>15}"
        f" {'max RSS MB':>11} {'plan MB':>8} {'worker samples':>15}"
    )
    for size in args.sizes:
        for method, mode in ((method, mode) for method in args.methods for mode in modes):
            done = subprocess.run(
                [sys.executable, __file__, "--one", size, mode, method],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{r['samples']:>12,} {r['method']:>18} {r['mode']:>7} {r['seconds']:>8}"
                f" {r['tracemalloc_peak_mb']:>15} {r['max_rss_mb']:>11} {r['plan_mb']:>8}"
                f" {r['worker_samples']:>15,}",
                flush=True,
            )


if __name__ == "__main__":
    main()
