"""Partitioning an epoch's positions over nodes, ranks, workers and batches (``orig`` and ``relaxed``)."""

from __future__ import annotations

import numpy as np

from astreaming.order.partition.orig import EmptyEpochError, OrigLayout, orig_layout
from astreaming.order.partition.relaxed import PartitionLayout, partition_layout

__all__ = [
    "EmptyEpochError",
    "OrigLayout",
    "PartitionLayout",
    "get_partitions",
    "orig_layout",
    "partition_layout",
]


def get_partitions(
    algo: str,
    num_samples: int,
    num_canonical_nodes: int,
    num_physical_nodes: int,
    ranks_per_node: int,
    workers_per_rank: int,
    batch_size: int = 1,
    drop_first: int = 0,
    initial_physical_nodes: int | None = None,
) -> np.ndarray:
    """The epoch's full partition (mosaicml-streaming's ``get_partitions``).

    Args:
        algo: ``orig`` or ``relaxed``.
        num_samples: Positions in the epoch (N).
        num_canonical_nodes: C.
        num_physical_nodes: P.
        ranks_per_node: R.
        workers_per_rank: W.
        batch_size: Per-device batch size B.
        drop_first: Positions already consumed (resumption); rounded down to a multiple of P.
        initial_physical_nodes: Node count of the run being resumed (``relaxed`` only).

    Returns:
        int64 array of shape (P, R, W, batches_per_worker, B) of positions, -1 for padding.
    """
    return partition_layout(
        algo,
        num_samples,
        num_canonical_nodes,
        num_physical_nodes,
        ranks_per_node,
        workers_per_rank,
        batch_size,
        drop_first,
        initial_physical_nodes,
    ).full()
