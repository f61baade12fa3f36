"""``per_stream`` batching: every global batch comes from a single stream."""

from __future__ import annotations

import logging

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching._common import drop_and_layout, stream_ids
from astreaming.order.spec import EpochSpec
from astreaming.order.world import World

log = logging.getLogger(__name__)

__all__ = ["generate_work_per_stream"]


def generate_work_per_stream(spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int) -> np.ndarray:
    """The full (P, R, W, batches, B) array of sample ids for per-stream batching.

    Raises:
        ConfigError: if a stream cannot fill one global batch.
    """
    shape = (world.num_nodes, world.ranks_per_node, world.workers_per_rank, spec.batch_size)
    global_batch = spec.batch_size * world.num_ranks
    per_stream = []
    for index in range(len(spec.samples_per_shard)):
        block = int(spec.shuffle_block_size * spec.proportion_per_stream[index])
        ids = stream_ids(spec, epoch, index, shape, block)
        # Global batches in traversal order (batch, worker, node, rank, slot); keep only complete ones.
        rows = ids.transpose(3, 2, 0, 1, 4).reshape(-1, global_batch)
        rows = rows[(rows != -1).all(axis=1)]
        per_stream.append(rows)
    # Every stream is built before any is refused, as in mosaic (same warnings on the way).
    for index, rows in enumerate(per_stream):
        if not len(rows):
            raise ConfigError(
                f"Stream with index {index} does not have an adequate number of samples to construct a "
                f"complete global batch of {global_batch}. Training will occur without any samples from this "
                "stream."
            )
    origins = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in enumerate(per_stream)])
    balanced = spec.shuffle and spec.sampling_method == "balanced"
    np.random.default_rng(spec.shuffle_seed + epoch if balanced else spec.shuffle_seed).shuffle(origins)
    batches = np.empty((len(origins), global_batch), dtype=np.int64)
    for index, rows in enumerate(per_stream):
        batches[origins == index] = rows
    if sample_in_epoch % global_batch:
        # mosaic drops the partial global batch silently here (no warning); log it.
        log.info(
            "%s batching resumes at whole global batches: skipping to batch %d (sample_in_epoch %d)",
            "per_stream",
            sample_in_epoch // global_batch,
            sample_in_epoch,
        )
    return drop_and_layout(batches, sample_in_epoch, *shape)
