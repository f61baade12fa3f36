"""mosaicml-streaming 0.13.0: cost of a checkpoint and of resuming mid-epoch (peer venv's python).

Two phases, each in its own process because a resumed job is a new process, and because mosaic ignores a
checkpoint loaded into a dataset object that has already been iterated (reference §4, issue #437):

1. ``--save K``: build the dataset, take the first sample of a fresh epoch, then time
   ``state_dict(K, from_beginning=True)``; prints the state.
2. ``--state JSON``: build the dataset, time ``load_state_dict(state)``, then the first sample of the
   resumed epoch (mosaic regenerates the whole epoch's partition to skip ahead, reference §4).

    python benchmarks/peers/mosaic_resume.py --data DIR --save 50000000
    python benchmarks/peers/mosaic_resume.py --data DIR --state '{"epoch": 0, ...}'

The dataset is typically ``_common.write_synthetic_index``'s: a 100M-sample index whose shards are hard
links to one real shard, so every sample is readable.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import _peer


def first_sample(ds: Any) -> tuple[float, int]:
    """Seconds from ``iter(ds)`` to the first sample, and that sample's id."""
    began = time.perf_counter()
    sample = next(iter(ds))
    return time.perf_counter() - began, int(sample["id"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="local MDS dataset directory (left untouched)")
    phase = parser.add_mutually_exclusive_group(required=True)
    phase.add_argument("--save", type=int, metavar="K", help="checkpoint after K samples of the epoch")
    phase.add_argument("--state", help="state_dict JSON to resume from")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-shuffle", dest="shuffle", action="store_false")
    parser.add_argument("--shuffle-algo", default="py1e")
    args = parser.parse_args()

    import streaming
    from streaming import StreamingDataset

    local = _peer.private_copy(args.data)
    result: dict[str, Any] = {"peer": f"mosaicml-streaming {streaming.__version__}"}
    try:
        began = time.perf_counter()
        ds = StreamingDataset(
            local=str(local), batch_size=args.batch_size, shuffle=args.shuffle, shuffle_algo=args.shuffle_algo
        )
        result["init_s"] = time.perf_counter() - began
        result["dataset_samples"] = int(ds.num_samples)
        if args.save is not None:
            result["first_sample_s"], result["first_sample_id"] = first_sample(ds)
            began = time.perf_counter()
            state = ds.state_dict(args.save, True)
            result["state_dict_s"] = time.perf_counter() - began
            result["state"] = state
        else:
            state = json.loads(args.state)
            began = time.perf_counter()
            ds.load_state_dict(state)
            result["load_state_dict_s"] = time.perf_counter() - began
            result["first_sample_s"], result["first_sample_id"] = first_sample(ds)
            result["resumed_from"] = state
        result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        del ds
    finally:
        _peer.cleanup(Path(local))
    _peer.emit(result)


if __name__ == "__main__":
    main()
