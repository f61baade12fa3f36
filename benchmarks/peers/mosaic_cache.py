"""mosaicml-streaming 0.13.0 under ``cache_limit``: epochs from a remote through a DataLoader (peer venv).

One process of ``benchmarks/cache_limit.py``: ``StreamingDataset(remote=R, local=L, cache_limit=C)``
iterated ``--epochs`` times through ``torch.utils.data.DataLoader(num_workers=W)``, timed from
construction (which downloads the index) to the end of each epoch. Prints one JSON line with, per epoch,
the sample count, the id sum and (``--ids``) the ids themselves.

``--local`` shares a cache directory with other processes (the soak: several ranks and jobs on one
node, RANK / WORLD_SIZE / LOCAL_WORLD_SIZE in the environment); then the host-global shared-memory sweep
is skipped, since it would pull the segments from under the other live processes (the caller sweeps
after all of them exit). Without it a fresh directory is used and removed.

    python benchmarks/peers/mosaic_cache.py --remote s3://bench/data --cache-limit 9000000 --workers 2
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import _peer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--remote", required=True)
    parser.add_argument("--local", help="shared cache directory (default: a fresh private one)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cache-limit", type=int, default=0, help="bytes (0 = no limit)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--shuffle-block-size", type=int, default=0, help="0 = mosaic's default")
    parser.add_argument("--shuffle-seed", type=int, default=None)
    parser.add_argument("--predownload", type=int, default=None, help="default: 8 x batch size")
    parser.add_argument("--ids", action="store_true", help="report every sample id of every epoch")
    args = parser.parse_args()

    import boto3  # noqa: F401  (imported before the clock starts, like astreaming's backend)
    import streaming
    from streaming import StreamingDataset
    from torch.utils.data import DataLoader

    private = args.local is None
    local = Path(tempfile.mkdtemp(prefix="mosaic-cache-")) / "data" if private else Path(args.local)
    result: dict[str, Any] = {"peer": f"mosaicml-streaming {streaming.__version__}"}
    epochs: list[dict[str, Any]] = []
    result["epochs"] = epochs
    try:
        began = time.perf_counter()
        ds = StreamingDataset(
            remote=args.remote,
            local=str(local),
            batch_size=args.batch_size,
            shuffle=args.shuffle,
            shuffle_block_size=args.shuffle_block_size or None,
            cache_limit=args.cache_limit or None,
            predownload=args.predownload,
            **({} if args.shuffle_seed is None else {"shuffle_seed": args.shuffle_seed}),
        )
        result["init_s"] = time.perf_counter() - began
        loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
        for _ in range(args.epochs):
            began = time.perf_counter()
            count = id_sum = 0
            ids: list[int] = []
            for batch in loader:
                count += len(batch["id"])
                id_sum += int(batch["id"].sum())
                if args.ids:
                    ids.extend(int(i) for i in batch["id"])
            epoch: dict[str, Any] = {"samples": count, "id_sum": id_sum}
            epoch["seconds"] = time.perf_counter() - began
            if args.ids:
                epoch["ids"] = ids
            epochs.append(epoch)
        del loader, ds
    except Exception as exc:  # the caller records what happened; it is a measurement, not a crash
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if private:
            _peer.cleanup()
            shutil.rmtree(local.parent, ignore_errors=True)
        else:
            gc.collect()
    _peer.emit(result)


if __name__ == "__main__":
    main()
