"""mosaicml-streaming 0.13.0: first batch of a ``StreamingDataLoader`` resumed from a checkpoint (peer venv).

``--state JSON``: build the dataset over a private copy of ``--data``, wrap it in
``StreamingDataLoader(num_workers=W)``, time ``load_state_dict(state)`` through the first batch. Without
``--state``, the first batch of a fresh epoch. The peak RSS of the process tree (main process and
workers) is measured by the caller (``_common.run_measured``).

    python benchmarks/peers/mosaic_resume_loader.py --data DIR --workers 8 --state '{"epoch": 0, ...}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import _peer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="local MDS dataset directory (left untouched)")
    parser.add_argument("--state", help="state_dict JSON to resume from (default: a fresh epoch)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import streaming
    from streaming import StreamingDataLoader, StreamingDataset

    local = _peer.private_copy(args.data)
    result: dict[str, Any] = {"peer": f"mosaicml-streaming {streaming.__version__}"}
    try:
        began = time.perf_counter()
        ds = StreamingDataset(local=str(local), batch_size=args.batch_size, shuffle=True, shuffle_algo="py1e")
        loader = StreamingDataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
        result["init_s"] = time.perf_counter() - began
        began = time.perf_counter()
        if args.state:
            loader.load_state_dict(json.loads(args.state))
        batch = next(iter(loader))
        result["first_batch_s"] = time.perf_counter() - began
        result["first_ids"] = [int(x) for x in batch["id"][:4]]
        del loader, ds
    finally:
        _peer.cleanup(Path(local))
    _peer.emit(result)


if __name__ == "__main__":
    main()
