"""Helpers shared by the batching methods: one stream's (or all streams') epoch ids, and the final layout."""

from __future__ import annotations

import numpy as np

from astreaming.order.partition import partition_layout
from astreaming.order.resample import Resampled, resample_streams
from astreaming.order.shuffle import get_shuffle
from astreaming.order.spec import EpochSpec

__all__ = ["drop_and_layout", "resample", "stream_ids"]


def resample(spec: EpochSpec, epoch: int, stream_id: int | None = None) -> Resampled:
    """The epoch's units and big-to-sample map for all streams or one."""
    return resample_streams(
        spec.samples_per_shard,
        spec.choose_per_stream,
        seed=spec.shuffle_seed,
        epoch=epoch,
        sampling_method=spec.sampling_method,
        sampling_granularity=spec.sampling_granularity,
        shuffle=spec.shuffle,
        stream_id=stream_id,
    )


def stream_ids(
    spec: EpochSpec, epoch: int, stream_id: int, shape: tuple[int, int, int, int], block_size: int
) -> np.ndarray:
    """One stream's full partition of sample ids for world ``shape`` = (P, R, W, B), no resumption."""
    res = resample(spec, epoch, stream_id)
    layout = partition_layout(
        spec.partition_algo, res.epoch_size, spec.num_canonical_nodes, *shape, 0, spec.initial_physical_nodes
    )
    big = layout.full()
    if spec.shuffle:
        perm = get_shuffle(
            spec.shuffle_algo,
            res.shuffle_units,
            spec.num_canonical_nodes,
            spec.shuffle_seed,
            epoch,
            block_size,
        )
        big = np.where(big != -1, perm[np.maximum(big, 0)], -1)
    return res.map(big)


def drop_and_layout(
    batches: np.ndarray,
    sample_in_epoch: int,
    num_nodes: int,
    ranks_per_node: int,
    workers_per_rank: int,
    batch_size: int,
) -> np.ndarray:
    """Drop whole global batches already seen, pad to whole worker rounds, and deal them out.

    ``batches`` is (num_global_batches, P * R * B) in device order (node, rank, slot). Global batch k goes to
    worker ``k % W`` of every rank, as torch's DataLoader fetches round-robin over workers.
    """
    global_batch = num_nodes * ranks_per_node * batch_size
    batches = batches[sample_in_epoch // global_batch :]
    rounds = -(-len(batches) // workers_per_rank)
    padded = np.full((rounds * workers_per_rank, global_batch), -1, dtype=np.int64)
    padded[: len(batches)] = batches
    return padded.reshape(-1, workers_per_rank, num_nodes, ranks_per_node, batch_size).transpose(
        2, 3, 1, 0, 4
    )
