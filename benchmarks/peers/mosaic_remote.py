"""mosaicml-streaming 0.13.0: epochs streamed from a remote into an empty cache (peer venv's python).

Times ``StreamingDataset(remote=R, local=<fresh dir>, batch_size=B)`` from construction (which downloads
the index) to the first sample and to the end of each epoch, in a plain loop. The remote is typically
moto's S3 behind the fault proxy (``serve_proxy.py``): mosaic's boto3 client honours
``S3_ENDPOINT_URL``, which ``_common.run_peer(env=...)`` passes in.

    python benchmarks/peers/mosaic_remote.py --remote s3://bench/data --batch-size 256
    python benchmarks/peers/mosaic_remote.py --remote s3://bench/data --cache-limit 50000000 --epochs 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _peer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--remote", required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cache-limit", type=int, default=0, help="bytes (0 = no limit)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--shuffle", action="store_true")
    args = parser.parse_args()

    import boto3  # noqa: F401  (imported before the clock starts, like astreaming's backend)
    import streaming
    from streaming import StreamingDataset

    local = Path(tempfile.mkdtemp(prefix="mosaic-remote-")) / "data"
    result: dict[str, Any] = {"peer": f"mosaicml-streaming {streaming.__version__}"}
    try:
        began = time.perf_counter()
        ds = StreamingDataset(
            remote=args.remote,
            local=str(local),
            batch_size=args.batch_size,
            shuffle=args.shuffle,
            cache_limit=args.cache_limit or None,
        )
        result["init_s"] = time.perf_counter() - began
        epochs = []
        for _ in range(args.epochs):
            count = id_sum = 0
            first = 0.0
            for sample in ds:
                if not count:
                    first = time.perf_counter() - began
                id_sum += int(sample["id"])
                count += 1
            epochs.append({"samples": count, "id_sum": id_sum, "first_sample_s": first})
            epochs[-1]["seconds"] = time.perf_counter() - began
            began = time.perf_counter()
        result["epochs"] = epochs
        del ds
    finally:
        _peer.cleanup()
        shutil.rmtree(local.parent, ignore_errors=True)
    _peer.emit(result)


if __name__ == "__main__":
    main()
