"""The mosaicml-streaming 0.13.0 side of the benchmarks, on its own (run with astreaming's python).

Writes the datasets (astreaming's MDSWriter when importable, else mosaic's: the bytes are identical), then
runs each measurement of ``mosaic_iter.py`` / ``mosaic_resume.py`` in its own peer-venv subprocess and
prints the figures. Needs the peer venv: ``bash benchmarks/setup_peer.sh``.

    python benchmarks/peers/bench_mosaic.py                       # 200k small samples, 100M resume index
    python benchmarks/peers/bench_mosaic.py --samples 1M --kind large --resume-samples 10M
    python benchmarks/peers/bench_mosaic.py --skip-resume --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common


def iteration(data: Path, samples: int, bs1_limit: int, repeat: int) -> list[dict[str, Any]]:
    """Plain loop at batch size 256 and 1, DataLoader with 2 workers: best of ``repeat`` runs each."""
    runs: list[tuple[str, dict[str, Any]]] = [
        ("plain bs256", {"mode": "plain", "batch_size": 256}),
        # mosaic runs ~1k samples/s at batch size 1: a whole epoch would take minutes, a prefix tells.
        ("plain bs1", {"mode": "plain", "batch_size": 1, "limit": min(bs1_limit, samples)}),
        ("DataLoader bs256 w2", {"mode": "dataloader", "batch_size": 256, "workers": 2}),
    ]
    rows = []
    for name, kwargs in runs:
        best: dict[str, Any] | None = None
        for _ in range(repeat):
            out = _common.mosaic_iter(data, **kwargs)
            if best is None or out["samples_per_s"] > best["samples_per_s"]:
                best = out
        assert best is not None
        expected = int(kwargs.get("limit") or samples)
        if best["samples"] != expected or best["id_sum"] != expected * (expected - 1) // 2:
            raise RuntimeError(f"{name}: mosaic yielded {best['samples']} samples, not ids 0..{expected - 1}")
        rows.append(
            {
                "name": name,
                **{k: best[k] for k in ("samples", "seconds", "samples_per_s", "first_sample_s", "init_s")},
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", default="200k", help="samples in the iteration dataset")
    parser.add_argument("--kind", default="small", choices=sorted(_common.PAYLOADS))
    parser.add_argument("--bs1-limit", type=_common.count, default=20_000, help="samples timed at bs 1")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best is kept)")
    parser.add_argument("--resume-samples", default="100M", help="samples in the synthetic resume index")
    parser.add_argument("--skip-resume", action="store_true")
    parser.add_argument("--writer", default="auto", choices=["auto", "astreaming", "mosaic"])
    parser.add_argument("--data-dir", help="keep and reuse datasets here (default: a temporary directory)")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()

    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-mosaic-"))
    samples = _common.count(args.samples)
    report: dict[str, Any] = {}
    try:
        data = root / f"{args.kind}-{samples}"
        report["dataset"] = _common.ensure_dataset(data, samples, args.kind, args.writer)
        print(f"dataset: {report['dataset']}")
        report["iteration"] = iteration(data, samples, args.bs1_limit, args.repeat)
        print(f"\nmosaicml-streaming, cached local iteration ({samples:,} {args.kind} samples)")
        _common.print_table(report["iteration"], ratio=("samples_per_s", "plain bs256"))

        if not args.skip_resume:
            num = _common.count(args.resume_samples)
            index_dir = root / f"synthetic-{num}"
            if not (index_dir / "index.json").exists():
                report["synthetic_index"] = _common.write_synthetic_index(index_dir, num, writer=args.writer)
            res = _common.mosaic_resume(index_dir, num // 2)
            report["resume"] = res
            save, resume = res["save"], res["resume"]
            print(
                f"\nmosaicml-streaming, checkpoint and resume at sample {num // 2:,} of {num:,} (py1e, bs32)"
            )
            _common.print_table(
                [
                    {"step": "init (fresh), s", "value": save["init_s"]},
                    {"step": "first sample (fresh epoch), s", "value": save["first_sample_s"]},
                    {"step": "state_dict, s", "value": save["state_dict_s"]},
                    {"step": "init (resumed process), s", "value": resume["init_s"]},
                    {"step": "load_state_dict, s", "value": resume["load_state_dict_s"]},
                    {"step": "first sample after resume, s", "value": resume["first_sample_s"]},
                    {"step": "resume total, s", "value": res["resume_total_s"]},
                    {"step": "peak RSS, resumed process (MB)", "value": resume["max_rss_mb"]},
                ]
            )
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
