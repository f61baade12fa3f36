"""The epoch plan a worker consumes: its sample ids in yield order and the shards it needs, by first use.

The engine calls :func:`plan_worker_epoch` in each DataLoader worker (or in-process). The plan holds only
this worker's part; random batching never materialises the whole epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching import worker_work
from astreaming.order.spec import EpochSpec
from astreaming.order.world import World

__all__ = [
    "NEVER",
    "ResumePoint",
    "WorkerPlan",
    "dataset_len",
    "interleave_worker_batches",
    "plan_worker_epoch",
    "resolve_resume",
    "sample_in_epoch_after",
]

#: ``shard_first_need`` value of a shard this worker never reads this epoch.
NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True, eq=False)
class WorkerPlan:
    """One worker's share of one epoch.

    Attributes:
        epoch: The epoch.
        sample_in_epoch: Samples of the epoch (over all ranks) skipped before this plan (resumption).
        world: The parallel world of this worker (after replication).
        batch_size: Per-device batch size; the DataLoader collates this many consecutive samples of a worker.
        work: (batches, B) sample ids as mosaic deals them to this worker, -1 for padding.
        sample_ids: int64 sample ids in the order the worker yields them (-1 removed).
        shard_first_need: For each global shard, the index in ``sample_ids`` of its first sample, or
            :data:`NEVER`.
        shard_order: Shards this worker needs, in order of first need (the fetch priorities).
    """

    epoch: int
    sample_in_epoch: int
    world: World
    batch_size: int
    work: np.ndarray
    sample_ids: np.ndarray
    shard_first_need: np.ndarray
    shard_order: np.ndarray

    @property
    def num_samples(self) -> int:
        """Samples this worker yields."""
        return len(self.sample_ids)

    def batches(self) -> list[np.ndarray]:
        """The batches the DataLoader collates from this worker: consecutive chunks of ``batch_size``."""
        ids = self.sample_ids
        return [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]


def plan_worker_epoch(spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int = 0) -> WorkerPlan:
    """Plan one worker's epoch.

    Args:
        spec: The dataset's order description (after resolving any checkpoint).
        world: This worker's *parallel* world: ``World.detect().replicate(spec.replication)`` (the caller
            applies replication, as mosaic partitions over the replicated world).
        epoch: Epoch to plan.
        sample_in_epoch: Samples already consumed in this epoch over all (unique) ranks; 0 for a fresh epoch.

    Returns:
        The worker's plan. Resuming costs no more than planning from the start.

    Raises:
        ConfigError: for invalid combinations (see the batching and partition functions).
    """
    if epoch < 0 or sample_in_epoch < 0:
        raise ConfigError(f"epoch ({epoch}) and sample_in_epoch ({sample_in_epoch}) must be non-negative")
    work = worker_work(spec, world, epoch, sample_in_epoch)
    flat = work.reshape(-1)
    ids = np.ascontiguousarray(flat[flat != -1])
    first_need = np.full(spec.num_shards, NEVER, dtype=np.int64)
    if len(ids):
        shards, first = np.unique(spec.shard_of(ids), return_index=True)
        first_need[shards] = first
        order = shards[np.argsort(first, kind="stable")]
    else:
        order = np.zeros(0, dtype=np.int64)
    return WorkerPlan(epoch, sample_in_epoch, world, spec.batch_size, work, ids, first_need, order)


def interleave_worker_batches(per_worker: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """A rank's batch sequence from its workers' batch lists, as torch's DataLoader returns them.

    The DataLoader asks workers round-robin (0, 1, ..., W-1, 0, ...) and skips a worker once it is exhausted.
    """
    out: list[np.ndarray] = []
    cursors = [0] * len(per_worker)
    active = [w for w in range(len(per_worker)) if len(per_worker[w])]
    while active:
        still = []
        for w in active:
            out.append(per_worker[w][cursors[w]])
            cursors[w] += 1
            if cursors[w] < len(per_worker[w]):
                still.append(w)
        active = still
    return out


@dataclass(frozen=True)
class ResumePoint:
    """Where an iteration starts, after looking at a loaded checkpoint.

    Attributes:
        epoch: The epoch to iterate.
        sample_in_epoch: Samples of that epoch to skip.
        num_canonical_nodes, shuffle_seed, initial_physical_nodes: From the checkpoint when it applies,
            else None (keep the dataset's own).
        stale: True when a checkpoint was given but is older than ``next_epoch`` and was not applied.
    """

    epoch: int
    sample_in_epoch: int
    num_canonical_nodes: int | None = None
    shuffle_seed: int | None = None
    initial_physical_nodes: int | None = None
    stale: bool = False


def resolve_resume(checkpoint: Mapping[str, int | None] | None, next_epoch: int) -> ResumePoint:
    """Decide where the next iteration starts, as mosaic's ``_resume`` does.

    A checkpoint whose ``epoch`` is older than ``next_epoch`` (the dataset was already iterated past it) is
    stale: the iteration starts ``next_epoch`` from its first sample, exactly mosaic's order. Mosaic ignores
    it silently; the caller should warn (``stale`` is set for that).

    Raises:
        ConfigError: if a required checkpoint key is missing or negative.
    """
    if checkpoint is None:
        return ResumePoint(next_epoch, 0)
    for key in ("epoch", "sample_in_epoch", "num_canonical_nodes", "shuffle_seed"):
        value = checkpoint.get(key)
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"checkpoint: {key!r} must be a non-negative int, got {value!r}")
    epoch = int(checkpoint["epoch"])  # type: ignore[arg-type]
    if epoch < next_epoch:
        return ResumePoint(next_epoch, 0, stale=True)
    ipn = checkpoint.get("initial_physical_nodes")
    return ResumePoint(
        epoch,
        int(checkpoint["sample_in_epoch"]),  # type: ignore[arg-type]
        int(checkpoint["num_canonical_nodes"]),  # type: ignore[arg-type]
        int(checkpoint["shuffle_seed"]),  # type: ignore[arg-type]
        None if ipn is None else int(ipn),
    )


def dataset_len(epoch_size: int, num_ranks: int, replication: int | None = None) -> int:
    """``len(dataset)`` as mosaic reports it: ``ceil(epoch_size / unique ranks)`` (ignores padding).

    The samples a rank actually yields per epoch can differ (canonical-node and rank padding, dropped
    incomplete batches); the plan's ``num_samples`` is the true count for one worker.
    """
    unique_ranks = num_ranks // (replication or 1)
    return -(-epoch_size // unique_ranks)


def sample_in_epoch_after(
    samples_yielded_by_rank: int, num_ranks: int, replication: int | None = None, resumed_from: int = 0
) -> int:
    """The ``sample_in_epoch`` a checkpoint records (mosaic's StreamingDataLoader arithmetic).

    Args:
        samples_yielded_by_rank: Samples this rank's loader yielded since the iteration began.
        num_ranks: Ranks in the job (unreplicated).
        replication: Replication factor (replicated ranks count once).
        resumed_from: The ``sample_in_epoch`` this iteration resumed from.
    """
    unique_ranks = num_ranks // (replication or 1)
    return resumed_from + samples_yielded_by_rank * unique_ranks
