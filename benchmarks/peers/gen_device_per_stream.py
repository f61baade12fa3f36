"""Generate golden ``generate_work`` cases of the ``device_per_stream`` family with mosaic itself.

Runs under the peer venv (``bash benchmarks/setup_peer.sh``); writes the cases in the format of
``tests/golden/order/generate_work.json`` (``{"meta": ..., "cases": [{"fn", "args", "expected"}]}``):

    /work/peer-venv/bin/python benchmarks/peers/gen_device_per_stream.py \
        tests/golden/order/device_per_stream.json

The family: ``device_per_stream`` batching over several physical nodes (and ranks and workers), streams
weighted by ``choose``/``repeat``/``proportion`` or not at all, shuffle on and off, resumed or not. mosaic
pads every node to a multiple of *all* devices and partitions each stream with the real workers, so its
output carries ``-1`` batches that a per-node reading misses. The dataset object handed to mosaic's
``generate_work`` carries only the attributes it reads; its ``resample_streams`` is mosaic's own method.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import _peer  # noqa: F401  (puts the torchvision stand-in first on sys.path)
import numpy as np
import streaming
from streaming.base.batching import generate_work
from streaming.base.dataset import StreamingDataset
from streaming.base.stream import Stream
from streaming.base.world import World


class _Dataset:
    """The attributes mosaic's batching functions read from a ``StreamingDataset``."""

    resample_streams = StreamingDataset.resample_streams

    def __init__(self, args: dict[str, Any]) -> None:
        self.streams = [
            Stream(local=f"/nonexistent/{i}", **s.get("weights", {})) for i, s in enumerate(args["streams"])
        ]
        sizes = [np.asarray(s["shard_sizes"], np.int64) for s in args["streams"]]
        self.num_streams = len(sizes)
        self.samples_per_shard = np.concatenate(sizes)
        self.shards_per_stream = np.array([len(s) for s in sizes], np.int64)
        self.shard_offset_per_stream = np.concatenate([[0], np.cumsum(self.shards_per_stream)[:-1]]).astype(
            np.int64
        )
        self.sample_offset_per_shard = (np.cumsum(self.samples_per_shard) - self.samples_per_shard).astype(
            np.int64
        )
        samples_per_stream = np.array([int(s.sum()) for s in sizes], np.int64)
        self.epoch_size = Stream.apply_weights(
            self.streams, samples_per_stream, args.get("epoch_size"), args["shuffle_seed"]
        )
        for key in (
            "batch_size",
            "num_canonical_nodes",
            "shuffle",
            "shuffle_algo",
            "shuffle_seed",
            "shuffle_block_size",
            "partition_algo",
            "initial_physical_nodes",
            "sampling_method",
        ):
            setattr(self, key, args[key])
        self.sampling_granularity = args.get("sampling_granularity", 1)
        self.batching_method = args["batching_method"]
        self.epoch_seed_change = self.shuffle and self.sampling_method == "balanced"


def run(args: dict[str, Any]) -> dict[str, Any]:
    """mosaic's answer for one case: the epoch array, or the error it raises."""
    w = args["world"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = _Dataset(args)
            world = World(w["num_nodes"], w["ranks_per_node"], w["workers_per_rank"], 0)
            out = generate_work(
                args["batching_method"], dataset, world, args["epoch"], args["sample_in_epoch"]
            )
        except Exception as exc:  # the error is the expected output
            return {"raises": {"type": type(exc).__name__, "message": str(exc)}}
    return {
        "shape": list(out.shape),
        "flat": out.reshape(-1).tolist(),
        "epoch_size": int(dataset.epoch_size),
        "warnings": [f"{type(x.message).__name__}: {x.message}" for x in caught],
    }


def cases() -> list[dict[str, Any]]:
    """The issue's case first, then a seeded sweep of the family."""
    issue = {
        "streams": [
            {"shard_sizes": [5, 11, 2], "weights": {"choose": 25}},
            {"shard_sizes": [3, 3, 3, 3, 0], "weights": {"repeat": 0.5}},
            {"shard_sizes": [9], "weights": {"choose": 9}},
        ],
        "shuffle_seed": 5,
        "batching_method": "device_per_stream",
        "world": {"num_nodes": 2, "ranks_per_node": 1, "workers_per_rank": 1},
        "batch_size": 3,
        "num_canonical_nodes": 2,
        "epoch": 0,
        "sample_in_epoch": 0,
        "shuffle": False,
        "shuffle_algo": "py1e",
        "shuffle_block_size": 11,
        "partition_algo": "relaxed",
        "initial_physical_nodes": None,
        "sampling_method": "balanced",
    }
    out = [issue]
    rnd = random.Random(20261206)
    worlds = [(2, 1, 1), (2, 1, 2), (2, 2, 1), (3, 1, 1), (4, 1, 2), (2, 2, 2), (1, 2, 2)]
    for world, shuffle in itertools.product(worlds, (False, True)):
        for _ in range(2):
            p, r, wk = world
            streams = []
            proportional = rnd.random() < 0.3
            for _ in range(rnd.randint(2, 3)):
                sizes = [rnd.randint(0 if rnd.random() < 0.15 else 1, 12) for _ in range(rnd.randint(1, 5))]
                if sum(sizes) == 0:
                    sizes[0] = 4
                kind = "proportion" if proportional else rnd.choice(["choose", "repeat", "none"])
                weights: dict[str, Any] = {}
                if kind == "choose":
                    weights = {"choose": rnd.randint(max(1, sum(sizes) // 2), 2 * sum(sizes) + 3)}
                elif kind == "repeat":
                    weights = {"repeat": rnd.choice([0.5, 1.5, 2, 0.75, 1])}
                elif kind == "proportion":
                    weights = {"proportion": round(rnd.uniform(0.2, 1.0), 2)}
                streams.append({"shard_sizes": sizes, "weights": weights})
            c = p * rnd.choice([1, 2])
            case = {
                "streams": streams,
                "shuffle_seed": rnd.randint(0, 10_000),
                "batching_method": "device_per_stream",
                "world": {"num_nodes": p, "ranks_per_node": r, "workers_per_rank": wk},
                "batch_size": rnd.randint(1, 4),
                "num_canonical_nodes": c,
                "epoch": rnd.randint(0, 2),
                "sample_in_epoch": 0,
                "shuffle": shuffle,
                "shuffle_algo": rnd.choice(["py1e", "py1s", "py1br", "py2s", "naive"]),
                "shuffle_block_size": rnd.randint(8, 40),
                "partition_algo": "relaxed",
                "initial_physical_nodes": None,
                "sampling_method": rnd.choice(["balanced", "balanced", "fixed"]),
            }
            if proportional:
                case["epoch_size"] = rnd.randint(30, 80)
            if rnd.random() < 0.4:
                gb = case["batch_size"] * p * r
                case["sample_in_epoch"] = gb * rnd.randint(1, 3) + rnd.choice([0, 0, 1])
            out.append(case)
    return out


def main() -> None:
    logging.disable(logging.WARNING)
    target = Path(sys.argv[1])
    meta = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "mosaicml_streaming": streaming.__version__,
        "group": "generate_work",
        "generator": "benchmarks/peers/gen_device_per_stream.py",
    }
    rows = [{"fn": "generate_work", "args": c, "expected": run(c)} for c in cases()]
    lines = ",\n".join(json.dumps(r) for r in rows)
    target.write_text(f'{{"meta": {json.dumps(meta)}, "cases": [\n{lines}\n]}}\n')
    ok = sum("raises" not in r["expected"] for r in rows)
    print(f"{len(rows)} cases ({ok} arrays, {len(rows) - ok} errors) -> {target}")


if __name__ == "__main__":
    main()
