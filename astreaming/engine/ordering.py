"""The dataset's bridge to ``astreaming.order``: build the order spec, plan this worker's epoch.

Plans are lazy (:class:`~astreaming.order.lazy.LazyWorkerPlan`) and their artefacts are shared by the
processes of a node through files (:func:`plan_store`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from astreaming.cache.plans import FilePlanStore
from astreaming.engine.args import DatasetArgs
from astreaming.engine.shards import ShardTable
from astreaming.order.lazy import LazyWorkerPlan
from astreaming.order.spec import EpochSpec
from astreaming.order.store import PlanStore
from astreaming.order.weights import StreamWeights
from astreaming.order.world import World

__all__ = ["build_spec", "plan_store", "worker_plan"]


def build_spec(
    args: DatasetArgs,
    table: ShardTable,
    weights: Sequence[StreamWeights],
    world: World,
    resume: dict[str, Any] | None,
) -> EpochSpec:
    """The order spec of an iteration; a checkpoint's order fields override the constructor's."""
    parallel = world.replicate(args.replication)
    per_stream = [
        table.samples_per_shard[start : start + count]
        for start, count in zip(
            table.shard_offset_per_stream.tolist(), table.shards_per_stream.tolist(), strict=True
        )
    ]
    spec = EpochSpec.build(
        per_stream,
        batch_size=args.batch_size or 1,
        num_nodes=parallel.num_nodes,
        weights=weights,
        epoch_size=args.epoch_size,
        num_canonical_nodes=args.num_canonical_nodes,
        shuffle=args.shuffle,
        shuffle_algo=args.shuffle_algo,
        shuffle_seed=args.shuffle_seed,
        shuffle_block_size=args.shuffle_block_size,
        partition_algo=args.partition_algo,
        batching_method=args.batching_method,
        sampling_method=args.sampling_method,
        sampling_granularity=args.sampling_granularity,
        initial_physical_nodes=None,
        replication=args.replication,
    )
    if resume is None:
        return spec
    ncn = int(resume.get("num_canonical_nodes") or spec.num_canonical_nodes)
    initial = resume.get("initial_physical_nodes")
    return spec.with_resume(
        num_canonical_nodes=ncn,
        shuffle_seed=int(resume.get("shuffle_seed", spec.shuffle_seed)),
        initial_physical_nodes=None if initial is None else int(initial),
        shuffle_block_size=args.shuffle_block_size,
    )


def plan_store(root: str | Path | None = None) -> FilePlanStore:
    """The node's shared store of plan artefacts (default: ``<tmp>/astreaming-plans``).

    Next to the epoch control files rather than in a stream's ``local``: plan files do not count against
    ``cache_limit``, a read-only ``local`` still shares them, and their names hash every input of the
    plan (shard sizes, weights, seeds, world, epoch), so jobs and datasets never collide.
    """
    return FilePlanStore(Path(root) if root is not None else Path(tempfile.gettempdir()) / "astreaming-plans")


def worker_plan(
    spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int, store: PlanStore | None = None
) -> LazyWorkerPlan:
    """This worker's plan for the epoch, computed as it is consumed (chunks of sample ids, no padding).

    Raises:
        ConfigError: for an invalid configuration (at once, not at the first chunk).
    """
    return LazyWorkerPlan(spec, world.replicate(spec.replication), epoch, sample_in_epoch, store=store)
