"""``stratified`` batching: every global batch holds a fixed number of samples from each stream."""

from __future__ import annotations

import warnings

import numpy as np

from astreaming.errors import ConfigError
from astreaming.order.batching._common import drop_and_layout, stream_ids
from astreaming.order.spec import EpochSpec
from astreaming.order.world import World

__all__ = ["generate_work_stratified", "stream_portions"]


def stream_portions(proportions: tuple[float, ...], global_batch: int) -> np.ndarray:
    """Samples of each stream per global batch: floors, then the largest fractional parts get one more."""
    exact = np.asarray(proportions, dtype=np.float64) * global_batch
    portions = exact.astype(np.int64)
    missing = global_batch - int(portions.sum())
    if missing > 0:
        portions[np.flip(np.argsort(exact - portions))[:missing]] += 1
    return portions


def generate_work_stratified(spec: EpochSpec, world: World, epoch: int, sample_in_epoch: int) -> np.ndarray:
    """The full (P, R, W, batches, B) array of sample ids for stratified batching.

    Raises:
        ConfigError: if a stream's portion of the global batch rounds to 0.
    """
    global_batch = spec.batch_size * world.num_ranks
    portions = stream_portions(spec.proportion_per_stream, global_batch)
    chunks = []
    for index, portion in enumerate(portions.tolist()):
        block = int(spec.shuffle_block_size * spec.proportion_per_stream[index])
        ids = stream_ids(spec, epoch, index, (1, 1, 1, 1), block).reshape(-1)
        # mosaic builds the stream before refusing it (its shuffle warnings come first).
        if portion == 0:
            raise ConfigError(
                f"Number of samples for stream {index} is 0 because the portion of this stream in the "
                f"global batch, which is of size {global_batch}, is too low. Please increase the global "
                f"batch size or increase the proportion of total samples that come from stream {index}."
            )
        padded = np.full(-(-len(ids) // portion) * portion, -1, dtype=np.int64)
        padded[: len(ids)] = ids
        rows = padded.reshape(-1, portion)
        chunks.append(rows[(rows != -1).all(axis=1)])
    count = min(len(c) for c in chunks)
    batches = (
        np.concatenate([c[:count] for c in chunks], axis=1)
        if chunks
        else np.zeros((0, global_batch), dtype=np.int64)
    )
    if sample_in_epoch % global_batch:
        warnings.warn(
            f"Because of the `stratified` batching method, resumption may only occur on a sample that is a "
            f"multiple of the current global batch size of {global_batch}. Resuming training after the most "
            f"recently finished global batch (sample_in_epoch {sample_in_epoch}).",
            UserWarning,
            stacklevel=3,
        )
    return drop_and_layout(
        batches,
        sample_in_epoch,
        world.num_nodes,
        world.ranks_per_node,
        world.workers_per_rank,
        spec.batch_size,
    )
