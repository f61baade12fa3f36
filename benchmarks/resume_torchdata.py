"""torchdata's ``StatefulDataLoader`` restored late in a large epoch: time from ``load_state_dict`` to the
first batch.

The dataset is an index-only ``_common.write_synthetic_index`` (10,000 samples per shard, each a hard link
to one real shard), py1e, batch size 32, one rank. A loader with ``W`` workers (0: the main process
iterates) is built in a fresh process, its state after one batch is taken and moved to 90% of the epoch:
every worker is set to have yielded the same whole number of batches, ``0.9 * N / max(W, 1)`` samples
(rounded down to a batch), as a run stopped there would have saved. A second fresh process (empty plan
files, as after a restart on another machine) builds the loader, calls ``load_state_dict`` with that state
and takes the first batch: the time between is the figure. Its first sample ids are recorded, so that two
versions' runs can be checked to resume at the same samples.

    python benchmarks/resume_torchdata.py --workers 0,2,8 --json out.json
    python benchmarks/resume_torchdata.py --samples 10M --data-dir /tmp/bench   # reuse the index there
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

#: Share of the epoch already yielded when the state is saved.
AT = 0.9


def _loader(data: str, workers: int, batch_size: int) -> Any:
    from torchdata.stateful_dataloader import StatefulDataLoader

    from astreaming import StreamingDataset

    ds = StreamingDataset(local=data, batch_size=batch_size, shuffle=True, shuffle_algo="py1e")
    return StatefulDataLoader(ds, batch_size=batch_size, num_workers=workers)


def moved_state(
    state: dict[str, Any], workers: int, per_worker_batches: int, batch_size: int
) -> dict[str, Any]:
    """``state`` (taken after the first batch) as if every worker had yielded ``per_worker_batches``."""
    state = copy.deepcopy(state)
    samples = per_worker_batches * batch_size
    if workers == 0:
        state["fetcher_state"]["dataset_iter_state"]["samples_yielded"] = samples
        state["_num_yielded"] = state["_sampler_iter_yielded"] = per_worker_batches
        return state
    snap = state["_snapshot"]
    total = per_worker_batches * workers
    snap["_snapshot_step"] = total
    snap["_last_yielded_worker_id"] = workers - 1  # in order: the next batch is worker 0's
    snap["_main_snapshot"]["_sampler_iter_yielded"] = total
    for worker in snap["_worker_snapshots"].values():
        worker["fetcher_state"]["dataset_iter_state"]["samples_yielded"] = samples
        worker["fetcher_state"]["fetcher_ended"] = False
    return state


def child_save(data: str, workers: int, batch_size: int, samples: int) -> None:
    """Print the loader's state after one batch, moved to :data:`AT` of the epoch."""
    loader = _loader(data, workers, batch_size)
    next(iter(loader))
    per_worker = int(AT * samples / max(workers, 1)) // batch_size
    print(json.dumps(moved_state(loader.state_dict(), workers, per_worker, batch_size)), flush=True)
    os._exit(0)


def child_load(data: str, workers: int, batch_size: int, state: dict[str, Any]) -> None:
    """Print the time from ``load_state_dict`` to the first batch (and that batch's first ids)."""
    began = time.perf_counter()
    loader = _loader(data, workers, batch_size)
    init = time.perf_counter() - began
    began = time.perf_counter()
    loader.load_state_dict(state)
    batch = next(iter(loader))
    first = time.perf_counter() - began
    ids = [int(x) for x in batch["id"][:4]]
    print(json.dumps({"init_s": init, "first_batch_s": first, "first_ids": ids}), flush=True)
    os._exit(0)  # a restored loader is not run to its end


def _run(args: list[str], plans_tmp: Path) -> dict[str, Any]:
    env = dict(os.environ, TMPDIR=str(plans_tmp))
    proc = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure each worker count; print and optionally write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", default="10M")
    parser.add_argument("--workers", default="0,2,8", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", help="keep and reuse the index here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--label", default="", help="recorded with the figures (e.g. before/after)")
    parser.add_argument("--child", choices=("save", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = _common.count(args.samples)
    if args.child == "save":
        child_save(args.data_dir, int(args.workers), args.batch_size, n)
    if args.child == "load":
        child_load(args.data_dir, int(args.workers), args.batch_size, json.loads(args.state))

    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-td-resume-"))
    data = root / f"synthetic-{n}"
    if not (data / "index.json").exists():
        _common.write_synthetic_index(data, n)
    tmp_root = Path(tempfile.mkdtemp(prefix="bench-td-resume-tmp-"))
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "label": args.label,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "samples": n,
        "batch_size": args.batch_size,
        "at": AT,
        "rows": rows,
    }
    common = ["--data-dir", str(data), "--samples", str(n), "--batch-size", str(args.batch_size)]
    try:
        for w in (int(x) for x in args.workers.split(",") if x):
            state = _run(
                ["--child", "save", "--workers", str(w), *common], Path(tempfile.mkdtemp(dir=tmp_root))
            )
            for _ in range(args.rounds):
                load = round(os.getloadavg()[0], 2)
                cold = Path(tempfile.mkdtemp(dir=tmp_root))
                got = _run(
                    ["--child", "load", "--workers", str(w), "--state", json.dumps(state), *common], cold
                )
                row = {"workers": w, "load_1min": load, **got}
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(cold, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
