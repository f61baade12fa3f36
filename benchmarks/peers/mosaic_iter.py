"""mosaicml-streaming 0.13.0: one epoch over a cached local MDS dataset (run with the peer venv's python).

Times ``streaming.StreamingDataset(local=<private copy>, batch_size=B)`` iterated either in a plain loop
(``for s in ds``) or through ``torch.utils.data.DataLoader(ds, batch_size=B, num_workers=W)``, and prints
one JSON line with samples/s. One measurement per process: ``_common.run_peer`` starts each one fresh.

    python benchmarks/peers/mosaic_iter.py --data DIR --mode plain --batch-size 256
    python benchmarks/peers/mosaic_iter.py --data DIR --mode plain --batch-size 1 --limit 20000
    python benchmarks/peers/mosaic_iter.py --data DIR --mode dataloader --batch-size 256 --workers 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _peer


def plain(ds: Any, limit: int) -> tuple[int, int, float]:
    """The loop a user writes: every sample, counting and summing ids (so nothing is optimised away)."""
    count = 0
    id_sum = 0
    first = 0.0
    began = time.perf_counter()
    for sample in ds:
        if not count:
            first = time.perf_counter() - began
        id_sum += sample["id"]
        count += 1
        if count == limit:
            break
    return count, id_sum, first


def loader(ds: Any, batch_size: int, workers: int, limit: int) -> tuple[int, int, float]:
    """torch DataLoader with ``workers`` processes and default collation."""
    from torch.utils.data import DataLoader

    count = 0
    id_sum = 0
    first = 0.0
    began = time.perf_counter()
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        if not count:
            first = time.perf_counter() - began
        count += len(batch["id"])
        id_sum += int(batch["id"].sum())
        if limit and count >= limit:
            break
    return count, id_sum, first


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="local MDS dataset directory (left untouched)")
    parser.add_argument("--mode", choices=["plain", "dataloader"], default="plain")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (mode dataloader)")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many samples (0 = the epoch)")
    parser.add_argument("--shuffle", action="store_true")
    args = parser.parse_args()

    import streaming
    from streaming import StreamingDataset

    local = _peer.private_copy(args.data)
    try:
        began = time.perf_counter()
        ds = StreamingDataset(local=str(local), batch_size=args.batch_size, shuffle=args.shuffle)
        init = time.perf_counter() - began
        began = time.perf_counter()
        if args.mode == "plain":
            count, id_sum, first = plain(ds, args.limit)
        else:
            count, id_sum, first = loader(ds, args.batch_size, args.workers, args.limit)
        seconds = time.perf_counter() - began
        result = {
            "peer": f"mosaicml-streaming {streaming.__version__}",
            "mode": args.mode,
            "batch_size": args.batch_size,
            "workers": args.workers if args.mode == "dataloader" else 0,
            "shuffle": args.shuffle,
            "dataset_samples": int(ds.num_samples),
            "samples": count,
            "id_sum": id_sum,
            "init_s": init,
            "first_sample_s": first,
            "seconds": seconds,
            "samples_per_s": count / seconds,
        }
        del ds
    finally:
        _peer.cleanup(Path(local))
    _peer.emit(result)


if __name__ == "__main__":
    main()
