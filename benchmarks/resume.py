"""Resume mid-epoch at scale: first batch after ``load_state_dict``, astreaming vs mosaicml-streaming.

Datasets are ``_common.write_synthetic_index``'s (10,000 samples per shard, every shard a hard link to one
real shard, so every sample is readable). mosaic writes the checkpoint (``state_dict(N/2,
from_beginning=True)``, py1e, batch size 32, one rank); each loader then resumes from that checkpoint in a
fresh process: ``StreamingDataLoader(ds, num_workers=W).load_state_dict(state)`` and the first batch,
timed from ``load_state_dict`` to the first batch (construction and index parsing reported apart). The
peak RSS is that of the whole process tree (main process and workers, summed; ``_common.run_measured``).

astreaming is measured with its plan files (``<tmp>/astreaming-plans``) in two states:

- **cold**: empty, as on a node that never planned this epoch (e.g. a job restarted on new machines);
- **warm**: as left by a run that started this epoch on this node and was killed (the usual preemption:
  the same machines come back). Here a fresh-epoch run (also timed: "fresh epoch") leaves them.

With workers, astreaming's main process computes and yields worker 0's first batch before torch starts
the workers; the time to the second batch (the first a worker sends) is recorded too (``second_batch_s``).

- **carried**: empty too (new machines), resuming astreaming's *own* checkpoint at the same sample
  (``state_dict(N/2, from_beginning=True)`` taken by the fresh-epoch run), which carries the epoch's
  shuffle draws (``astreaming_plan``): the replay is skipped. Its size is reported (``hint_chars``).

"Shuffle off" resumes the same checkpoint without shuffling, which plans nothing: what the loader's
start-up (processes, index, first shard) costs without any plan work.

Sizes: 10M and 100M samples with 0 and 8 workers for both loaders; 1B samples (100k shards) for
astreaming only, fresh and resumed with 8 workers (mosaic needs tens of GB there).

    python benchmarks/resume.py                           # the full table (about 15 minutes)
    python benchmarks/resume.py --sizes 10M --workers 0   # one cell
    python benchmarks/resume.py --rounds 3                # each cell 3 times, interleaved: medians
    python benchmarks/resume.py --sizes 10M,100M --skip-mosaic --data-dir /tmp/bench

On a shared machine, give the run its own ``/dev/shm`` (mosaic keeps its resume state there, and
another mosaic process's clean-up can remove it: see benchmarks/README.md, Hygiene).

Targets (issue 9): at most 1/10 of mosaic's time; at 100M with 8 workers under 2 s and at most a quarter of
mosaic's peak tree RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def child(
    data: str,
    state: dict[str, Any] | None,
    workers: int,
    batch_size: int,
    shuffle: bool = True,
    save: str | None = None,
) -> dict[str, Any]:
    """One astreaming loader in this (fresh) process: resume from ``state`` (or a fresh epoch); with
    ``save``, write the checkpoint at half the epoch there after the first batches (untimed)."""
    from astreaming import StreamingDataLoader, StreamingDataset

    result: dict[str, Any] = {}
    began = time.perf_counter()
    ds = StreamingDataset(local=data, batch_size=batch_size, shuffle=shuffle, shuffle_algo="py1e")
    loader = StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)
    result["init_s"] = time.perf_counter() - began
    began = time.perf_counter()
    if state is not None:
        loader.load_state_dict(state)
    batches = iter(loader)
    batch = next(batches)
    result["first_batch_s"] = time.perf_counter() - began
    result["first_ids"] = [int(x) for x in batch["id"][:4]]
    # With workers the main process yields the first batch itself, before torch starts them (see
    # batched.lead_batch): the second is the first a worker sends.
    next(batches)
    result["second_batch_s"] = time.perf_counter() - began
    if save is not None:
        took = time.perf_counter()
        checkpoint = ds.state_dict(ds.epoch_size // 2, True)
        result["state_dict_s"] = time.perf_counter() - took  # the first of the epoch encodes the draws
        took = time.perf_counter()
        ds.state_dict(ds.epoch_size // 2 + batch_size, True)
        result["state_dict_again_s"] = time.perf_counter() - took
        Path(save).write_text(json.dumps(checkpoint))
        result["hint_chars"] = len(checkpoint.get("astreaming_plan", ""))
    # A preempted job dies here: no clean-up of what the node planned (os._exit skips finalizers).
    print(json.dumps(result), flush=True)
    os._exit(0)


def run_ours(
    data: Path,
    workers: int,
    batch_size: int,
    plans_tmp: Path,
    state: dict[str, Any] | None = None,
    shuffle: bool = True,
    save: Path | None = None,
) -> dict[str, Any]:
    """:func:`child` in a fresh process whose plan files live under ``plans_tmp``."""
    argv = [sys.executable, __file__, "--child", "--data-dir", str(data), "--batch-size", str(batch_size)]
    argv += ["--workers", str(workers)]
    if state is not None:
        # In a file: a checkpoint carrying draws is MBs, more than one command-line argument may hold.
        state_file = Path(tempfile.mkstemp(prefix="state-", suffix=".json", dir=plans_tmp)[1])
        state_file.write_text(json.dumps(state))
        argv += ["--state", str(state_file)]
    argv += [] if shuffle else ["--no-shuffle"]
    argv += [] if save is None else ["--save", str(save)]
    env = dict(os.environ, TMPDIR=str(plans_tmp))
    # The child ends with os._exit, as a preempted job dies: its workers are killed with its process group
    # once it ended, whatever happens (they end by themselves: tests/reliability/test_orphaned_workers.py).
    proc, peak = _common.run_measured(argv, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"astreaming resume failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    result["peak_tree_rss_mb"] = peak
    return result


def run_mosaic(data: Path, workers: int, batch_size: int, state: dict[str, Any] | None) -> dict[str, Any]:
    args = ["--data", str(data), "--workers", str(workers), "--batch-size", str(batch_size)]
    return _common.run_peer(
        "mosaic_resume_loader.py", args + (["--state", json.dumps(state)] if state else [])
    )


def mosaic_state(data: Path, sample: int, batch_size: int) -> dict[str, Any]:
    """mosaic's checkpoint at ``sample`` of epoch 0."""
    save = _common.run_peer(
        "mosaic_resume.py", ["--data", str(data), "--batch-size", str(batch_size), "--save", str(sample)]
    )
    state: dict[str, Any] = save["state"]
    return state


def _fresh(tmp_root: Path) -> Path:
    path = Path(tempfile.mkdtemp(prefix="plans-", dir=tmp_root))
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every cell; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10M,100M", help="comma-separated sample counts")
    parser.add_argument("--workers", default="0,8", help="comma-separated worker counts")
    parser.add_argument("--huge", default="1B", help="astreaming-only size ('' to skip)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="rounds per cell (medians reported)")
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument("--data-dir", help="keep and reuse the indexes here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--no-shuffle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        state = json.loads(Path(args.state).read_text()) if args.state else None
        child(args.data_dir, state, int(args.workers), args.batch_size, not args.no_shuffle, args.save)
        return {}

    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-resume-"))
    root.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix="bench-resume-tmp-"))
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"rows": rows, "cpus": os.cpu_count(), "load_at_start": os.getloadavg()}
    sizes = [_common.count(s) for s in args.sizes.split(",") if s]
    workers = [int(w) for w in args.workers.split(",") if w]
    try:
        for n in sizes:
            data = _dataset(root, n)
            half = n // 2
            state = mosaic_state(data, half, args.batch_size) if not args.skip_mosaic else _state(half)
            for w in workers:
                # The 1-minute load average before the cell: this machine is shared, so say how busy it was.
                row: dict[str, Any] = {"samples": n, "workers": w, "load": round(os.getloadavg()[0], 2)}
                rounds = [_round(data, w, args.batch_size, tmp_root, state, args.skip_mosaic)]
                rounds += [
                    _round(data, w, args.batch_size, tmp_root, state, args.skip_mosaic)
                    for _ in range(args.rounds - 1)
                ]
                row.update(_medians(rounds))
                if args.rounds > 1:
                    row["rounds"] = rounds
                    row["loads"] = [r.pop("load") for r in rounds]
                rows.append(row)
                _print_row(row)
        if args.huge:
            n = _common.count(args.huge)
            data = _dataset(root, n)
            load = round(os.getloadavg()[0], 2)
            plans = _fresh(tmp_root)
            own = plans / "checkpoint.json"
            fresh = run_ours(data, 8, args.batch_size, plans, save=own)
            cold = run_ours(data, 8, args.batch_size, _fresh(tmp_root), _state(n // 2))
            warm = run_ours(data, 8, args.batch_size, plans, _state(n // 2))
            carried = run_ours(data, 8, args.batch_size, _fresh(tmp_root), json.loads(own.read_text()))
            row = {"samples": n, "workers": 8, "fresh": fresh, "cold": cold, "warm": warm, "load": load}
            row["carried"] = carried
            rows.append(row)
            _print_row(row)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def _round(
    data: Path, w: int, batch_size: int, tmp_root: Path, state: dict[str, Any], skip_mosaic: bool
) -> dict[str, Any]:
    """One round of a cell, every loader in a fresh process, one after the other."""
    warm_tmp = _fresh(tmp_root)
    own = warm_tmp / "checkpoint.json"
    result: dict[str, Any] = {"load": round(os.getloadavg()[0], 2)}
    # Leaves the epoch's plan files, and writes astreaming's own checkpoint at the same sample.
    result["fresh"] = run_ours(data, w, batch_size, warm_tmp, save=own)
    result["warm"] = run_ours(data, w, batch_size, warm_tmp, state)
    result["cold"] = run_ours(data, w, batch_size, _fresh(tmp_root), state)
    result["carried"] = run_ours(data, w, batch_size, _fresh(tmp_root), json.loads(own.read_text()))
    # The same resume without shuffling plans nothing: the loader's own start-up cost.
    result["no_shuffle"] = run_ours(data, w, batch_size, _fresh(tmp_root), state, shuffle=False)
    shutil.rmtree(warm_tmp, ignore_errors=True)
    if not skip_mosaic:
        result["mosaic"] = run_mosaic(data, w, batch_size, state)
        if result["mosaic"]["first_ids"] != result["cold"]["first_ids"]:
            raise RuntimeError(f"first batches differ: {result}")
    for kind in ("warm", "carried"):
        if result[kind]["first_ids"] != result["cold"]["first_ids"]:
            raise RuntimeError(f"first batches differ: {result}")
    return result


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per loader and measure, the median over the rounds (the first round's other fields)."""
    merged: dict[str, Any] = {}
    for kind, first in rounds[0].items():
        if not isinstance(first, dict):
            continue
        merged[kind] = dict(first)
        for key, value in first.items():
            if isinstance(value, float):
                merged[kind][key] = statistics.median(r[kind][key] for r in rounds)
    return merged


def _state(sample: int) -> dict[str, Any]:
    """The checkpoint mosaic writes for one rank at ``sample`` of epoch 0 (py1e's default C = 1)."""
    return {
        "epoch": 0,
        "sample_in_epoch": sample,
        "num_canonical_nodes": 1,
        "shuffle_seed": 9176,
        "initial_physical_nodes": 1,
    }


def _dataset(root: Path, n: int) -> Path:
    data = root / f"synthetic-{n}"
    if not (data / "index.json").exists():
        print(f"writing a synthetic index of {n:,} samples ...", flush=True)
        _common.write_synthetic_index(data, n)
    return data


def _print_row(row: dict[str, Any]) -> None:
    brief = {
        k: {m: v[m] for m in ("first_batch_s", "second_batch_s", "peak_tree_rss_mb", "init_s") if m in v}
        for k, v in row.items()
        if isinstance(v, dict)
    }
    print(
        f"{row['samples']:,} samples, {row['workers']} workers, load {row.get('load')}: {json.dumps(brief)}",
        flush=True,
    )


def _size(n: int) -> str:
    return f"{n // 1_000_000_000}B" if n % 1_000_000_000 == 0 else f"{n // 1_000_000}M"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: first batch after load_state_dict and peak tree RSS, both loaders."""
    header = (
        "samples, workers",
        "astreaming: first batch after load (plans warm / cold)",
        "own checkpoint, new machine",
        "fresh epoch",
        "second batch (warm / cold)",
        "same resume, shuffle off",
        "mosaicml-streaming",
        "ratio (warm / cold)",
        "peak tree RSS: astreaming vs mosaic",
        "load (1 min, 2 cores)",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        warm, cold, fresh = (
            r["warm"]["first_batch_s"],
            r["cold"]["first_batch_s"],
            r["fresh"]["first_batch_s"],
        )
        ours_rss = max(r["cold"]["peak_tree_rss_mb"], r["warm"]["peak_tree_rss_mb"]) / 1024
        if "mosaic" in r:
            theirs = r["mosaic"]["first_batch_s"]
            ratio = f"1/{theirs / warm:.0f} / 1/{theirs / cold:.1f}"
            mosaic = f"{theirs:.2f} s"
            rss = f"{ours_rss:.2f} GB vs {r['mosaic']['peak_tree_rss_mb'] / 1024:.2f} GB"
        else:
            ratio, mosaic, rss = "—", "—", f"{ours_rss:.2f} GB"
        floor = f"{r['no_shuffle']['first_batch_s']:.2f} s" if "no_shuffle" in r else "—"
        cells = (
            f"{_size(r['samples'])}, {r['workers']}",
            f"{warm:.2f} s / {cold:.2f} s",
            f"{r['carried']['first_batch_s']:.2f} s" if "carried" in r else "—",
            f"{fresh:.2f} s",
            f"{r['warm'].get('second_batch_s', 0):.2f} s / {r['cold'].get('second_batch_s', 0):.2f} s",
            floor,
        )
        load = f"{r['load']:.1f}" if "load" in r else "—"
        lines.append("| " + " | ".join((*cells, mosaic, ratio, rss, load)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
