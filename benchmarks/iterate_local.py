"""Cached local iteration, side by side: astreaming, a hand-written mmap loop, and mosaicml-streaming.

One MDS dataset of 200k small samples (``{"id": int, "text": str, "blob": bytes}``, ~30 B each,
``_common.make_sample``) already in the cache (``local=`` only, no remote), iterated for one epoch by:

- astreaming ``StreamingDataset``: plain loop at batch_size 256 and 1, ``async for``, and torch
  ``DataLoader(num_workers=2, batch_size=256)``;
- astreaming ``LocalDataset``: ``for i in range(len(ds)): ds[i]``;
- a minimal hand-written loop that maps the shard and decodes the same three columns into a dict
  (``read_local.read_handwritten``);
- mosaicml-streaming 0.13.0 in the peer venv (``peers/mosaic_iter.py``): plain loop at batch_size 256
  and 1 (the first ``--bs1-limit`` samples: it runs ~1k samples/s there), DataLoader with 2 workers.

Every loop sums the ids it sees and the sum is checked, so no loop can skip samples. Prints samples/s
with ratios to mosaic's plain loop and to the hand-written loop. DESIGN §8 targets: plain loop ≥ 25x
mosaic's, and within 1.5x of the hand-written loop.

    python benchmarks/iterate_local.py                       # 200k samples, best of 3 (mosaic: best of 1)
    python benchmarks/iterate_local.py --samples 1M --repeat 5 --mosaic-repeat 2 --json out.json
    python benchmarks/iterate_local.py --skip-mosaic
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import read_local


def _sum_plain(data: Path, batch_size: int) -> tuple[int, int]:
    from astreaming import StreamingDataset

    ds = StreamingDataset(local=str(data), batch_size=batch_size)
    count = id_sum = 0
    for sample in ds:
        id_sum += sample["id"]
        count += 1
    return count, id_sum


def _sum_async(data: Path, batch_size: int) -> tuple[int, int]:
    from astreaming import StreamingDataset

    async def run() -> tuple[int, int]:
        ds = StreamingDataset(local=str(data), batch_size=batch_size)
        count = id_sum = 0
        async for sample in ds:
            id_sum += sample["id"]
            count += 1
        return count, id_sum

    return asyncio.run(run())


def _sum_dataloader(data: Path, batch_size: int, workers: int) -> tuple[int, int]:
    from torch.utils.data import DataLoader

    from astreaming import StreamingDataset

    ds = StreamingDataset(local=str(data), batch_size=batch_size)
    count = id_sum = 0
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        count += len(batch["id"])
        id_sum += int(batch["id"].sum())
    return count, id_sum


def _sum_localdataset(data: Path) -> tuple[int, int]:
    from astreaming.format.local import LocalDataset

    ds = LocalDataset(data)
    return len(ds), read_local.read_localdataset(data)


def _sum_hand(data: Path) -> tuple[int, int]:
    index = json.loads((data / "index.json").read_text())
    return sum(s["samples"] for s in index["shards"]), read_local.read_handwritten(data)


def measure(name: str, fn: Callable[[], tuple[int, int]], samples: int, repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` runs of ``fn`` (which returns ``(count, id_sum)``, checked against ``samples``)."""
    seconds, (count, id_sum) = _common.best_of(fn, repeat)
    if count != samples or id_sum != samples * (samples - 1) // 2:
        raise RuntimeError(f"{name}: yielded {count} samples with id sum {id_sum}, not ids 0..{samples - 1}")
    return {"name": name, "samples": count, "seconds": seconds, "samples_per_s": _common.rate(count, seconds)}


def mosaic_rows(data: Path, samples: int, bs1_limit: int, repeat: int) -> list[dict[str, Any]]:
    """mosaic's three loops, each in fresh peer processes, best of ``repeat``."""
    runs: list[tuple[str, dict[str, Any]]] = [
        ("mosaic bs256", {"mode": "plain", "batch_size": 256}),
        ("mosaic bs1 (prefix)", {"mode": "plain", "batch_size": 1, "limit": min(bs1_limit, samples)}),
        ("mosaic DataLoader w2 bs256", {"mode": "dataloader", "batch_size": 256, "workers": 2}),
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
        rows.append({"name": name, **{k: best[k] for k in ("samples", "seconds", "samples_per_s")}})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every loop and print the table; return the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="See the module docstring for what each row measures.",
    )
    parser.add_argument("--samples", type=_common.count, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per astreaming/hand loop (best kept)")
    parser.add_argument("--mosaic-repeat", type=int, default=1, help="runs per mosaic loop (best kept)")
    parser.add_argument("--bs1-limit", type=_common.count, default=20_000, help="mosaic samples at bs 1")
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument("--data-dir", help="keep and reuse the dataset here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-iterate-"))
    n = args.samples
    try:
        data = root / f"small-{n}"
        info = _common.ensure_dataset(data, n, "small")
        print(f"dataset: {info['samples']:,} small samples, {info['shards']} shard(s), {info['bytes']:,} B")
        runs: list[tuple[str, Callable[[], tuple[int, int]]]] = [
            ("hand-written mmap loop", lambda: _sum_hand(data)),
            ("astreaming bs256", lambda: _sum_plain(data, 256)),
            ("astreaming bs1", lambda: _sum_plain(data, 1)),
            ("astreaming async bs256", lambda: _sum_async(data, 256)),
            ("astreaming DataLoader w2 bs256", lambda: _sum_dataloader(data, 256, 2)),
            ("LocalDataset ds[i] loop", lambda: _sum_localdataset(data)),
        ]
        rows = [measure(name, fn, n, args.repeat) for name, fn in runs]
        if not args.skip_mosaic:
            rows += mosaic_rows(data, n, args.bs1_limit, args.mosaic_repeat)
    finally:
        if not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\ncached local iteration, {n:,} small samples, one epoch (time includes dataset init)")
    hand = next(r["samples_per_s"] for r in rows if r["name"] == "hand-written mmap loop")
    for row in rows:
        row["hand_over_this"] = round(hand / row["samples_per_s"], 2)
    base = "mosaic bs256" if not args.skip_mosaic else "hand-written mmap loop"
    _common.print_table(rows, ratio=("samples_per_s", base))
    if not args.skip_mosaic:
        by = {r["name"]: r["samples_per_s"] for r in rows}
        print("\ntargets (DESIGN §8)")
        ratios = [
            ("plain bs256 / mosaic bs256 (>= 25)", by["astreaming bs256"] / by["mosaic bs256"], True),
            ("plain bs1 / mosaic bs1 (>= 25)", by["astreaming bs1"] / by["mosaic bs1 (prefix)"], True),
            ("hand loop / plain bs256 (<= 1.5)", hand / by["astreaming bs256"], False),
        ]
        _common.print_table(
            [
                {
                    "target": what,
                    "value": round(v, 2),
                    "met": "yes" if (v >= 25 if up else v <= 1.5) else "NO",
                }
                for what, v, up in ratios
            ]
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": info, "rows": rows}, indent=2))
    return {"dataset": info, "rows": rows}


if __name__ == "__main__":
    main()
