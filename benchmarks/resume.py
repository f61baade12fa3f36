"""Resume mid-epoch on a 100M-sample index: astreaming vs mosaicml-streaming, from the same checkpoint.

The dataset is ``_common.write_synthetic_index``'s (10,000 shards, every one a hard link to one real
shard, so every sample is readable). mosaic writes the checkpoint (``state_dict(K, from_beginning=True)``
at ``K`` = half the epoch, py1e shuffle, batch size 32, one rank) and resumes from it in a fresh process
(``peers/mosaic_resume.py``); astreaming resumes from *mosaic's* checkpoint in a fresh process too, and
from its own. Each resume is timed from construction (index parse) through ``load_state_dict`` to the
first sample; the first sample's ``id`` must be mosaic's (same sample order).

Target (DESIGN §8): astreaming's resume total ≤ 1/10 of mosaic's, and under 2 s.

    python benchmarks/resume.py                       # 100M samples
    python benchmarks/resume.py --samples 10M --repeat 3 --data-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def child(data: str, state: dict[str, Any] | None, save: int | None, batch_size: int) -> dict[str, Any]:
    """One phase in this (fresh) process: resume from ``state``, or checkpoint after ``save`` samples."""
    from astreaming import StreamingDataset

    result: dict[str, Any] = {}
    began = time.perf_counter()
    ds = StreamingDataset(local=data, batch_size=batch_size, shuffle=True, shuffle_algo="py1e")
    result["init_s"] = time.perf_counter() - began
    if state is not None:
        began = time.perf_counter()
        ds.load_state_dict(state)
        result["load_state_dict_s"] = time.perf_counter() - began
    began = time.perf_counter()
    sample = next(iter(ds))
    result["first_sample_s"] = time.perf_counter() - began
    result["first_sample_id"] = int(sample["id"])
    if save is not None:
        result["state"] = ds.state_dict(save, True)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_child(
    data: Path, batch_size: int, state: dict[str, Any] | None = None, save: int | None = None
) -> dict[str, Any]:
    """:func:`child` in a fresh process (a resumed job is a new process)."""
    args = [sys.executable, __file__, "--child", "--data-dir", str(data), "--batch-size", str(batch_size)]
    if state is not None:
        args += ["--state", json.dumps(state)]
    if save is not None:
        args += ["--save", str(save)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"astreaming resume failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def _total(r: dict[str, Any]) -> float:
    return float(r["init_s"] + r.get("load_state_dict_s", 0.0) + r["first_sample_s"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Checkpoint with mosaic, resume with both; print the phases and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=_common.count, default=100_000_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="astreaming resumes (best kept)")
    parser.add_argument("--skip-mosaic", action="store_true", help="astreaming's own checkpoint only")
    parser.add_argument("--data-dir", help="keep and reuse the index here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        state = json.loads(args.state) if args.state else None
        print(json.dumps(child(args.data_dir, state, args.save, args.batch_size)), flush=True)
        return {}

    n = args.samples
    half = n // 2
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-resume-"))
    report: dict[str, Any] = {}
    try:
        data = root / f"synthetic-{n}"
        if not (data / "index.json").exists():
            report["index"] = _common.write_synthetic_index(data, n)
        ours_save = run_child(data, args.batch_size, save=half)
        report["astreaming_save"] = ours_save
        states = [("astreaming, own", ours_save["state"])]
        if not args.skip_mosaic:
            mosaic = _common.mosaic_resume(data, half, batch_size=args.batch_size)
            report["mosaic"] = mosaic
            states.insert(0, ("astreaming, mosaic's checkpoint", mosaic["save"]["state"]))
        runs: dict[str, dict[str, Any]] = {}
        for name, state in states:
            best = None
            for _ in range(args.repeat):
                out = run_child(data, args.batch_size, state=state)
                if best is None or _total(out) < _total(best):
                    best = out
            assert best is not None
            runs[name] = best
        report["astreaming"] = runs
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)

    rows = []
    if not args.skip_mosaic:
        m = report["mosaic"]["resume"]
        rows.append({"name": "mosaic", **_phases(m), "total_s": report["mosaic"]["resume_total_s"]})
    rows += [{"name": name, **_phases(r), "total_s": _total(r)} for name, r in runs.items()]
    print(f"\nresume at sample {half:,} of {n:,} (py1e, batch size 32, one rank), fresh process each")
    _common.print_table(rows, ratio=("total_s", "mosaic") if not args.skip_mosaic else None)
    ids = {row["name"]: row["first_id"] for row in rows}
    if len(set(ids.values())) != 1:
        raise RuntimeError(f"the resumed first samples differ: {ids}")
    print(f"\nfirst sample id after resume: {next(iter(ids.values()))} for every row (same order)")
    if not args.skip_mosaic:
        ours = rows[1]["total_s"]
        theirs = rows[0]["total_s"]
        met = ours <= theirs / 10 and ours < 2
        print(
            f"target: <= 1/10 of mosaic and < 2 s: {ours:.3f} s vs {theirs:.2f} s -> {'yes' if met else 'NO'}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def _phases(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "init_s": r["init_s"],
        "load_s": r.get("load_state_dict_s"),
        "first_sample_s": r["first_sample_s"],
        "first_id": r["first_sample_id"],
        "peak_rss_MB": r["max_rss_mb"],
    }


if __name__ == "__main__":
    main()
