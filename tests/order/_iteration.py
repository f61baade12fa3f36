"""Predict what each rank of an iteration golden case receives, from the plans the engine will consume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astreaming.order import (
    EpochSpec,
    StreamWeights,
    World,
    interleave_worker_batches,
    plan_worker_epoch,
)

CASES_PATH = Path(__file__).parent.parent / "golden" / "iteration" / "cases.json"
_SPEC_KWARGS = (
    "epoch_size",
    "num_canonical_nodes",
    "shuffle",
    "shuffle_algo",
    "shuffle_seed",
    "shuffle_block_size",
    "partition_algo",
    "batching_method",
    "sampling_method",
    "sampling_granularity",
    "replication",
)


def load_cases() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = json.loads(CASES_PATH.read_text())
    return data["meta"], data["cases"]


def rank_worlds(world: dict[str, int], replication: int | None) -> list[list[World]]:
    """Per rank, the parallel (replicated) world of each of its workers (in-process = one worker)."""
    ranks_per_node = world["local_world_size"]
    num_nodes = world["world_size"] // ranks_per_node
    workers = max(1, world["num_workers"])
    return [
        [
            World.from_rank(num_nodes, ranks_per_node, workers, rank, w).replicate(replication)
            for w in range(workers)
        ]
        for rank in range(world["world_size"])
    ]


def build_spec(
    meta: dict[str, Any],
    case: dict[str, Any],
    dataset_kwargs: dict[str, Any],
    num_nodes: int,
    checkpoint: dict[str, Any] | None = None,
) -> EpochSpec:
    sizes = [meta["datasets"][s["dataset"]]["samples_per_shard"] for s in case["streams"]]
    weights = []
    for stream in case["streams"]:
        kw = {k: v for k, v in stream.get("kwargs", {}).items() if k in ("proportion", "repeat", "choose")}
        weights.append(StreamWeights(**kw))
    kwargs = {k: v for k, v in dataset_kwargs.items() if k in _SPEC_KWARGS}
    spec = EpochSpec.build(
        sizes, batch_size=dataset_kwargs["batch_size"], num_nodes=num_nodes, weights=weights, **kwargs
    )
    if checkpoint is not None:
        spec = spec.with_resume(
            num_canonical_nodes=checkpoint["num_canonical_nodes"],
            shuffle_seed=checkpoint["shuffle_seed"],
            initial_physical_nodes=checkpoint["initial_physical_nodes"],
            shuffle_block_size=dataset_kwargs.get("shuffle_block_size"),
        )
    return spec


def predict_ranks(
    spec: EpochSpec, worlds: list[list[World]], epoch: int, sample_in_epoch: int
) -> list[list[list[int]]]:
    """Each rank's batches (lists of ids), emulating the DataLoader's worker round-robin."""
    out = []
    for rank_workers in worlds:
        per_worker = [plan_worker_epoch(spec, w, epoch, sample_in_epoch).batches() for w in rank_workers]
        out.append([b.tolist() for b in interleave_worker_batches(per_worker)])
    return out
